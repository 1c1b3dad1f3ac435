"""Parquet metrics: one row per training iteration, in OUT/metrics.parquet (pyarrow)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

METRICS_FILE = "metrics.parquet"


def load(out: str | os.PathLike) -> pa.Table:
    """The metrics table of a run folder (or of a metrics.parquet path); `.to_pandas()` works."""
    path = Path(out)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no metrics at {path}: is it the folder `rbc-ray train --out` printed?")
    return pq.read_table(path)


def _scalar(value: Any) -> Any:
    """Plain Python scalar for Parquet; tensors and numpy scalars are unwrapped."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return value
    return str(value)


class MetricsWriter:
    """Appends rows to OUT/metrics.parquet; the file is rewritten atomically after each row.

    Keeps previous rows of the same file (a resumed run continues its table; rows from the iteration
    it resumes at on are dropped). Only scalar metrics
    are kept; nested values (Tune's own config, dicts) are dropped.
    """

    def __init__(self, out: str | os.PathLike, columns: list[str] | None = None) -> None:
        self.path = Path(out) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = columns
        self.rows: list[dict[str, Any]] = []
        if self.path.exists():
            self.rows = pq.read_table(self.path).to_pylist()

    def append(self, metrics: Mapping[str, Any]) -> None:
        row = {k: _scalar(v) for k, v in metrics.items()
               if (self.columns is None or k in self.columns) and not isinstance(v, (dict, list, tuple))}
        if self.rows and "iteration" in row:
            # a trial restored from a checkpoint repeats the iterations after it: the rows from the
            # checkpoint on are replaced, so the table holds every iteration once, in order
            self.rows = [r for r in self.rows if r.get("iteration", -math.inf) < row["iteration"]]
        self.rows.append(row)
        self.flush()

    def flush(self) -> None:
        names: list[str] = []
        for r in self.rows:
            names.extend(k for k in r if k not in names)
        table = pa.table({k: [_fill(r.get(k)) for r in self.rows] for k in names})
        tmp = self.path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.path)


def _fill(value: Any) -> Any:
    return math.nan if value is None else value


def rows_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts) as one table, columns in order of first appearance; a missing value is null, and a
    column mixing ints and floats is float (500 and 500.5 in one column)."""
    names: list[str] = []
    for r in rows:
        names.extend(k for k in r if k not in names)
    columns = {}
    for k in names:
        values = [r.get(k) for r in rows]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None) \
                and any(isinstance(v, float) for v in values):
            values = [None if v is None else float(v) for v in values]
        columns[k] = values
    return pa.table(columns)


def write_rows(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Rows (dicts) as one Parquet file, written to a temporary name and renamed (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(rows_table(rows), tmp)
    os.replace(tmp, path)
    return path
