"""The Ray edge: start or join Ray, run training trials, sweeps, Ray Train jobs and SRL sweeps.

Nothing outside this package (and bench/, envs/) imports Ray: the economy, the trainer and the SRL
solver run the same in a test, a notebook, a Tune trial or a Ray Train worker. The names below are
loaded on first use, so `rbc_ray.launch.failures` (which the CLI needs for every command) does not
start Ray's import.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {"LOCAL_NODE_IP": "cluster", "init_ray": "cluster", "TrainingFailed": "failures",
          "root_cause": "failures", "run_sweep": "sweep", "run_train": "train",
          "run_train_data_parallel": "train", "run_ray_train": "ray_train"}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
