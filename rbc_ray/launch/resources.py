"""GPUs for Ray trials and workers: how much each one reserves, and clear errors before Ray starts.

A Tune trial (a sweep's training trial, an analysis's best response) runs on `cpu` or `cuda` and
reserves a share of a GPU (`--gpus-per-trial`: a fraction lets several trials share one GPU); a
data-parallel Ray Train worker reserves one whole GPU. Ray picks the GPU (CUDA_VISIBLE_DEVICES, and
for Train workers ray.train.torch.get_device), so inside Ray the device is plain `cuda`, never
`cuda:N`. Once Ray runs, `check_resources` compares what one trial asks for with what the whole
cluster has, so a trial that could never start fails at once instead of pending forever.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import ray

from ..config import ConfigError


def is_cuda(device: str) -> bool:
    return str(device).startswith("cuda")


def check_ray_device(device: str, key: str) -> None:
    """`cuda:N` in a Ray trial or worker is an error: Ray assigns the GPU, and it is `cuda` there."""
    if is_cuda(device) and str(device) != "cuda":
        raise ConfigError(f"{key}={device}: under Ray every trial and worker sees only the GPU Ray "
                          f"assigned to it; use {key}=cuda")


def trial_gpus(device: str, gpus_per_trial: float | None, key: str) -> float:
    """The GPU share each trial reserves: `--gpus-per-trial` when given, else 1 when `key` (the
    trial's device) is cuda and 0 on cpu. The flag and the device must agree."""
    check_ray_device(device, key)
    cuda = is_cuda(device)
    if gpus_per_trial is None:
        return 1.0 if cuda else 0.0
    gpus = float(gpus_per_trial)
    if not gpus >= 0 or (gpus > 1 and not gpus.is_integer()):
        raise ConfigError(f"--gpus-per-trial {gpus_per_trial}: a fraction in (0, 1] to share a GPU between "
                          f"trials, or a whole number of GPUs per trial")
    if gpus > 0 and not cuda:
        raise ConfigError(f"--gpus-per-trial {gpus:g} reserves GPU for trials that run on {device}: "
                          f"add --set {key}=cuda")
    if gpus == 0 and cuda:
        raise ConfigError(f"{key}=cuda needs a GPU share per trial: --gpus-per-trial > 0 (default 1)")
    return gpus


def require_gpus(gpus: float, what: str, address: str | None) -> None:
    """A one-line error before Ray starts when `what` needs `gpus` GPUs (a fraction needs one) on
    the embedded local Ray and this machine has fewer. With `--address` (or RAY_ADDRESS, as under
    `ray job submit`) the cluster decides (its autoscaler may still add GPU nodes): nothing is
    checked here."""
    if gpus <= 0 or address or os.environ.get("RAY_ADDRESS"):
        return
    import torch

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if have == 0:
        raise ConfigError(f"{what} needs a CUDA GPU and this machine has none (torch.cuda.is_available() is "
                          f"False): run it on a GPU machine, or on a cluster with GPU nodes (--address)")
    if gpus > have:
        raise ConfigError(f"{what} needs {gpus:g} GPUs and this machine has {have}")


def requested(trainable: Any, config: dict | None = None) -> dict[str, float]:
    """The resources one trial of a Tune class trainable (`tune.with_resources`) asks for, e.g.
    {"CPU": 2, "GPU": 0}."""
    request = trainable.default_resource_request(config or {})
    return dict(request.required_resources) if request is not None else {}


def check_resources(request: dict[str, float], what: str, hint: str, address: str | None = None) -> None:
    """Fail at once, in one line, when one trial (or one data-parallel job) asks for more CPUs or GPUs
    than the whole Ray cluster has. On the embedded local Ray (no `address`) this is a ValueError; on
    a joined cluster, which may be autoscaling, a one-line warning on stderr."""
    have = ray.cluster_resources()
    need = {key.upper(): float(value or 0) for key, value in request.items()}
    short = [f"{need[key]:g} {key}{'' if need[key] == 1 else 's'} (the Ray cluster has {float(have.get(key, 0)):g})"
             for key in ("CPU", "GPU") if need.get(key, 0.0) > float(have.get(key, 0)) + 1e-9]
    if not short:
        return
    message = f"{what} needs {' and '.join(short)}, so it could never start: {hint}"
    if address:
        print(f"rbc-ray: warning: {message} (unless the cluster is autoscaling)", file=sys.stderr, flush=True)
        return
    raise ValueError(message)
