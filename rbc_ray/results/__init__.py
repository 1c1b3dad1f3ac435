"""Results on disk: Parquet metrics (`load`), tables of rows (`write_rows`), atomic writes
(`atomic_path`), PNG training curves (`plot_training`). `plot_training` is loaded on first use, so
writing or reading results does not import matplotlib (nor switch its backend to Agg, which would
silence a notebook's inline plots)."""

from __future__ import annotations

from typing import Any

from .io import METRICS_FILE, MetricsWriter, atomic_path, load, read_table, write_rows

__all__ = ["METRICS_FILE", "MetricsWriter", "atomic_path", "load", "plot_runs", "plot_training", "read_table",
           "write_rows"]


def __getattr__(name: str) -> Any:
    if name in ("plot_training", "plot_runs"):
        from . import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
