"""`rbc-ray bench env|train|srl`: speed figures as one JSON object on stdout (BENCHMARKS.md).

Every figure is a median over repeats after a warm-up, and every comparison is a ratio measured in
this process on the same economy.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import torch

from .economy import Economy, EconomyConfig, fused, open_economy


def hardware() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "ray": _ray_version(), "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _ray_version() -> str | None:
    try:
        import ray
    except ImportError:  # e.g. a GPU box with torch only: our own figures still run
        return None
    return ray.__version__


def log(msg: str) -> None:
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


def batched_step_rate(cfg: EconomyConfig, n_envs: int, device: str, steps: int, repeats: int,
                      compile: bool = False, backend: str = "auto") -> float:
    """Agent-steps/s of the batched step (observations included), pre-sampled random actions."""
    eco = Economy(cfg, n_envs=n_envs, device=device, seed=0, compile=compile, backend=backend)
    actions = [eco.random_actions() for _ in range(min(steps, 16))]

    def run() -> None:
        with torch.inference_mode():
            for i in range(steps):
                eco.step(actions[i % len(actions)], validate=False)

    seconds = timed(run, repeats, eco.device)
    return steps * n_envs * cfg.n_agents / seconds


def reference_step_rate(cfg: EconomyConfig, steps: int, repeats: int = 2) -> float:
    """Agent-steps/s of the plain per-agent reference loop (one env), random actions."""
    from .economy.reference import ReferenceEconomy

    eco = Economy(cfg, n_envs=1, seed=0)
    actions = [eco.random_actions() for _ in range(steps)]
    plain = [(a.consumer[0].tolist(), a.firm[0].tolist(), a.government[0].tolist()) for a in actions]

    def run() -> None:
        ref = ReferenceEconomy(cfg)
        for consumer, firm, government in plain:
            ref.step(consumer, firm, government)

    seconds = timed(run, repeats, torch.device("cpu"))
    return steps * cfg.n_agents / seconds


def bench_env(quick: bool = False, device: str = "cpu", compile: bool | str | None = "auto",
              envs: list[int] | None = None) -> dict[str, Any]:
    """Batched step vs the per-agent loop vs the RLlib env, at paper scale and larger batches."""
    cfg = open_economy()
    # 9 repeats: on these shared 2-core machines a 50-step window (8 ms for the fused step) is now
    # and then slowed by a neighbour; the median of 9 shrugs off up to 4 such windows
    steps, repeats = (20, 3) if quick else (50, 9)
    env_counts = [128, 1024] if not quick else [128]
    if device == "cuda":
        env_counts = env_counts + ([8192] if quick else [8192, 65536])
    env_counts = envs or env_counts
    log(f"bench env: reference loop ({cfg.n_consumers}/{cfg.n_firms}/1, 1 env)")
    ref_rate = reference_step_rate(cfg, 5 if quick else 10, 2 if quick else 5)
    rllib_rate = None
    if _ray_version() is not None:
        from .bench_rllib import rllib_env_agent_steps_per_s

        log("bench env: RLlib MultiAgentEnv with random actions")
        rllib_rate = rllib_env_agent_steps_per_s({"preset": "open"}, 10 if quick else 30, seed=0)
    cases = []
    if compile == "auto":
        compile = None if device.startswith("cuda") else False
    compile_modes = [False, True] if compile is None else [compile]
    # (backend, compiled) pairs: on CPU the fused kernel first (the default), then the torch step
    variants = [("torch", comp) for comp in compile_modes]
    if not device.startswith("cuda") and fused.available():
        variants = [("fused", False)] + variants
    elif not device.startswith("cuda"):
        log(f"bench env: fused CPU step unavailable ({fused.error()}); timing the torch step only")
    for n_envs in env_counts:
        torch_rate = None
        for backend, comp in variants:
            log(f"bench env: batched step, {n_envs} envs, backend={backend}, compile={comp}")
            try:
                rate = batched_step_rate(cfg, n_envs, device, steps, repeats, compile=comp, backend=backend)
            except Exception as err:  # compile needs a C++ toolchain (CPU) or Triton (GPU)
                log(f"  skipped: {type(err).__name__}: {err}")
                continue
            if backend == "torch" and not comp:
                torch_rate = rate
            cases.append({
                "n_envs": n_envs, "n_consumers": cfg.n_consumers, "n_firms": cfg.n_firms,
                "agents": cfg.n_agents, "device": device, "dtype": cfg.dtype, "backend": backend,
                "compiled": comp, "agent_steps_per_s": rate, "env_steps_per_s": rate / cfg.n_agents,
                "speedup_vs_reference_loop": rate / ref_rate,
                "speedup_vs_rllib_env": rate / rllib_rate if rllib_rate else None,
            })
        for case in cases:
            if case["n_envs"] == n_envs and torch_rate:
                case["speedup_vs_torch_eager_step"] = case["agent_steps_per_s"] / torch_rate
    return {"bench": "env", "hardware": hardware(), "quick": quick,
            "reference_loop_agent_steps_per_s": ref_rate, "rllib_env_agent_steps_per_s": rllib_rate,
            "cases": cases}
