"""Results on disk: Parquet metrics (`load`), tables of rows (`write_rows`), PNG training curves."""

from .io import METRICS_FILE, MetricsWriter, load, write_rows
from .plots import plot_runs, plot_training

__all__ = ["METRICS_FILE", "MetricsWriter", "load", "plot_runs", "plot_training", "write_rows"]
