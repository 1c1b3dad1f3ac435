"""Data-parallel PPO: several workers train the same networks, each on its own economy replicas.

Every worker steps its own envs (its own seed) and runs the same PPO updates; after each backward
pass the gradient of each type is averaged over the workers (one all-reduce per type and minibatch,
torch.distributed) before clipping and Adam, so the networks stay identical on every worker. The
update equals averaging the workers' PPO losses, with advantages standardised per worker.
`run_local` runs it in processes on one machine (gloo), `run_ray_train` as a Ray Train job; under
any other launcher that initialises torch.distributed call `data_parallel_trainer` in each worker.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .config import ExperimentConfig
from .ppo import GradSync
from .trainer import Trainer

SEED_STRIDE = 1000
"""Worker `rank` steps envs seeded `train.seed + SEED_STRIDE * rank` (rank 0 keeps the config's seed)."""


def average_gradients(group: Any = None) -> GradSync:
    """A `grad_sync` that replaces every gradient of the module by its mean over the workers."""

    def sync(kind: str, module: nn.Module) -> None:
        params = list(module.parameters())
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        flat /= dist.get_world_size(group)
        offset = 0
        for p in params:
            n = p.numel()
            mean = flat[offset:offset + n].view_as(p)
            if p.grad is None:
                p.grad = mean.clone()
            else:
                p.grad.copy_(mean)
            offset += n

    return sync


def broadcast_parameters(trainer: Trainer, src: int = 0, group: Any = None) -> None:
    """Copy every type's network parameters from worker `src` to all workers (one start for all)."""
    for kind in sorted(trainer.policies):
        for p in trainer.policies[kind].parameters():
            dist.broadcast(p.data, src=src, group=group)


def worker_config(cfg: ExperimentConfig, rank: int) -> ExperimentConfig:
    """Worker `rank`'s experiment: the same config with its own env and sampling seed."""
    if rank < 0:
        raise ValueError(f"rank must be >= 0, got {rank}")
    values = cfg.to_dict()
    values["train"]["seed"] = cfg.train.seed + SEED_STRIDE * rank
    return ExperimentConfig.from_dict(values)


def data_parallel_trainer(cfg: ExperimentConfig, group: Any = None) -> Trainer:
    """This worker's Trainer inside an initialised torch.distributed process group: its own envs,
    rank 0's initial networks, gradients averaged over the group."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("data_parallel_trainer needs torch.distributed initialised "
                           "(torch.distributed.init_process_group, or a Ray Train worker)")
    trainer = Trainer(worker_config(cfg, dist.get_rank(group)), grad_sync=average_gradients(group))
    broadcast_parameters(trainer, group=group)
    return trainer


def _check_sizes(num_workers: int, iterations: int) -> None:
    """Clear errors for the launchers' counts (before any process or Ray job starts)."""
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")


def _local_worker(rank: int, world: int, init_method: str, values: dict[str, Any], iterations: int,
                  out_dir: str) -> None:
    """One process of `run_local`: join the gloo group, train, save metrics and networks."""
    torch.set_num_threads(1)
    if init_method.startswith("tcp://127."):  # keep gloo's own sockets on loopback too
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        trainer = data_parallel_trainer(ExperimentConfig.from_dict(values))
        metrics = [dict(trainer.train_iteration()) for _ in range(iterations)]
        policies = {kind: {k: v.detach().cpu() for k, v in net.state_dict().items()}
                    for kind, net in trainer.policies.items()}
        torch.save({"rank": rank, "metrics": metrics, "policies": policies}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_local(cfg: ExperimentConfig, num_workers: int, iterations: int, host: str = "127.0.0.1",
              port: int | None = None) -> list[dict[str, Any]]:
    """Train `cfg` data-parallel in `num_workers` processes on this machine (gloo over `host`, no
    Ray) for `iterations` iterations. Returns per rank {"rank", "metrics" (one dict per iteration),
    "policies" (each type's state_dict)}."""
    import socket
    import tempfile

    import torch.multiprocessing as mp

    _check_sizes(num_workers, iterations)
    if port is None:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="rbc-ray-dp-") as out_dir:
        mp.spawn(_local_worker, args=(num_workers, f"tcp://{host}:{port}", cfg.to_dict(), iterations,
                                      out_dir), nprocs=num_workers, join=True)
        return [torch.load(f"{out_dir}/rank{r}.pt", weights_only=False) for r in range(num_workers)]


def _ray_train_loop(config: dict[str, Any]) -> None:
    """Ray Train's per-worker loop: train, report every iteration (rank 0 prints a progress line);
    the last report carries rank 0's networks (policies.pt) and its metrics table (metrics.parquet)
    as the checkpoint."""
    import tempfile

    import ray.train

    from ..launch import format_progress, quiet_ray_worker_logs
    from ..results import MetricsWriter

    quiet_ray_worker_logs()  # again: Train configures its worker loggers after the setup hook ran

    torch.set_num_threads(max(1, int(config["torch_threads"])))
    trainer = data_parallel_trainer(ExperimentConfig.from_dict(config["experiment"]))
    world, rank = dist.get_world_size(), dist.get_rank()
    rows = []
    for i in range(int(config["iterations"])):
        metrics = dict(trainer.train_iteration())
        metrics["workers"] = world
        rows.append(metrics)
        if rank == 0 and config.get("progress", False):
            # not print: Ray Train routes a worker's print through its logger, which echoes it twice
            sys.stdout.write(format_progress(metrics) + "\n")
            sys.stdout.flush()
        if i + 1 < int(config["iterations"]):
            ray.train.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                policies = {kind: net.state_dict() for kind, net in trainer.policies.items()}
                torch.save({"policies": policies, "config": config["experiment"]}, f"{tmp}/policies.pt")
                writer = MetricsWriter(tmp)
                for row in rows:
                    writer.append(row)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)


def run_ray_train(cfg: ExperimentConfig, num_workers: int, iterations: int, storage_path: str,
                  name: str = "rbc_data_parallel", use_gpu: bool = False, torch_threads: int = 1,
                  progress: bool = False) -> Any:
    """Train `cfg` data-parallel on `num_workers` Ray Train workers (TorchTrainer: gloo on CPU, NCCL
    on GPUs) for `iterations` iterations, on the Ray that is already initialised (local or a cluster).
    Returns Ray Train's Result: `.metrics` is rank 0's last iteration, `.checkpoint` holds its
    networks (policies.pt) and every iteration's metrics (metrics.parquet). `progress`: rank 0
    prints a line per iteration."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    _check_sizes(num_workers, iterations)
    job = TorchTrainer(
        _ray_train_loop,
        train_loop_config={"experiment": cfg.to_dict(), "iterations": iterations, "torch_threads": torch_threads,
                           "progress": progress},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": torch_threads}),
        run_config=RunConfig(name=name, storage_path=storage_path))
    return job.fit()
