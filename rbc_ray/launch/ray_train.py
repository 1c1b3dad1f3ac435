"""Data-parallel training on Ray Train workers (TorchTrainer: gloo on CPU, NCCL on GPUs).

Each worker builds its trainer with `train.distributed.data_parallel_trainer` inside the process
group Ray Train sets up; rank 0 reports metrics and every worker's state goes into one checkpoint.
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from ..train.config import ExperimentConfig
from ..train.distributed import (CHECKPOINT_EVERY, check_sizes, data_parallel_trainer, restore_worker_state,
                                 save_worker_state)
from .cluster import quiet_ray_worker_logs
from .progress import format_progress


def worker_device(device: str) -> torch.device:
    """This worker's device: on cuda the GPU Ray Train assigned to it (ray.train.torch.get_device:
    workers on one node see all of that node's assigned GPUs, so plain `cuda` would put them all on
    the first), made the current CUDA device for NCCL; `cpu` otherwise."""
    if not str(device).startswith("cuda"):
        return torch.device(device)
    assigned = ray.train.torch.get_device()
    if assigned.type != "cuda":
        raise RuntimeError(f"train.device={device} but Ray Train gave this worker no GPU ({assigned}): "
                           f"run with use_gpu=True")
    torch.cuda.set_device(assigned)
    return assigned


def _ray_train_loop(config: dict[str, Any]) -> None:
    """Ray Train's per-worker loop: restore Train's latest checkpoint if there is one (a restarted
    worker group, or a resumed run), train, report every iteration (rank 0 prints a progress line)
    and checkpoint every `checkpoint_every` iterations and at the end (`save_worker_state`)."""
    quiet_ray_worker_logs()  # again: Train configures its worker loggers after the setup hook ran
    torch.set_num_threads(max(1, int(config["torch_threads"])))
    cfg = ExperimentConfig.from_dict(config["experiment"])
    trainer = data_parallel_trainer(cfg, device=worker_device(cfg.train.device))
    world, rank = dist.get_world_size(), dist.get_rank()
    rows: list[dict[str, Any]] = []
    latest = ray.train.get_checkpoint()
    if latest is not None:
        with latest.as_directory() as d:
            rows = restore_worker_state(trainer, d, rank, world)
    total, every = int(config["iterations"]), int(config.get("checkpoint_every", CHECKPOINT_EVERY))

    def report_with_checkpoint(metrics: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as tmp:  # every rank's files merge into one checkpoint
            save_worker_state(trainer, rows, tmp, rank)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    if trainer.iteration >= total:  # resumed a finished run: nothing to train, report where it stands
        report_with_checkpoint(rows[-1] if rows else {"iteration": trainer.iteration})
    while trainer.iteration < total:
        metrics = dict(trainer.train_iteration())
        metrics["workers"] = world
        rows.append(metrics)
        if rank == 0 and config.get("progress", False):
            # not print: Ray Train routes a worker's print through its logger, which echoes it twice
            sys.stdout.write(format_progress(metrics) + "\n")
            sys.stdout.flush()
        if trainer.iteration < total and trainer.iteration % every:
            ray.train.report(metrics)
        else:
            report_with_checkpoint(metrics)


def run_ray_train(cfg: ExperimentConfig, num_workers: int, iterations: int, storage_path: str,
                  name: str = "rbc_data_parallel", use_gpu: bool = False, torch_threads: int = 1,
                  progress: bool = False, checkpoint_every: int = CHECKPOINT_EVERY,
                  max_failures: int = 0) -> Any:
    """Train `cfg` data-parallel on `num_workers` Ray Train workers (TorchTrainer: gloo on CPU; NCCL
    on GPUs: `use_gpu` with train.device=cuda, one GPU per worker, on one node or several) until
    `iterations` iterations are done, on the Ray that is already initialised (local or a cluster).
    Returns Ray Train's Result: `.metrics` is rank 0's last iteration, `.checkpoint`
    holds every worker's state, rank 0's networks (policies.pt) and every iteration's metrics
    (metrics.parquet). A run found under storage_path/name continues from its latest checkpoint
    (Ray Train's own restore), exactly as if it had not stopped; so does a worker group that Ray
    Train restarts after a failure (up to `max_failures` times). `progress`: rank 0 prints a line
    per iteration."""
    check_sizes(num_workers, iterations)
    if use_gpu != str(cfg.train.device).startswith("cuda"):
        raise ValueError(f"use_gpu={use_gpu} with train.device={cfg.train.device}: train on cuda exactly when "
                         f"the workers have GPUs")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    job = TorchTrainer(
        _ray_train_loop,
        train_loop_config={"experiment": cfg.to_dict(), "iterations": iterations, "torch_threads": torch_threads,
                           "progress": progress, "checkpoint_every": checkpoint_every},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": torch_threads}),
        run_config=RunConfig(name=name, storage_path=storage_path,
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             failure_config=FailureConfig(max_failures=max_failures)))
    return job.fit()
