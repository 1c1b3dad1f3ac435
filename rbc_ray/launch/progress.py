"""Live progress of Tune trials: one line per iteration, and each trial's metrics.parquet."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ray import tune

from ..results import MetricsWriter
from ..train.trainer import METRIC_KEYS, PROFILE_KEYS

class Progress(tune.Callback):
    """Tune callback: a live line per iteration and the driver-side Parquet metrics of each trial."""

    def __init__(self, out: Path, single: bool) -> None:
        self.out, self.single, self.writers = out, single, {}

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (Tune saves its run config) without the writers: a restored driver re-reads each
        trial's metrics.parquet from disk, which holds every row written before the stop."""
        return {**self.__dict__, "writers": {}}

    def _writer(self, trial) -> MetricsWriter:
        if trial.trial_id not in self.writers:
            folder = self.out if self.single else self.out / "trials" / trial.trial_id
            self.writers[trial.trial_id] = MetricsWriter(folder, columns=metric_columns())
        return self.writers[trial.trial_id]

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._writer(trial).append(result)
        print(format_progress(result, None if self.single else trial.trial_id), flush=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        print(f"trial {trial.trial_id} failed: see {trial.local_path}/error.txt", file=sys.stderr)


def metric_columns() -> list[str]:
    """The documented metrics (docs/training.md, "Results"); Tune's own bookkeeping fields are left out."""
    return [*METRIC_KEYS, *PROFILE_KEYS]


def format_progress(m: dict[str, Any], trial: str | None = None) -> str:
    """One status line: iteration, agent-steps/s, per-type rewards, mean price and wage."""
    head = f"[{trial}] " if trial else ""
    return (f"{head}iter {int(m.get('iteration', 0)):>5}  episodes {int(m.get('episodes', 0)):>8}  "
            f"{m.get('agent_steps_per_s', float('nan')) / 1e3:8.1f}k agent-steps/s  "
            f"reward c {m.get('reward_consumer', float('nan')):9.3f}  "
            f"f {m.get('reward_firm', float('nan')):11.1f}  g {m.get('reward_government', float('nan')):9.2f}  "
            f"price {m.get('mean_price', float('nan')):7.1f}  wage {m.get('mean_wage', float('nan')):5.1f}")


