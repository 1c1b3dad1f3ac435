"""`rbc-ray train`: one experiment as a Tune trial, or data-parallel on Ray Train workers.

Results go to OUT: metrics.parquet (one row per iteration, written by the driver as Tune reports),
plots/, config.yaml, and Tune's own folder OUT/tune (checkpoints, trial state for resume).
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path

import yaml
from ray import tune

from ..config import read_yaml
from ..results import atomic_path, plot_training
from ..train.config import load_experiment, never_training
from .checks import check_resume
from .cluster import init_ray, max_failures as max_failures_for
from .failures import TrainingFailed, root_cause
from .progress import Progress
from ..train.distributed import check_checkpoint
from ..train.snapshots import SNAPSHOT_DIR
from .ray_train import run_ray_train
from .resources import check_ray_device, check_resources, is_cuda, require_gpus, requested, trial_gpus
from .trainable import RBCTrainable

def _raise_failure(error: BaseException, where: Path) -> None:
    raise TrainingFailed(f"training failed: {root_cause(error)} (Ray's full report: {where})")


def trainable(cpus: int, gpus: float = 0.0):
    """RBCTrainable reserving `cpus` CPUs (the trial's torch threads) and `gpus` GPUs (a fraction:
    trials share a GPU; see launch/resources.py)."""
    return tune.with_resources(RBCTrainable, {"cpu": cpus, "gpu": gpus})


def run_config(out: Path, name: str, callbacks: list, stop: dict | None = None, max_failures: int = 0):
    """Tune's RunConfig for training trials: storage in OUT/tune, checkpoints every 10 iterations; a
    failed trial restarts from its latest checkpoint up to `max_failures` times."""
    return tune.RunConfig(
        name=name, storage_path=str(out / "tune"), callbacks=list(callbacks), verbose=0, stop=stop,
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=10, checkpoint_at_end=True,
                                                num_to_keep=3),
        failure_config=tune.FailureConfig(max_failures=max_failures))


def _prepare_train(config_path: str, overrides: list[str], out: str | None):
    """(raw YAML without `tune`, validated experiment, OUT): validation happens before Ray starts;
    `_write_config` then puts config.yaml in OUT."""
    raw = read_yaml(config_path)
    raw.pop("tune", None)
    experiment, _ = load_experiment(raw, overrides)
    out_dir = Path(out or f"results/{experiment.name}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    return raw, experiment, out_dir


def _write_config(out_dir: Path, experiment) -> None:
    """OUT/config.yaml, as the run starts; a one-line warning for each type whose curriculum start
    comes after the run's last episode."""
    with atomic_path(out_dir / "config.yaml") as tmp, open(tmp, "w") as fh:
        yaml.safe_dump(experiment.to_dict(), fh, sort_keys=False)
    for note in never_training(experiment, frozen=False):
        print(f"rbc-ray: warning: {note}", file=sys.stderr, flush=True)


