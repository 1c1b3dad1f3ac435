"""`rbc-ray bench scale`: seconds per training iteration and peak memory from 111 to 100,101 agents.

How to run:  rbc-ray bench scale --json          (the four sizes below; 15-30 minutes on 2 CPU cores)
             rbc-ray bench scale --json --quick  (three small economies, seconds)
Results to expect (2-core CPU, 1 thread): 100000 consumers / 100 firms at about 280 s and 2.3 GB
per iteration; slopes about 1.2-1.3 for time (the firm count grows with the series) and 0.7 for memory.

Each case trains one economy (consumers/firms: 100/10, 1000/10, 10000/100, 100000/100, plus the
government) with the same env count, episode length, network (2 x 128) and PPO settings as
`bench train`, every type training: one warm-up iteration, then the median of the timed ones. Each
case's peak memory is its own: on CPU the peak resident set during the case (the kernel's mark,
reset before it) less the resident set before the trainer was built, on CUDA the device's maximum
allocated memory. The full bench runs every case in a fresh Python process; --quick runs them in
this one. The process's CPU time per iteration is reported beside the wall time: on a shared
machine other processes stretch the wall time of one case and not another, the CPU time much less.
The figures are fitted as `slope` = the least-squares slope of ln(seconds per iteration) on
ln(agents) (1.0: linear in agents), `cpu_slope` likewise for CPU seconds and `memory_slope` for
peak memory.
"""

from __future__ import annotations

import json
import math
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Sequence

import torch

from .common import hardware, log, significant

FULL_CASES = ((100, 10), (1000, 10), (10000, 100), (100000, 100))
"""(consumers, firms) of the full bench: 111, 1,011, 10,101 and 100,101 agents with the government"""
QUICK_CASES = ((10, 2), (30, 3), (100, 10))
"""(consumers, firms) of --quick"""


