"""Results on disk: Parquet metrics (`load`), PNG training curves (`plot_training`)."""

from .io import METRICS_FILE, MetricsWriter, load
from .plots import plot_training

__all__ = ["METRICS_FILE", "MetricsWriter", "load", "plot_training"]
