"""`rbc-ray sweep`: the grid, seeds and PBT schedule an experiment YAML declares, as Tune trials.

RBC experiments (economy/train/policies/curriculum sections) run RBCTrainable trials; a YAML with an
`srl:` section is an SRL sweep (launch/srl.py). Both declare seeds and grids in the same `tune:`
section (launch/tune_spec.py). Results: OUT/summary.parquet, one row per trial, and for RBC trials
OUT/trials/<trial_id>/ (metrics.parquet, plots).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import PopulationBasedTraining

from ..config import ConfigError, read_yaml
from ..results import plot_training
from ..train.config import load_experiment
from . import srl
from .cluster import init_ray, max_failures as max_failures_for
from .progress import Progress
from .resources import check_resources, require_gpus, requested, trial_gpus
from .train import run_config, trainable
from .tune_spec import check_tune_spec, grid_points, grid_space, write_summary


def run_sweep(config_path: str, overrides: list[str], out: str | None, address: str | None,
              resume: bool = False, max_failures: int | None = None, callbacks: list = (),
              gpus_per_trial: float | None = None) -> Path:
    """The grid and seeds an experiment YAML declares, as Tune trials; returns OUT.

    Each RBC trial reserves `gpus_per_trial` GPUs (a fraction: trials share a GPU; default 1 on
    cuda, 0 on cpu). `resume` continues the sweep in OUT after its driver stopped (Tuner.restore):
    finished trials are kept, unfinished ones continue from their latest checkpoint. A failed trial
    restarts from its latest checkpoint up to `max_failures` times (default: cluster.max_failures).
    `callbacks`: more Tune callbacks beside the progress lines."""
    retries = max_failures_for(max_failures, address)
    if resume and not out:
        raise ConfigError("--resume needs --out: the folder of the sweep to continue")
    raw = read_yaml(config_path)
    if "srl" in raw:
        if gpus_per_trial:
            raise ConfigError("--gpus-per-trial applies to RBC training sweeps; SRL trials run on one CPU each")
        name = srl.load_srl_sweep(raw, overrides)[0]
        out_dir = Path(out or f"results/{name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
        print(f"rbc-ray: SRL sweep; results go to {out_dir}", flush=True)
        return srl.run_sweep(raw, overrides, out_dir, address, resume=resume, max_failures=retries)
    experiment, spec = load_experiment(raw, overrides)
    spec = check_tune_spec(spec, "train.seed")
    raw.pop("tune", None)
    space = grid_space(spec)
    mutations = (spec.get("pbt") or {}).get("mutations") or {}
    for key, values in mutations.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"tune.pbt.mutations.{key}: must be a non-empty list of values")
        space.setdefault(key, tune.choice(values))  # PBT mutates keys the trials already have
    # every swept or mutated key must be a valid override: fail before starting Ray
    points = grid_points(spec)
    for point in points or [{}]:
        trial_cfg, _ = load_experiment(raw, overrides + [f"{k}={json.dumps(v)}" for k, v in point.items()]
                                       + [f"{k}={json.dumps(v[0])}" for k, v in mutations.items()])
        if trial_cfg.train.device != experiment.train.device:
            raise ConfigError("train.device cannot be a grid axis: every trial reserves the same resources")
    gpus = trial_gpus(experiment.train.device, gpus_per_trial, "train.device")
    require_gpus(gpus, f"--gpus-per-trial {gpus:g}" if gpus_per_trial else f"train.device={experiment.train.device}",
                 address)
    name = experiment.name
    out_dir = Path(out or f"results/{name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    print(f"rbc-ray: sweep of {max(len(points), 1)} trials; results go to {out_dir}", flush=True)
    threads = max(1, int(experiment.train.torch_threads))
    tune_dir = out_dir / "tune" / name
    if resume and not tune_dir.exists():
        raise ConfigError(f"--resume: {out_dir} holds no sweep named {name!r} ({tune_dir} is missing)")
    out_dir.mkdir(parents=True, exist_ok=True)
    init_ray(address)
    trial = trainable(threads, gpus)
    check_resources(requested(trial), "a sweep trial", "lower train.torch_threads (one CPU per torch thread), or "
                    "train.device=cpu where the cluster has no GPU", address)
    scheduler = _pbt(spec)
    if resume:
        tuner = tune.Tuner.restore(str(tune_dir), trial, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trial,
            param_space={"experiment": raw, "overrides": list(overrides), "torch_threads": threads,
                         "set": space, "snapshot_dir": str(out_dir / "trials"), "per_trial_snapshots": True},
            tune_config=tune.TuneConfig(max_concurrent_trials=spec.get("max_concurrent"),
                                        scheduler=scheduler, reuse_actors=scheduler is not None,
                                        metric=spec.get("metric") if scheduler else None,
                                        mode=spec.get("mode", "max") if scheduler else None),
            run_config=run_config(out_dir, name, [Progress(out_dir, single=False), *callbacks],
                                  max_failures=retries))
    grid = tuner.fit()
    path = write_summary(grid, out_dir)
    for result in grid:
        trial_dir = out_dir / "trials" / str((result.metrics or {}).get("trial_id", ""))
        if (trial_dir / "metrics.parquet").exists():
            plot_training(trial_dir)
    print(f"rbc-ray: sweep summary {path}", flush=True)
    return out_dir


def _pbt(spec: dict[str, Any]) -> PopulationBasedTraining | None:
    pbt = spec.get("pbt")
    if not pbt:
        return None
    mutations = {"set": {k: v for k, v in (pbt.get("mutations") or {}).items()}}
    return PopulationBasedTraining(time_attr="training_iteration",
                                   perturbation_interval=int(pbt.get("perturbation_interval", 10)),
                                   hyperparam_mutations=mutations)