def run_train(config_path: str, overrides: list[str], out: str | None, address: str | None,
              resume: bool = False, max_failures: int | None = None, callbacks: list = ()) -> Path:
    """One trial of an experiment on Ray; returns the results folder. A failed trial restarts from its
    latest checkpoint up to `max_failures` times (default: cluster.max_failures). `callbacks`: more
    Tune callbacks (your own loggers) beside the progress lines."""
    retries = max_failures_for(max_failures, address)
    raw, experiment, out_dir = _prepare_train(config_path, overrides, out)
    gpus = trial_gpus(experiment.train.device, None, "train.device")
    require_gpus(gpus, f"train.device={experiment.train.device}", address)
    name = experiment.name
    tune_dir = out_dir / "tune" / name
    if resume:
        check_resume(out_dir, tune_dir, experiment)
    _write_config(out_dir, experiment)
    print(f"rbc-ray: results go to {out_dir}", flush=True)
    threads = max(1, int(experiment.train.torch_threads))
    init_ray(address)
    param_space = {"experiment": raw, "overrides": list(overrides), "torch_threads": threads,
                   "snapshot_dir": str(out_dir / SNAPSHOT_DIR)}
    trial = trainable(threads, gpus)
    check_resources(requested(trial), "the training trial", "lower train.torch_threads (one CPU per torch "
                    "thread), or train.device=cpu where the cluster has no GPU", address)
    if resume:  # check_resume made sure there is a run to restore
        tuner = tune.Tuner.restore(str(tune_dir), trial, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(trial, param_space=param_space,
                           run_config=run_config(out_dir, name, [Progress(out_dir, single=True), *callbacks],
                                                 max_failures=retries))
    grid = tuner.fit()
    result = grid[0]
    if result.error:
        _raise_failure(result.error, Path(result.path) / "error.txt")
    plots = plot_training(out_dir)
    print(f"rbc-ray: metrics {out_dir / 'metrics.parquet'}; plots {plots[0].parent}; "
          f"checkpoint {result.checkpoint.path if result.checkpoint else '-'}", flush=True)
    return out_dir


def run_train_data_parallel(config_path: str, overrides: list[str], out: str | None, address: str | None,
                            workers: int, resume: bool = False, max_failures: int | None = None) -> Path:
    """`rbc-ray train --workers N`: one experiment trained data-parallel by N Ray Train workers
    (rbc_ray.launch.ray_train); OUT gets config.yaml, metrics.parquet (rank 0), policies.pt and
    plots/, and Ray Train's run folder OUT/raytrain (checkpoints every 10 iterations). Runs
    total_episodes / episodes_per_iteration iterations (rounded up). `resume` continues the run in
    OUT from its latest checkpoint; `max_failures` lets Ray Train restart a failed worker group
    from it."""
    max_failures = max_failures_for(max_failures, address)
    _, experiment, out_dir = _prepare_train(config_path, overrides, out)
    use_gpu = is_cuda(experiment.train.device)
    check_ray_device(experiment.train.device, "train.device")
    require_gpus(workers if use_gpu else 0, f"--workers {workers} with train.device=cuda (one GPU per worker)",
                 address)
    run_dir = out_dir / "raytrain" / experiment.name
    if run_dir.exists() and not resume:
        raise ValueError(f"{run_dir} already holds a data-parallel run: pass --resume to continue it, "
                         f"or choose another --out")
    if resume and not run_dir.is_dir():
        raise ValueError(f"--resume: {out_dir} holds no data-parallel run of {experiment.name!r} to continue "
                         f"(no {run_dir}); drop --resume to start one")
    checkpoints = sorted((p for p in run_dir.glob("checkpoint_*") if p.is_dir()),
                         key=lambda p: p.stat().st_mtime) if resume else []
    if checkpoints:  # Ray Train restores the latest; check it fits this worker count and economy first
        check_checkpoint(checkpoints[-1], workers, experiment)
    _write_config(out_dir, experiment)
    t = experiment.train
    print(f"rbc-ray: results go to {out_dir} ({workers} data-parallel workers"
          f"{', resuming ' + checkpoints[-1].name if checkpoints else ''})", flush=True)
    init_ray(address)
    threads = max(1, int(t.torch_threads))
    check_resources({"CPU": workers * threads, "GPU": workers if use_gpu else 0}, f"data-parallel training on {workers} workers",
                    "fewer --workers or a lower train.torch_threads (each worker reserves one CPU per thread)",
                    address)
    iterations = math.ceil(t.total_episodes / t.episodes_per_iteration)
    result = run_ray_train(experiment, workers, iterations, str(out_dir / "raytrain"), name=experiment.name,
                           use_gpu=use_gpu, torch_threads=max(1, int(t.torch_threads)),
                           progress=True, max_failures=max_failures)
    if result.error:
        _raise_failure(result.error, out_dir / "raytrain" / experiment.name)
    with result.checkpoint.as_directory() as d:
        for name in ("metrics.parquet", "policies.pt"):
            with atomic_path(out_dir / name) as tmp:
                shutil.copyfile(Path(d) / name, tmp)
    plots = plot_training(out_dir)
    print(f"rbc-ray: metrics {out_dir / 'metrics.parquet'}; plots {plots[0].parent}; "
          f"networks {out_dir / 'policies.pt'}", flush=True)
    return out_dir


