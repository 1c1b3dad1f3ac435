"""`rbc-ray bench train`: end-to-end PPO agent-steps/s (rollout + update) at paper scale.

Our trainer runs the paper's economy (100/10/1, 128 envs x 10-step episodes, 2 x 128 trunk, 2 PPO
epochs) with every agent type training (the costliest curriculum phase). The baseline is stock RLlib
PPO on the same economy through RBCMultiAgentEnv, same network and epochs, in the same process.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from ..train import Trainer, load_experiment
from .common import hardware, log, ray_version


def paper_scale_experiment(device: str, episodes_per_iteration: int, profile: bool,
                           n_envs: int = 128, compile: bool = False) -> dict[str, Any]:
    """The paper's setup with all three types training from episode 0 (no frozen phase)."""
    threads = torch.get_num_threads()
    return {
        "name": "bench_train",
        "economy": {"preset": "open", "n_consumers": 100, "n_firms": 10},
        "train": {"n_envs": n_envs, "episodes_per_iteration": episodes_per_iteration, "device": device,
                  "profile": profile, "torch_threads": threads, "seed": 0, "compile": compile},
        "curriculum": {"firm_start": 0, "government_start": 0, "tax_cap_start": 0, "tax_cap_end": 0},
    }


def compiled_vs_eager(device: str, episodes: int, repeats: int) -> dict[str, Any]:
    """train.compile on and off side by side in this process: iterations alternate between the two
    trainers after each one's first (the compiled one's includes compiling), medians compared."""
    eager = Trainer(load_experiment(paper_scale_experiment(device, episodes, profile=False))[0])
    compiled = Trainer(load_experiment(paper_scale_experiment(device, episodes, profile=False, compile=True))[0])
    start = time.perf_counter()
    compiled.train_iteration()
    first = time.perf_counter() - start
    eager.train_iteration()
    rates: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(repeats):
        rates["eager"].append(eager.train_iteration()["agent_steps_per_s"])
        rates["compiled"].append(compiled.train_iteration()["agent_steps_per_s"])
    e, c = statistics.median(rates["eager"]), statistics.median(rates["compiled"])
    return {"eager_agent_steps_per_s": e, "compiled_agent_steps_per_s": c, "compiled_over_eager": c / e,
            "compiled_repeats": rates["compiled"], "eager_repeats": rates["eager"],
            "compiled_first_iteration_s": first}


def our_rate(device: str, episodes: int, repeats: int, n_envs: int = 128, compile: bool = False) -> dict[str, Any]:
    """Median agent-steps/s over `repeats` iterations after a warm-up, then one profiled iteration."""
    cfg, _ = load_experiment(paper_scale_experiment(device, episodes, profile=False, n_envs=n_envs,
                                                    compile=compile))
    trainer = Trainer(cfg)
    trainer.train_iteration()  # warm-up (allocations, first-touch, CUDA context)
    rates = [trainer.train_iteration()["agent_steps_per_s"] for _ in range(repeats)]
    cfg_p, _ = load_experiment(paper_scale_experiment(device, episodes, profile=True, n_envs=n_envs))
    profiled = Trainer(cfg_p)
    profiled.train_iteration()
    share = profiled.train_iteration()
    return {"agent_steps_per_s": statistics.median(rates), "repeats": rates,
            "agent_steps_per_iteration": episodes * n_envs * 10 * 111,
            "policy_time_share": share.get("policy_time_share"),
            "time_policy_s": share.get("time_policy_s"), "time_env_s": share.get("time_env_s")}


def bench_train(quick: bool = False, device: str = "cpu", compile: bool | None = False) -> dict[str, Any]:
    """compile: train.compile off (False), on (True), or both side by side (None: the figures of
    compiled_vs_eager under `compile`, the rest with it off)."""
    episodes, repeats = (2, 3) if quick else (5, 5)
    log(f"bench train: our trainer, paper scale, {episodes} episodes per iteration, {device}, compile={compile}")
    ours = our_rate(device, episodes, repeats, compile=bool(compile))
    result: dict[str, Any] = {
        "bench": "train", "hardware": hardware(), "quick": quick, "device": device,
        "n_envs": 128, "n_consumers": 100, "n_firms": 10, "agents": 111, "episode_length": 10,
        "hidden": [128, 128], "ppo_epochs": 2, "compiled": bool(compile), **ours,
    }
    if compile is None:
        log("bench train: train.compile on and off, side by side")
        result["compile"] = compiled_vs_eager(device, episodes, 5 if quick else 7)
    if device == "cuda":
        for n_envs in ((1024,) if quick else (1024, 8192)):
            log(f"bench train: our trainer, {n_envs} envs")
            result[f"agent_steps_per_s_{n_envs}_envs"] = our_rate(device, 2, 2, n_envs)["agent_steps_per_s"]
    if ray_version() is None:
        result["speedup_vs_rllib_ppo"] = None
        return result
    from .rllib import rllib_ppo_agent_steps_per_s

    # RLlib samples ~2k agent-steps/s here: one 128-env-step batch (quick) or one full 128 x 10
    # episode batch, timed after a warm-up iteration; rates are compared, not totals.
    batch_env_steps = 128 if quick else 1280
    log(f"bench train: stock RLlib PPO, train batch {batch_env_steps} env-steps")
    rllib = rllib_ppo_agent_steps_per_s({"preset": "open"}, n_agent_steps=batch_env_steps * 111,
                                        train_batch_env_steps=batch_env_steps)
    result["rllib_ppo_agent_steps_per_s"] = rllib["agent_steps_per_s"]
    result["rllib_ppo_train_batch_env_steps"] = batch_env_steps
    result["speedup_vs_rllib_ppo"] = result["agent_steps_per_s"] / rllib["agent_steps_per_s"]
    return result
