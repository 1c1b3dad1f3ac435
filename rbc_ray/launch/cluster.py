"""Start or join Ray: an embedded local Ray bound to loopback, or an existing cluster by address."""

from __future__ import annotations

import importlib.util
import logging
import os

import ray

LOCAL_NODE_IP = "127.0.0.2"  # Ray rewrites 127.0.0.1 to the interface address; bind loopback


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Embedded local Ray by default; join an existing cluster with an address ("auto", "ray://..")
    or, without one, the cluster RAY_ADDRESS names (set for the entrypoint of `ray job submit`)."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    env = {"env_vars": {"OMP_NUM_THREADS": "1", "RAY_DEDUP_LOGS": "0"},
           "worker_process_setup_hook": "rbc_ray.launch.cluster.quiet_ray_worker_logs"}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=True)
    else:
        ray.init(_node_ip_address=LOCAL_NODE_IP, num_cpus=num_cpus or os.cpu_count(),
                 include_dashboard=False, runtime_env=env, log_to_driver=True)


CLUSTER_MAX_FAILURES = 2  # retries of a failed trial on a cluster, where workers and nodes come and go


def max_failures(requested: int | None, address: str | None) -> int:
    """How often a failed trial restarts from its latest checkpoint: `--max-failures` if given, else
    2 on a cluster (`--address`) and 0 on the embedded local Ray (a local failure is a bug to see)."""
    if requested is None:
        return CLUSTER_MAX_FAILURES if address else 0
    if requested < 0:
        raise ValueError(f"--max-failures must be >= 0, got {requested}")
    return requested


def quiet_ray_worker_logs() -> None:
    """Runs in every Ray worker process: mute Ray Train messages that drown our progress lines.

    Without the dashboard (we start Ray with none) Ray's State API is unavailable, so Train's
    placement-group cleaner warns on every check (about once a second); Train logs every report's
    whole metrics dict at INFO, and a line for every checkpoint a trial reports."""
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)
    for name in ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage"):
        logging.getLogger(name).setLevel(logging.WARNING)  # "Checkpoint successfully created" per report
    try:  # Train names this logger by its module's file path
        spec = importlib.util.find_spec("ray.train.v2._internal.execution.context")
    except ImportError:
        spec = None
    if spec is not None and spec.origin:  # another Ray version: leave its logging alone
        logging.getLogger(spec.origin).setLevel(logging.WARNING)


