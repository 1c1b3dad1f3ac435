"""The Ray edge: start or join Ray, run one training trial or a sweep with Tune, write results.

`run_train` and `run_sweep` are what `rbc-ray train` and `rbc-ray sweep` call. Results go to OUT:
metrics.parquet (one row per iteration, written by the driver as Tune reports), plots/, config.yaml,
and Tune's own folder OUT/tune (checkpoints, trial state for resume).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .failures import TrainingFailed, root_cause
from .results import MetricsWriter, plot_training

LOCAL_NODE_IP = "127.0.0.2"  # Ray rewrites 127.0.0.1 to the interface address; bind loopback


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Embedded local Ray by default; join an existing cluster with an address ("auto", "ray://..")."""
    import ray

    if ray.is_initialized():
        return
    env = {"env_vars": {"OMP_NUM_THREADS": "1", "RAY_DEDUP_LOGS": "0"},
           "worker_process_setup_hook": "rbc_ray.launch.quiet_ray_worker_logs"}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=True)
    else:
        ray.init(_node_ip_address=LOCAL_NODE_IP, num_cpus=num_cpus or os.cpu_count(),
                 include_dashboard=False, runtime_env=env, log_to_driver=True)


def _raise_failure(error: BaseException, where: Path) -> None:
    raise TrainingFailed(f"training failed: {root_cause(error)} (Ray's full report: {where})")


def quiet_ray_worker_logs() -> None:
    """Runs in every Ray worker process: mute two Ray Train messages that drown our progress lines.

    Without the dashboard (we start Ray with none) Ray's State API is unavailable, so Train's
    placement-group cleaner warns on every check (about once a second); and Train logs every
    report's whole metrics dict at INFO."""
    import logging

    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)
    try:  # Train names this logger by the module's file path
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray version: leave its logging alone
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


class Progress:
    """Tune callback: a live line per iteration and the driver-side Parquet metrics of each trial."""

    def __new__(cls, *args, **kwargs):  # build the subclass lazily so importing needs no Ray
        from ray import tune

        class _Progress(tune.Callback):
            def __init__(self, out: Path, single: bool) -> None:
                self.out, self.single, self.writers = out, single, {}

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

        return _Progress(*args, **kwargs)


def metric_columns() -> list[str]:
    """The documented metrics (README "Results"); Tune's own bookkeeping fields are left out."""
    from .train.trainer import METRIC_KEYS, PROFILE_KEYS

    return [*METRIC_KEYS, *PROFILE_KEYS]


def format_progress(m: dict[str, Any], trial: str | None = None) -> str:
    """One status line: iteration, agent-steps/s, per-type rewards, mean price and wage."""
    head = f"[{trial}] " if trial else ""
    return (f"{head}iter {int(m.get('iteration', 0)):>5}  episodes {int(m.get('episodes', 0)):>8}  "
            f"{m.get('agent_steps_per_s', float('nan')) / 1e3:8.1f}k agent-steps/s  "
            f"reward c {m.get('reward_consumer', float('nan')):9.3f}  "
            f"f {m.get('reward_firm', float('nan')):11.1f}  g {m.get('reward_government', float('nan')):9.2f}  "
            f"price {m.get('mean_price', float('nan')):7.1f}  wage {m.get('mean_wage', float('nan')):5.1f}")


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ValueError(f"experiment file {str(path)!r} does not exist") from None
    if not isinstance(data, dict):
        raise ValueError(f"experiment file {str(path)!r} must hold a YAML mapping")
    return data


def _trainable(experiment_cfg, cpus: int):
    from ray import tune

    from .train.trainable import RBCTrainable

    gpu = 1 if str(experiment_cfg.train.device).startswith("cuda") else 0
    return tune.with_resources(RBCTrainable, {"cpu": cpus, "gpu": gpu})


def _run_config(out: Path, name: str, callback, stop: dict | None = None):
    from ray import tune

    return tune.RunConfig(
        name=name, storage_path=str(out / "tune"), callbacks=[callback], verbose=0, stop=stop,
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=10, checkpoint_at_end=True,
                                                num_to_keep=3),
        failure_config=tune.FailureConfig(max_failures=0))


