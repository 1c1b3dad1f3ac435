"""PettingZoo ParallelEnv view of the RBC economy: a thin wrapper around `RBCMultiAgentEnv`.

    from rbc_ray.envs.pettingzoo import RBCParallelEnv
    env = RBCParallelEnv({"preset": "closed", "n_consumers": 3, "n_firms": 2})
    obs, infos = env.reset(seed=0)
    while env.agents:
        obs, rewards, terminations, truncations, infos = env.step(
            {a: env.action_space(a).sample() for a in env.agents})

Same ids, spaces, rewards and episode end as the RLlib env, without the "__all__" keys; after the
last step of an episode `agents` is empty, as PettingZoo expects.
"""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
from pettingzoo import ParallelEnv

from .rllib import RBCMultiAgentEnv


class RBCParallelEnv(ParallelEnv):
    """All agents act simultaneously every step; the episode lasts episode_length steps."""

    metadata = {"name": "rbc_parallel_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(self, env_config: Mapping[str, Any] | None = None) -> None:
        self.rllib_env = RBCMultiAgentEnv(env_config)
        self.cfg = self.rllib_env.cfg
        self.possible_agents = list(self.rllib_env.possible_agents)
        self.agents: list[str] = []
        self.render_mode = None

    def observation_space(self, agent: str) -> gym.Space:
        return self.rllib_env.observation_spaces[agent]

    def action_space(self, agent: str) -> gym.Space:
        return self.rllib_env.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        obs, infos = self.rllib_env.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        return obs, infos

    def step(self, actions: Mapping[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        obs, rewards, terminateds, truncateds, infos = self.rllib_env.step(actions)
        terminateds.pop("__all__")
        truncateds.pop("__all__")
        if any(terminateds.values()) or any(truncateds.values()):
            self.agents = []
        return obs, rewards, terminateds, truncateds, infos

    def render(self) -> None:
        return None

    def close(self) -> None:
        return None

    def state(self):
        raise NotImplementedError("RBCParallelEnv has no global state view; use the observations")
