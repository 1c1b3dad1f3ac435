"""What every bench shares: the hardware a figure was measured on, timing, and stderr progress.

Every `rbc-ray bench` prints one JSON object on stdout; progress goes to stderr (`log`).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import torch


def ray_version() -> str | None:
    """Ray's version, or None where Ray is not installed (a GPU box with torch only)."""
    try:
        import ray
    except ImportError:
        return None
    return ray.__version__


def hardware() -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores, torch threads, versions, GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "ray": ray_version(), "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def log(msg: str) -> None:
    """A progress line on stderr (stdout holds the JSON only)."""
    print(msg, file=sys.stderr, flush=True)


def timed(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    """Median wall seconds of fn over repeats (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def significant(x: float, digits: int = 4) -> float:
    """x to `digits` significant digits (fixed decimals would report a 3 ms smoke run as 0.0 s)."""
    return float(f"{x:.{digits}g}")
