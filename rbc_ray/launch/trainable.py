"""The Ray Tune trainable: a thin wrapper that runs `Trainer` iterations and checkpoints them.

A checkpoint holds every type's network and optimiser, the curriculum position, RNG states and the
exact config (trainer.pt), plus the config as YAML for people (config.yaml). Tune can stop, pause,
resume and restore the trial from it, and PBT can mutate learning rates through `reset_config`.
Policy-only snapshots (train/snapshots.py) go to `snapshot_dir` every `train.snapshot_every`
episodes and at the end of the run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import yaml
from ray import tune

from ..results import atomic_path
from ..train import Trainer, load_experiment
from ..train.snapshots import SNAPSHOT_DIR, due, read_torch_file, write_snapshot
from ..train.trainer import check_finite_networks


def overrides_from(config: dict[str, Any]) -> list[str]:
    """`--set` strings plus Tune-sampled dotted keys (config["set"]) as key=value overrides."""
    out = list(config.get("overrides", []))
    out += [f"{key}={json.dumps(value)}" for key, value in sorted(config.get("set", {}).items())]
    return out


class RBCTrainable(tune.Trainable):
    """One training run of an experiment YAML; Tune calls step() once per iteration."""

    def setup(self, config: dict[str, Any]) -> None:
        self.experiment, _ = load_experiment(config["experiment"], overrides_from(config))
        torch.set_num_threads(max(1, int(config.get("torch_threads", 1))))
        self.trainer = Trainer(self.experiment)
        self.last_metrics: dict[str, Any] = {}
        self.snapshot_dir = config.get("snapshot_dir")
        if self.snapshot_dir and config.get("per_trial_snapshots"):
            self.snapshot_dir = str(Path(self.snapshot_dir) / self.trial_id / SNAPSHOT_DIR)

    def step(self) -> dict[str, Any]:
        if self.last_metrics and self.trainer.episode >= self.experiment.train.total_episodes:
            # restored from the checkpoint at its end (a driver stopped before it recorded the trial
            # as finished): report the last iteration again instead of training past the end
            return dict(self.last_metrics, done=True)
        before = self.trainer.episode
        metrics = dict(self.trainer.train_iteration())
        done = self.trainer.episode >= self.experiment.train.total_episodes
        metrics["done"] = done
        self.last_metrics = metrics
        if self.snapshot_dir and (done or due(self.experiment.train.snapshot_every, before, self.trainer.episode)):
            write_snapshot(self.trainer, self.snapshot_dir)
        return metrics

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        state = {**self.trainer.state_dict(), "last_metrics": self.last_metrics}
        check_finite_networks(state["policies"], "checkpoint")  # never checkpoint a diverged network
        with atomic_path(Path(checkpoint_dir) / "trainer.pt") as tmp:
            torch.save(state, tmp)
        with atomic_path(Path(checkpoint_dir) / "config.yaml") as tmp, open(tmp, "w") as fh:
            yaml.safe_dump(self.experiment.to_dict(), fh, sort_keys=False)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = read_torch_file(Path(checkpoint_dir) / "trainer.pt")
        self.trainer.load_state_dict(state)
        self.last_metrics = dict(state.get("last_metrics") or {})

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """PBT: apply mutated per-type learning rates in place; anything else restarts the trial."""
        changed = {k: v for k, v in new_config.get("set", {}).items()
                   if self.config.get("set", {}).get(k) != v}
        lrs = {}
        for key, value in changed.items():
            parts = key.split(".")
            if len(parts) != 3 or parts[0] != "policies" or parts[2] != "lr":
                return False
            lrs[parts[1]] = float(value)
        for kind, lr in lrs.items():
            for group in self.trainer.optimizers[kind].param_groups:
                group["lr"] = lr
        self.config = new_config
        return True


def checkpoint_files(checkpoint_dir: str | os.PathLike) -> list[str]:
    """Names of the files a checkpoint holds (for docs and tests)."""
    return sorted(p.name for p in Path(checkpoint_dir).iterdir())
