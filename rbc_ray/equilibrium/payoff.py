"""Payoffs per economy replica, on common random numbers.

U_k of one replica = the mean over type k's agents of their undiscounted episode reward (the sum of
their per-step rewards over the episode). Evaluation plays best-response conditions (no masks, full
theta) and draws everything from generators seeded by `seed`: the economy's shocks and the sampler's
uniforms have the same shapes whatever the policies, so two profiles evaluated with one seed face
the same draws, and a replica's payoff difference is a paired comparison.
"""

from __future__ import annotations

import torch

from ..economy import AGENT_TYPES, Economy
from ..policies import ActorCritic
from ..train.rollout import RolloutStorage, Timer, collect_episode


def payoffs(economy_cfg, policies: dict[str, ActorCritic], seed: int, n_envs: int, episodes: int,
            device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """{type: U [episodes * n_envs] float64}: each type's payoff per (episode, replica) unit."""
    dtype = policies[AGENT_TYPES[0]].value.weight.dtype
    economy = Economy(economy_cfg, n_envs, device, seed=seed)
    storage = RolloutStorage.allocate(economy, dtype)
    generator = torch.Generator(device=economy.device)
    generator.manual_seed(seed)
    economy.generator.manual_seed(seed)
    no_masks = {k: None for k in AGENT_TYPES}
    out: dict[str, list[torch.Tensor]] = {k: [] for k in AGENT_TYPES}
    for _ in range(episodes):
        collect_episode(economy, policies, no_masks, storage, 1.0, generator, Timer(False, economy.device),
                        {k: False for k in AGENT_TYPES})
        for kind in AGENT_TYPES:
            reward = storage.types[kind].reward.to(torch.float64)   # [T, E, n]
            out[kind].append(reward.sum(0).mean(-1))                 # [E]
    return {k: torch.cat(v) for k, v in out.items()}