def _prepare_train(config_path: str, overrides: list[str], out: str | None):
    """(raw YAML without `tune`, validated experiment, OUT): validation happens before Ray starts;
    `_write_config` then puts config.yaml in OUT."""
    from .train.config import load_experiment

    raw = read_yaml(config_path)
    raw.pop("tune", None)
    experiment, _ = load_experiment(raw, overrides)
    out_dir = Path(out or f"results/{experiment.name}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    return raw, experiment, out_dir


def _write_config(out_dir: Path, experiment) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "config.yaml", "w") as fh:
        yaml.safe_dump(experiment.to_dict(), fh, sort_keys=False)


def run_train(config_path: str, overrides: list[str], out: str | None, address: str | None,
              resume: bool = False) -> Path:
    """One trial of an experiment on Ray; returns the results folder."""
    from ray import tune

    raw, experiment, out_dir = _prepare_train(config_path, overrides, out)
    _write_config(out_dir, experiment)
    name = experiment.name
    print(f"rbc-ray: results go to {out_dir}", flush=True)
    threads = max(1, int(experiment.train.torch_threads))
    init_ray(address)
    param_space = {"experiment": raw, "overrides": list(overrides), "torch_threads": threads}
    trainable = _trainable(experiment, threads)
    tune_dir = out_dir / "tune" / name
    if resume and tune_dir.exists():
        tuner = tune.Tuner.restore(str(tune_dir), trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(trainable, param_space=param_space,
                           run_config=_run_config(out_dir, name, Progress(out_dir, single=True)))
    grid = tuner.fit()
    result = grid[0]
    if result.error:
        _raise_failure(result.error, Path(result.path) / "error.txt")
    plots = plot_training(out_dir)
    print(f"rbc-ray: metrics {out_dir / 'metrics.parquet'}; plots {plots[0].parent}; "
          f"checkpoint {result.checkpoint.path if result.checkpoint else '-'}", flush=True)
    return out_dir


def run_train_data_parallel(config_path: str, overrides: list[str], out: str | None, address: str | None,
                            workers: int, resume: bool = False, max_failures: int = 0) -> Path:
    """`rbc-ray train --workers N`: one experiment trained data-parallel by N Ray Train workers
    (rbc_ray.train.data_parallel); OUT gets config.yaml, metrics.parquet (rank 0), policies.pt and
    plots/, and Ray Train's run folder OUT/raytrain (checkpoints every 10 iterations). Runs
    total_episodes / episodes_per_iteration iterations (rounded up). `resume` continues the run in
    OUT from its latest checkpoint; `max_failures` lets Ray Train restart a failed worker group
    from it."""
    import math
    import shutil

    from .train.data_parallel import check_checkpoint, run_ray_train

    if max_failures < 0:
        raise ValueError(f"--max-failures must be >= 0, got {max_failures}")
    _, experiment, out_dir = _prepare_train(config_path, overrides, out)
    run_dir = out_dir / "raytrain" / experiment.name
    if run_dir.exists() and not resume:
        raise ValueError(f"{run_dir} already holds a data-parallel run: pass --resume to continue it, "
                         f"or choose another --out")
    checkpoints = sorted((p for p in run_dir.glob("checkpoint_*") if p.is_dir()),
                         key=lambda p: p.stat().st_mtime) if resume else []
    if checkpoints:  # Ray Train restores the latest; check it fits this worker count before starting
        check_checkpoint(checkpoints[-1], workers)
    _write_config(out_dir, experiment)
    t = experiment.train
    print(f"rbc-ray: results go to {out_dir} ({workers} data-parallel workers"
          f"{', resuming ' + checkpoints[-1].name if checkpoints else ''})", flush=True)
    init_ray(address)
    iterations = math.ceil(t.total_episodes / t.episodes_per_iteration)
    result = run_ray_train(experiment, workers, iterations, str(out_dir / "raytrain"), name=experiment.name,
                           use_gpu=str(t.device).startswith("cuda"), torch_threads=max(1, int(t.torch_threads)),
                           progress=True, max_failures=max_failures)
    if result.error:
        _raise_failure(result.error, out_dir / "raytrain" / experiment.name)
    with result.checkpoint.as_directory() as d:
        for name in ("metrics.parquet", "policies.pt"):
            shutil.copy(Path(d) / name, out_dir / name)
    plots = plot_training(out_dir)
    print(f"rbc-ray: metrics {out_dir / 'metrics.parquet'}; plots {plots[0].parent}; "
          f"networks {out_dir / 'policies.pt'}", flush=True)
    return out_dir


def sweep_space(tune_spec: dict[str, Any]) -> dict[str, Any]:
    """Tune param-space entries from a YAML `tune:` section: grid over dotted keys and seeds."""
    from ray import tune

    grid = dict(tune_spec.get("grid") or {})
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"tune.grid.{key}: must be a non-empty list of values")
    seeds = tune_spec.get("seeds")
    if seeds is not None:
        if not isinstance(seeds, list) or not seeds:
            raise ValueError("tune.seeds: must be a non-empty list of ints")
        grid["train.seed"] = seeds
    return {key: tune.grid_search(values) for key, values in grid.items()}


