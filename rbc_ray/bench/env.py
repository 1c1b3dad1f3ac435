"""`rbc-ray bench env`: agent-steps/s of the batched step against the per-agent loop and the RLlib env.

Every figure is a median over repeats after a warm-up, and every comparison is a ratio measured in
this process on the same economy.
"""

from __future__ import annotations

from typing import Any

import torch

from ..economy import Economy, EconomyConfig, fused, open_economy
from ..economy.reference import ReferenceEconomy
from .common import hardware, log, ray_version, timed


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
    if ray_version() is not None:
        from .rllib import rllib_env_agent_steps_per_s

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
