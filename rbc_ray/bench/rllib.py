"""Speed of the stock-RLlib path, to compare with rbc-ray's batched figures (`rbc-ray bench env|train`).

rllib_env_agent_steps_per_s: steps RBCMultiAgentEnv (one replica, per-agent dicts) with uniformly
    random valid actions. Fairness: the actions are pre-sampled numpy int64 arrays (a pool of
    `action_pool` per-agent dicts, drawn uniformly from each head, cycled), so the figure measures the
    env (dict <-> tensor conversion, the batched step, infos, resets), not the sampler; resets at the
    end of each episode are inside the timed loop, as they are in training.
rllib_ppo_agent_steps_per_s: stock RLlib PPO (new API stack, default RLModule with a 2 x 128 ReLU
    trunk, one module per agent type, num_env_runners=0, one torch thread, 2 full-batch epochs) on the
    same economy; agent-steps/s over training iterations after one warm-up iteration, i.e. sampling
    plus learning, counted from RLlib's own env-runner metric `num_agent_steps_sampled_lifetime`.

An agent-step is one agent acting once: env-steps x (n_consumers + n_firms + 1).
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from ..economy import AGENT_TYPES, action_nvec
from ..envs.rllib import RBCMultiAgentEnv, agent_ids, parse_env_config, policy_mapping_fn

RAY_INIT_DEFAULTS = {"_node_ip_address": "127.0.0.2", "num_cpus": 2, "include_dashboard": False,
                     "log_to_driver": False}
"""ray.init arguments used when no Ray is running (127.0.0.2: Ray rewrites 127.0.0.1 to the host IP)."""


def random_action_pool(env: RBCMultiAgentEnv, size: int, seed: int) -> list[dict[str, np.ndarray]]:
    """`size` per-agent action dicts, each head uniform over its grid (numpy int64 arrays)."""
    rng = np.random.default_rng(seed)
    nvec = action_nvec(env.cfg)
    ids = agent_ids(env.cfg)
    pool = []
    for _ in range(size):
        actions: dict[str, np.ndarray] = {}
        for kind in AGENT_TYPES:
            high = np.asarray(nvec[kind], dtype=np.int64)
            draws = rng.integers(0, high, size=(len(ids[kind]), len(high)), dtype=np.int64)
            actions.update(zip(ids[kind], draws))
        pool.append(actions)
    return pool


def rllib_env_agent_steps_per_s(env_config: Mapping[str, Any], n_steps: int, seed: int = 0,
                                warmup_steps: int | None = None, action_pool: int = 64) -> float:
    """Agent-steps per second of RBCMultiAgentEnv.step under uniformly random valid actions.

    Runs `warmup_steps` untimed steps (default: one episode), then `n_steps` timed env-steps,
    resetting at the end of each episode.
    """
    if n_steps <= 0:
        raise ValueError(f"n_steps={n_steps!r}: must be positive")
    env = RBCMultiAgentEnv({**dict(env_config), "seed": seed})
    pool = random_action_pool(env, max(1, min(action_pool, n_steps)), seed)
    n_agents = len(env.possible_agents)
    warmup = env.cfg.episode_length if warmup_steps is None else warmup_steps

    def run(steps: int, offset: int) -> None:
        for i in range(steps):
            _, _, terminateds, truncateds, _ = env.step(pool[(offset + i) % len(pool)])
            if terminateds["__all__"] or truncateds["__all__"]:
                env.reset()

    env.reset(seed=seed)
    run(warmup, 0)
    start = time.perf_counter()
    run(n_steps, warmup)
    elapsed = time.perf_counter() - start
    return n_steps * n_agents / elapsed


def ppo_config(env_config: Mapping[str, Any], train_batch_env_steps: int, seed: int = 0,
               num_epochs: int = 2, hidden: tuple[int, ...] = (128, 128), lr: float = 1e-3):
    """Stock RLlib PPOConfig for the RBC env: one default RLModule per agent type, local sampling.

    Steps are counted by agent-steps (train batch = train_batch_env_steps x n_agents; every agent acts
    every step, so this samples exactly train_batch_env_steps env-steps). Full batch: RLlib cuts every
    module's batch into minibatches of the same row count, and PPO's validation caps minibatch_size at
    the train batch, so minibatch_size = the whole train batch in agent-steps. That covers the largest
    (consumer) module batch; the smaller firm and government batches are cycled up to that size, which
    for a mean loss is their full-batch gradient. Each of the `num_epochs` passes is then one gradient
    step per module. Caveat: RLlib's learner adds one bootstrap row per episode chunk, so the consumer
    batch has N x (env-steps + chunks) rows. With train_batch_env_steps a multiple of episode_length T
    that fits in one minibatch iff N <= (F + 1) x T (100 <= 110 for the reference economy); otherwise
    RLlib makes one extra pass (checked: `num_module_steps_trained` = passes x minibatch_size).
    """
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    cfg, _ = parse_env_config(env_config)
    agent_batch = train_batch_env_steps * cfg.n_agents
    model_config = {"fcnet_hiddens": list(hidden), "fcnet_activation": "relu"}
    modules = {kind: RLModuleSpec(model_config=model_config) for kind in AGENT_TYPES}
    return (
        PPOConfig()
        .environment(RBCMultiAgentEnv, env_config=dict(env_config))
        .multi_agent(policies=set(AGENT_TYPES), policy_mapping_fn=policy_mapping_fn)
        .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs=modules))
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .learners(num_learners=0)
        .multi_agent(count_steps_by="agent_steps")
        .training(train_batch_size_per_learner=agent_batch, minibatch_size=agent_batch,
                  num_epochs=num_epochs, lr=lr)
        .debugging(seed=seed, log_level="ERROR")
    )


def agent_steps_sampled(result: Mapping[str, Any]) -> float:
    """Lifetime agent-steps sampled: RLlib reports them per agent id, so sum them."""
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_AGENT_STEPS_SAMPLED_LIFETIME

    value = result[ENV_RUNNER_RESULTS][NUM_AGENT_STEPS_SAMPLED_LIFETIME]
    return float(sum(value.values())) if isinstance(value, Mapping) else float(value)


def rllib_ppo_agent_steps_per_s(env_config: Mapping[str, Any], n_agent_steps: int,
                                train_batch_env_steps: int, seed: int = 0, num_epochs: int = 2,
                                hidden: tuple[int, ...] = (128, 128),
                                ray_init_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Stock RLlib PPO throughput on the RBC economy (sampling + learning), after one warm-up iteration.

    Trains until at least `n_agent_steps` agent-steps have been sampled after the warm-up (at least
    one iteration). Starts a local Ray (RAY_INIT_DEFAULTS, overridable) only when none is running and
    shuts it down again. Returns wall_s, agent_steps, env_steps, iterations, agent_steps_per_s,
    env_steps_per_s and the last result's per-module learner stats (`learner_stats`).
    """
    import ray
    import torch
    from ray.rllib.utils.metrics import (ENV_RUNNER_RESULTS, LEARNER_RESULTS,
                                         NUM_ENV_STEPS_SAMPLED_LIFETIME)

    if n_agent_steps <= 0 or train_batch_env_steps <= 0:
        raise ValueError("n_agent_steps and train_batch_env_steps must be positive")
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(**{**RAY_INIT_DEFAULTS, **dict(ray_init_kwargs or {})})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    algo = None
    try:
        algo = ppo_config(env_config, train_batch_env_steps, seed, num_epochs, hidden).build_algo()
        result = algo.train()  # warm-up iteration
        agent0 = agent_steps_sampled(result)
        env0 = float(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME])
        iterations = 0
        start = time.perf_counter()
        while True:
            result = algo.train()
            iterations += 1
            if agent_steps_sampled(result) - agent0 >= n_agent_steps:
                break
        wall = time.perf_counter() - start
        agent_steps = agent_steps_sampled(result) - agent0
        env_steps = float(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME]) - env0
        learner_stats = {k: dict(v) for k, v in result[LEARNER_RESULTS].items() if k in AGENT_TYPES}
    finally:
        if algo is not None:
            algo.stop()
        torch.set_num_threads(threads)
        if started_ray:
            ray.shutdown()
    return {"wall_s": wall, "agent_steps": agent_steps, "env_steps": env_steps, "iterations": iterations,
            "agent_steps_per_s": agent_steps / wall, "env_steps_per_s": env_steps / wall,
            "learner_stats": learner_stats}