def n_trials(tune_spec: dict[str, Any]) -> int:
    grid = dict(tune_spec.get("grid") or {})
    if tune_spec.get("seeds"):
        grid["train.seed"] = tune_spec["seeds"]
    return len(list(itertools.product(*grid.values()))) if grid else 1


def run_sweep(config_path: str, overrides: list[str], out: str | None, address: str | None) -> Path:
    """The grid and seeds an experiment YAML declares, as Tune trials; SRL YAMLs go to structural."""
    raw = read_yaml(config_path)
    if "srl" in raw:
        from .structural.tune import run_sweep as run_srl_sweep

        out_dir = Path(out or f"results/{Path(config_path).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
        run_srl_sweep(raw, str(out_dir.resolve()), address)
        return out_dir
    from ray import tune

    from .train.config import load_experiment

    tune_spec = raw.pop("tune", None) or {}
    experiment, _ = load_experiment(raw, overrides)
    space = sweep_space(tune_spec)
    mutations = (tune_spec.get("pbt") or {}).get("mutations") or {}
    for key, values in mutations.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"tune.pbt.mutations.{key}: must be a non-empty list of values")
        space.setdefault(key, tune.choice(values))  # PBT mutates keys the trials already have
    # every swept or mutated key must be a valid override: fail before starting Ray
    axes = {**(tune_spec.get("grid") or {}), **mutations}
    load_experiment(raw, overrides + [f"{key}={json.dumps(values[0])}" for key, values in axes.items()])
    name = experiment.name
    out_dir = Path(out or f"results/{name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"rbc-ray: sweep of {n_trials(tune_spec)} trials; results go to {out_dir}", flush=True)
    threads = max(1, int(experiment.train.torch_threads))
    init_ray(address)
    scheduler = _pbt(tune_spec)
    tuner = tune.Tuner(
        _trainable(experiment, threads),
        param_space={"experiment": raw, "overrides": list(overrides), "torch_threads": threads,
                     "set": space},
        tune_config=tune.TuneConfig(max_concurrent_trials=tune_spec.get("max_concurrent"),
                                    scheduler=scheduler, reuse_actors=scheduler is not None,
                                    metric=tune_spec.get("metric") if scheduler else None,
                                    mode=tune_spec.get("mode", "max") if scheduler else None),
        run_config=_run_config(out_dir, name, Progress(out_dir, single=False)))
    grid = tuner.fit()
    _write_summary(grid, out_dir)
    return out_dir


def _pbt(tune_spec: dict[str, Any]):
    pbt = tune_spec.get("pbt")
    if not pbt:
        return None
    from ray.tune.schedulers import PopulationBasedTraining

    mutations = {"set": {k: v for k, v in (pbt.get("mutations") or {}).items()}}
    return PopulationBasedTraining(time_attr="training_iteration",
                                   perturbation_interval=int(pbt.get("perturbation_interval", 10)),
                                   hyperparam_mutations=mutations)


def _write_summary(grid, out_dir: Path) -> None:
    """OUT/summary.parquet: one row per trial, its swept values and last metrics."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for result in grid:
        row = {"trial_id": result.metrics.get("trial_id", ""), "error": str(result.error or ""),
               "node_ip": result.metrics.get("node_ip", "")}
        row.update({f"set.{k}": json.dumps(v) for k, v in (result.config or {}).get("set", {}).items()})
        row.update({k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))})
        rows.append(row)
    names: list[str] = []
    for r in rows:
        names.extend(k for k in r if k not in names)
    pq.write_table(pa.table({k: [r.get(k) for r in rows] for k in names}), out_dir / "summary.parquet")
    for result in grid:
        trial_dir = out_dir / "trials" / str(result.metrics.get("trial_id", ""))
        if (trial_dir / "metrics.parquet").exists():
            plot_training(trial_dir)
    print(f"rbc-ray: sweep summary {out_dir / 'summary.parquet'}", flush=True)
