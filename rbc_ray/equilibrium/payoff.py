"""Payoffs per economy replica, on common random numbers.

U_k of one replica = the mean over type k's agents of their undiscounted episode reward (the sum of
their per-step rewards over the episode). Evaluation plays best-response conditions (no masks, full
theta) and draws everything from generators seeded by `seed`: the economy's shocks and the sampler's
uniforms have the same shapes whatever the policies, so two profiles evaluated with one seed face
the same draws, and a replica's payoff difference is a paired comparison.
"""

from __future__ import annotations

from typing import Iterator

import torch

from ..economy import AGENT_TYPES, Economy
from ..policies import ActorCritic
from ..train.rollout import RolloutStorage, Timer, collect_episode


def evaluation_episodes(economy_cfg, policies: dict[str, ActorCritic], seed: int, n_envs: int, episodes: int,
                        device: str | torch.device = "cpu") -> Iterator[RolloutStorage]:
    """Play `episodes` episodes of `n_envs` replicas under best-response conditions (no masks, full
    theta), every draw seeded by `seed`; yields the filled rollout storage after each episode."""
    dtype = policies[AGENT_TYPES[0]].value.weight.dtype
    economy = Economy(economy_cfg, n_envs, device, seed=seed)
    storage = RolloutStorage.allocate(economy, dtype, per_agent_steps=1)  # rewards and globals: every step
    generator = torch.Generator(device=economy.device)
    generator.manual_seed(seed)
    economy.generator.manual_seed(seed)
    no_masks = {k: None for k in AGENT_TYPES}
    for _ in range(episodes):
        with torch.no_grad():
            collect_episode(economy, policies, no_masks, storage, 1.0, generator, Timer(False, economy.device),
                            {k: False for k in AGENT_TYPES})
        yield storage


def episode_payoffs(storage: RolloutStorage, kind: str) -> torch.Tensor:
    """U_k per replica [E] (float64): the type's per-agent episode reward summed over steps, averaged
    over its agents."""
    return storage.types[kind].reward.to(torch.float64).sum(0).mean(-1)


def payoffs(economy_cfg, policies: dict[str, ActorCritic], seed: int, n_envs: int, episodes: int,
            device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """{type: U [episodes * n_envs] float64}: each type's payoff per (episode, replica) unit."""
    out: dict[str, list[torch.Tensor]] = {k: [] for k in AGENT_TYPES}
    for storage in evaluation_episodes(economy_cfg, policies, seed, n_envs, episodes, device):
        for kind in AGENT_TYPES:
            out[kind].append(episode_payoffs(storage, kind))
    return {k: torch.cat(v) for k, v in out.items()}
