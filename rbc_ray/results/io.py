"""Results files: Parquet metrics (one row per training iteration, OUT/metrics.parquet), tables of
rows, and `atomic_path`, through which every results file of rbc-ray is written.

Atomic writes: a file is written under a temporary name in its own folder and renamed over the
target (`os.replace`, atomic on POSIX and Windows), so a writer killed mid-write leaves the previous
complete file (or none), never a truncated one; a reader always sees the last complete version.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

METRICS_FILE = "metrics.parquet"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed over `path` when the block ends without an
    error (removed when it raises). The suffix is kept, so `fig.savefig(tmp)` still picks PNG.

        with atomic_path(out / "policies.pt") as tmp:
            torch.save(state, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_table(path: str | os.PathLike) -> pa.Table:
    """A Parquet file as a table; a missing, truncated or foreign file is one ValueError naming it."""
    path = Path(path)
    try:
        return pq.read_table(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{str(path)!r} does not exist") from None
    except (pa.ArrowException, OSError, ValueError) as err:
        reason = " ".join(str(err).split())
        raise ValueError(f"{str(path)!r} is not a readable Parquet file (truncated or corrupted?): {reason}") from None


def load(out: str | os.PathLike) -> pa.Table:
    """The metrics table of a run folder (or of a metrics.parquet path); `.to_pandas()` works."""
    path = Path(out)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.exists():
        if (path.parent / "summary.json").exists() and (path.parent / "calibration.yaml").exists():
            raise FileNotFoundError(f"{str(path.parent)!r} is an `rbc-ray srl` output folder (summary.json), not a "
                                    "training run: its plots are already there")
        raise FileNotFoundError(f"no metrics at {path}: is it the folder `rbc-ray train --out` printed?")
    return read_table(path)


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
            self.rows = read_table(self.path).to_pylist()

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
        with atomic_path(self.path) as tmp:
            pq.write_table(table, tmp)


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
    with atomic_path(path) as tmp:
        pq.write_table(rows_table(rows), tmp)
    return path