def loglog_slope(agents: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of ln(values) on ln(agents): the exponent b of values ~ a * agents^b."""
    if len(agents) != len(values) or len(agents) < 2:
        raise ValueError(f"need two or more (agents, value) pairs, got {len(agents)} and {len(values)}")
    x = [math.log(a) for a in agents]
    y = [math.log(v) for v in values]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxx = sum((a - mx) ** 2 for a in x)
    if sxx == 0:
        raise ValueError("the agent counts must differ")
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / sxx


def experiment(consumers: int, firms: int, n_envs: int, device: str, threads: int) -> dict[str, Any]:
    """bench train's setup (every type training from episode 0) at one economy size."""
    return {
        "name": "bench_scale",
        "economy": {"preset": "open", "n_consumers": consumers, "n_firms": firms},
        "train": {"n_envs": n_envs, "episodes_per_iteration": 1, "device": device, "torch_threads": threads,
                  "seed": 0},
        "curriculum": {"firm_start": 0, "government_start": 0, "tax_cap_start": 0, "tax_cap_end": 0},
    }


def _rss_mb() -> float:
    """The resident set size now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process to its current RSS (Linux >= 4.0: write 5 to
    /proc/self/clear_refs); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The peak RSS since the process started or since reset_peak_rss (VmHWM; else ru_maxrss)."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _load_lazy_modules() -> None:
    """Import what a trainer loads on first use (the fused kernel; torch._dynamo, which the first
    Adam optimiser imports: about 75 MB), so a case's memory is the case's own."""
    from ..economy import fused

    fused.available()
    torch.optim.Adam(torch.nn.Linear(1, 1).parameters())


def run_case(consumers: int, firms: int, n_envs: int, device: str, threads: int, repeats: int) -> dict[str, Any]:
    """Time one economy size in this process: warm-up iteration, then `repeats` timed iterations."""
    from ..train import Trainer, load_experiment

    torch.set_num_threads(threads)
    cfg, _ = load_experiment(experiment(consumers, firms, n_envs, device, threads))
    cuda = torch.device(device).type == "cuda"
    _load_lazy_modules()
    reset_peak_rss()
    rss_before = _rss_mb()
    if cuda:
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats(device)
    trainer = Trainer(cfg)
    times, cpu_times = [], []
    for i in range(repeats + 1):
        if cuda:
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.train_iteration()
        if cuda:
            torch.cuda.synchronize()
        if i > 0:  # the first is the warm-up
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    rss_peak = peak_rss_mb()
    econ = cfg.economy_config
    agent_steps = n_envs * econ.episode_length * econ.n_agents
    seconds = statistics.median(times)
    rss_growth = max(rss_peak - rss_before, 0.0)
    return {
        "agents": econ.n_agents, "consumers": consumers, "firms": firms, "n_envs": n_envs,
        "agent_steps": agent_steps, "seconds_per_iteration": seconds,
        "agent_steps_per_s": agent_steps / seconds, "cpu_seconds_per_iteration": statistics.median(cpu_times),
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else rss_growth,
        "peak_rss_mb": rss_growth, "repeats": times,
    }


def run_case_isolated(consumers: int, firms: int, n_envs: int, device: str, threads: int,
                      repeats: int) -> dict[str, Any]:
    """run_case in a fresh Python process (so ru_maxrss and CUDA's peak are this case's alone)."""
    args = json.dumps({"consumers": consumers, "firms": firms, "n_envs": n_envs, "device": device,
                       "threads": threads, "repeats": repeats})
    proc = subprocess.run([sys.executable, "-m", "rbc_ray.bench.scale", args], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return {"consumers": consumers, "firms": firms, "n_envs": n_envs, "error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_scale(quick: bool = False, device: str = "cpu", n_envs: int | None = None,
                cases: Sequence[tuple[int, int]] | None = None, isolate: bool | None = None) -> dict[str, Any]:
    """Time every case, then fit the log-log slopes of time and memory against agents.

    isolate: each case in a fresh Python process (the default of the full bench), or one after the
    other in this one, the peak-RSS mark reset before each (the default of --quick, where a fresh
    interpreter would cost more than the case; falls back to processes where the mark cannot be
    reset)."""
    cases = tuple(cases or (QUICK_CASES if quick else FULL_CASES))
    n_envs = n_envs or (2 if quick else 1)
    repeats = 2
    threads = torch.get_num_threads()
    if isolate is None:
        isolate = not quick or torch.device(device).type == "cuda" or not reset_peak_rss()
    rows = []
    for consumers, firms in cases:
        log(f"bench scale: {consumers} consumers, {firms} firms, {n_envs} envs, {device}")
        if isolate:
            row = run_case_isolated(consumers, firms, n_envs, device, threads, repeats)
        else:
            row = run_case(consumers, firms, n_envs, device, threads, repeats)
        if "error" in row:
            log(f"  failed: {row['error']}")
        else:
            log(f"  {row['seconds_per_iteration']:.3g} s per iteration, {row['peak_memory_mb']:.0f} MB")
        rows.append(row)
    ok = [r for r in rows if "error" not in r]
    agents = [r["agents"] for r in ok]

    def slopes(key: str) -> tuple[float | None, list[float]]:
        values = [max(r[key], 1e-9) for r in ok]
        if len(ok) < 2:
            return None, []
        pairs = zip(zip(agents, values), zip(agents[1:], values[1:]))
        return loglog_slope(agents, values), [significant(loglog_slope([a, b], [u, v]))
                                              for (a, u), (b, v) in pairs]

    slope, segments = slopes("seconds_per_iteration")
    cpu_slope, cpu_segments = slopes("cpu_seconds_per_iteration")
    memory_slope, memory_segments = slopes("peak_memory_mb")
    from ..train.chunks import DEFAULT_CHUNK_MB

    return {
        "bench": "scale", "hardware": hardware(), "quick": quick, "device": device, "dtype": "float32",
        "n_envs": n_envs, "episodes_per_iteration": 1, "episode_length": 10, "hidden": [128, 128],
        "ppo_epochs": 2, "chunk_mb": DEFAULT_CHUNK_MB, "timed_iterations": repeats, "isolated": isolate,
        "cases": rows,
        "fit": "least squares of ln(y) on ln(agents) over the cases that ran",
        "slope": slope, "segment_slopes": segments, "cpu_slope": cpu_slope, "cpu_segment_slopes": cpu_segments,
        "memory_slope": memory_slope, "memory_segment_slopes": memory_segments,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Child process entry: one case from a JSON argument, its row as JSON on stdout."""
    spec = json.loads((argv or sys.argv[1:])[0])
    print(json.dumps(run_case(spec["consumers"], spec["firms"], spec["n_envs"], spec["device"], spec["threads"],
                              spec["repeats"])))


if __name__ == "__main__":
    main()
