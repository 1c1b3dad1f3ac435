"""Data-parallel PPO: several workers train the same networks, each on its own economy replicas.

Every worker steps its own envs (its own seed) and runs the same PPO updates; after each backward
pass the gradient of each type is averaged over the workers (one all-reduce per type and minibatch,
torch.distributed) before clipping and Adam, so the networks stay identical on every worker. The
update equals averaging the workers' PPO losses, with advantages standardised per worker.
`run_local` runs it in processes on one machine (gloo); `rbc_ray.launch.ray_train.run_ray_train` runs
it as a Ray Train job; under any other launcher that initialises torch.distributed (torchrun) call
`data_parallel_trainer` in each worker. No Ray in this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..results import MetricsWriter, atomic_path
from .config import ExperimentConfig
from .ppo import GradSync
from .snapshots import read_torch_file
from .trainer import Trainer, check_finite_networks, check_fits, policy_shapes

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


def data_parallel_trainer(cfg: ExperimentConfig, group: Any = None,
                          device: str | torch.device | None = None) -> Trainer:
    """This worker's Trainer inside an initialised torch.distributed process group: its own envs,
    rank 0's initial networks, gradients averaged over the group. `device`: this worker's own GPU
    (one per worker, NCCL) when train.device is cuda; default train.device."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("data_parallel_trainer needs torch.distributed initialised "
                           "(torch.distributed.init_process_group, or a Ray Train worker)")
    trainer = Trainer(worker_config(cfg, dist.get_rank(group)), grad_sync=average_gradients(group),
                      device=device)
    broadcast_parameters(trainer, group=group)
    return trainer


def check_sizes(num_workers: int, iterations: int) -> None:
    """Clear errors for the launchers' counts (before any process or Ray job starts)."""
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")


CHECKPOINT_EVERY = 10
"""Ray Train runs checkpoint every this many iterations and at the end (as Tune trials do)."""


def _rank_file(rank: int) -> str:
    return f"trainer_rank{rank}.pt"


def save_worker_state(trainer: Trainer, rows: list[dict[str, Any]], folder: str | os.PathLike, rank: int) -> None:
    """This worker's part of a data-parallel checkpoint: its whole Trainer state (networks, Adam,
    curriculum position, its own RNG streams) as trainer_rank{rank}.pt; rank 0 adds the networks
    alone (policies.pt) and every iteration's metrics so far (metrics.parquet)."""
    folder = Path(folder)
    policies = {kind: net.state_dict() for kind, net in trainer.policies.items()}
    check_finite_networks(policies, "checkpoint")
    with atomic_path(folder / _rank_file(rank)) as tmp:
        torch.save(trainer.state_dict(), tmp)
    if rank == 0:
        with atomic_path(folder / "policies.pt") as tmp:
            torch.save({"policies": policies, "config": trainer.cfg.to_dict()}, tmp)
        (folder / "metrics.parquet").unlink(missing_ok=True)  # the table is rows, not rows appended to it
        writer = MetricsWriter(folder)
        for row in rows:
            writer.append(row)


def check_checkpoint(folder: str | os.PathLike, world: int, cfg: ExperimentConfig | None = None) -> None:
    """A clear error unless `folder` is a data-parallel checkpoint written by `world` workers (and,
    given `cfg`, one whose rank-0 state reads and fits the networks `cfg` builds)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"checkpoint folder {str(folder)!r} does not exist")
    written = {p.name for p in folder.glob("trainer_rank*.pt")}
    if not written:
        raise ValueError(f"{str(folder)!r} holds no data-parallel checkpoint (no trainer_rank*.pt)")
    if written != {_rank_file(r) for r in range(world)}:
        raise ValueError(f"checkpoint {str(folder)!r} was written by {len(written)} data-parallel workers; "
                         f"resume it with {len(written)} workers (--workers {len(written)}), not {world}")
    if cfg is not None:
        state = read_torch_file(folder / _rank_file(0))
        if not isinstance(state, dict):
            raise ValueError(f"{str(folder / _rank_file(0))!r} is not a trainer checkpoint")
        check_fits(state.get("policies"), policy_shapes(cfg), state.get("config"), cfg,
                   f"checkpoint {str(folder)!r}")


def restore_worker_state(trainer: Trainer, folder: str | os.PathLike, rank: int, world: int) -> list[dict[str, Any]]:
    """Load this worker's state from a checkpoint written by `world` workers; returns the metrics rows
    so far (rank 0; [] elsewhere). A checkpoint from another worker count is a clear error."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    check_checkpoint(folder, world)
    trainer.load_state_dict(read_torch_file(folder / _rank_file(rank)))
    metrics = folder / "metrics.parquet"
    return pq.read_table(metrics).to_pylist() if rank == 0 and metrics.exists() else []


def _local_worker(rank: int, world: int, init_method: str, values: dict[str, Any], iterations: int,
                  out_dir: str, checkpoint_dir: str | None, resume_from: str | None) -> None:
    """One process of `run_local`: join the process group (gloo on CPU; NCCL on cuda, rank r on GPU
    r), train, save metrics and networks."""
    torch.set_num_threads(1)
    if init_method.startswith("tcp://127."):  # keep gloo's own sockets on loopback too
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    device = None
    if str(values["train"]["device"]).startswith("cuda"):
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device is not None else "gloo", init_method=init_method, rank=rank,
                            world_size=world)
    try:
        trainer = data_parallel_trainer(ExperimentConfig.from_dict(values), device=device)
        metrics = restore_worker_state(trainer, resume_from, rank, world) if resume_from else []
        while trainer.iteration < iterations:
            metrics.append(dict(trainer.train_iteration()))
        if checkpoint_dir:
            Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
            save_worker_state(trainer, metrics, checkpoint_dir, rank)
        policies = {kind: {k: v.detach().cpu() for k, v in net.state_dict().items()}
                    for kind, net in trainer.policies.items()}
        with atomic_path(f"{out_dir}/rank{rank}.pt") as tmp:
            torch.save({"rank": rank, "metrics": metrics, "policies": policies}, tmp)
    finally:
        dist.destroy_process_group()


def run_local(cfg: ExperimentConfig, num_workers: int, iterations: int, host: str = "127.0.0.1",
              port: int | None = None, checkpoint_dir: str | None = None,
              resume_from: str | None = None) -> list[dict[str, Any]]:
    """Train `cfg` data-parallel in `num_workers` processes on this machine (gloo over `host`, no
    Ray; with train.device=cuda, NCCL with worker r on GPU r) until `iterations` iterations are
    done. Returns per rank {"rank", "metrics" (one dict per iteration; rank 0's include those before
    a resume), "policies" (each type's state_dict)}.
    `checkpoint_dir`: write the final state there (the same files as a Ray Train checkpoint);
    `resume_from`: start from such a folder instead of from scratch."""
    import socket
    import tempfile

    import torch.multiprocessing as mp

    check_sizes(num_workers, iterations)
    if str(cfg.train.device).startswith("cuda"):
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if have < num_workers:
            raise ValueError(f"run_local on cuda puts one worker on each GPU: {num_workers} workers, {have} GPUs")
    if resume_from is not None:
        check_checkpoint(resume_from, num_workers)
    if port is None:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="rbc-ray-dp-") as out_dir:
        mp.spawn(_local_worker, args=(num_workers, f"tcp://{host}:{port}", cfg.to_dict(), iterations,
                                      out_dir, checkpoint_dir, resume_from), nprocs=num_workers, join=True)
        return [torch.load(f"{out_dir}/rank{r}.pt", weights_only=False) for r in range(num_workers)]
