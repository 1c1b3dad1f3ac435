"""RLlib view of the RBC economy: one replica of the batched `Economy` as a `MultiAgentEnv`.

The batched core (rbc_ray.economy) stays the single source of truth: this adapter only turns one
replica's tensors into per-agent dicts and back. Agent ids are `consumer_0..N-1`, `firm_0..F-1` and
`government`; each agent type maps to one RLModule ("consumer", "firm", "government") through the
module-level `policy_mapping_fn`.

    from rbc_ray.envs import RBCMultiAgentEnv
    env = RBCMultiAgentEnv({"preset": "open", "n_consumers": 3, "n_firms": 2, "seed": 0})
    obs, infos = env.reset(seed=0)
    actions = {aid: env.action_spaces[aid].sample() for aid in env.agents}
    obs, rewards, terminateds, truncateds, infos = env.step(actions)

End of an episode: the economy is a finite-horizon game of `episode_length` steps whose observation
includes t/T, and the reference computes returns within the episode without bootstrapping. So by
default the last step reports `terminateds[...] = True` (and `truncateds` False): RLlib then does not
bootstrap from the value of the final state (which no transition ever trains). Set
`env_config["episode_end"] = "truncated"` to report a time-limit truncation instead (RLlib will then
bootstrap V(s_T)).
"""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rbc_ray.economy import (AGENT_TYPES, ActionError, Actions, ConfigError, Economy, EconomyConfig,
                             action_nvec, obs_sizes)

ENV_KEYS = ("seed", "episode_end")
"""env_config keys of the adapter itself; every other key is `preset` or an EconomyConfig field."""
EPISODE_END = ("terminated", "truncated")


def policy_mapping_fn(agent_id: str, episode: Any = None, **kwargs: Any) -> str:
    """Module id of an agent: its type ("consumer", "firm" or "government")."""
    if agent_id == "government":
        return "government"
    kind, _, index = str(agent_id).rpartition("_")
    if kind in ("consumer", "firm") and index.isdigit():
        return kind
    raise ValueError(f"unknown agent id {agent_id!r}: expected consumer_<i>, firm_<i> or government")


def agent_ids(cfg: EconomyConfig) -> dict[str, list[str]]:
    """Agent ids per type, in row order of the batched economy."""
    return {"consumer": [f"consumer_{j}" for j in range(cfg.n_consumers)],
            "firm": [f"firm_{i}" for i in range(cfg.n_firms)],
            "government": ["government"]}


def parse_env_config(env_config: Mapping[str, Any] | None) -> tuple[EconomyConfig, dict[str, Any]]:
    """Split an env_config into the EconomyConfig and the adapter's own options (seed, episode_end).

    Unknown keys and bad values raise ConfigError naming the key.
    """
    if env_config is not None and not isinstance(env_config, Mapping):
        raise ConfigError(f"env_config must be a dict, got {type(env_config).__name__}")
    values = dict(env_config or {})  # RLlib passes an EnvContext (a dict subclass)
    opts = {"seed": values.pop("seed", None), "episode_end": values.pop("episode_end", "terminated")}
    seed = opts["seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ConfigError(f"env_config key 'seed' must be an int or None, got {seed!r}")
    opts["seed"] = None if seed is None else int(seed)
    if opts["episode_end"] not in EPISODE_END:
        raise ConfigError(f"env_config key 'episode_end'={opts['episode_end']!r}: one of {EPISODE_END}")
    try:
        cfg = EconomyConfig.from_dict(values)
    except ConfigError as err:
        raise ConfigError(f"RBCMultiAgentEnv env_config: {err}") from None
    return cfg, opts


class RBCMultiAgentEnv(MultiAgentEnv):
    """One replica (n_envs=1) of the batched RBC economy as an RLlib MultiAgentEnv.

    env_config: `preset` ("open", "closed" or "paper"), any EconomyConfig field by name (n_consumers,
    n_firms, episode_length, p_export, ...), `seed` (int, seeds the economy's shock RNG on the first
    reset) and `episode_end` ("terminated" default, or "truncated"). Rewards are the spec's unscaled
    per-step rewards. infos["government"]["accounts"] holds the step's accounting record of the economy
    (Accounts.env(0): plain lists and floats); other agents get empty info dicts.
    reset(options={"theta_factor": x}) starts the episode with theta annealed to x (curriculum knob);
    other option keys are ignored.
    """

    def __init__(self, env_config: Mapping[str, Any] | None = None) -> None:
        self.cfg, opts = parse_env_config(env_config)
        self.seed = opts["seed"]
        self.truncate = opts["episode_end"] == "truncated"
        super().__init__()
        self.economy = Economy(self.cfg, n_envs=1, device="cpu", seed=self.seed)
        self.ids = agent_ids(self.cfg)
        self.possible_agents = [a for kind in AGENT_TYPES for a in self.ids[kind]]
        self.agents = list(self.possible_agents)
        nvec, width = action_nvec(self.cfg), obs_sizes(self.cfg)
        self.type_observation_spaces = {
            kind: gym.spaces.Box(-np.inf, np.inf, (width[kind],), np.float32) for kind in AGENT_TYPES}
        self.type_action_spaces = {kind: gym.spaces.MultiDiscrete(nvec[kind]) for kind in AGENT_TYPES}
        self.observation_spaces = {a: self.type_observation_spaces[policy_mapping_fn(a)]
                                   for a in self.possible_agents}
        self.action_spaces = {a: self.type_action_spaces[policy_mapping_fn(a)] for a in self.possible_agents}
        self._nvec = {kind: np.asarray(nvec[kind], dtype=np.int64) for kind in AGENT_TYPES}
        self._first_reset = True
        self._needs_reset = True

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Back to the initial state. `seed` (or env_config's seed, on the first reset) reseeds."""
        if seed is None and self._first_reset:
            seed = self.seed
        self._first_reset = False
        super().reset(seed=seed, options=options)
        theta_factor = float((options or {}).get("theta_factor", 1.0))
        obs = self.economy.reset(seed=seed, theta_factor=theta_factor)
        self.agents = list(self.possible_agents)
        self._needs_reset = False
        return self._obs_dict(obs), {a: {} for a in self.agents}

    def step(self, action_dict: Mapping[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """One step of the economy for every agent; every agent must act every step."""
        if self._needs_reset:
            raise RuntimeError("RBCMultiAgentEnv.step() called before reset() or after the episode "
                               "ended; call reset() first")
        result = self.economy.step(self._actions(action_dict), validate=True)
        rewards = self._reward_dict(result.rewards)
        done = bool(result.done[0])
        if done:
            self._needs_reset = True
        terminated, truncated = (done and not self.truncate), (done and self.truncate)
        terminateds = dict.fromkeys(self.agents, terminated)
        terminateds["__all__"] = terminated
        truncateds = dict.fromkeys(self.agents, truncated)
        truncateds["__all__"] = truncated
        infos = {a: {} for a in self.agents}
        infos["government"]["accounts"] = result.accounts.env(0)
        return self._obs_dict(result.obs), rewards, terminateds, truncateds, infos

    # ------------------------------------------------------------------ conversions
    def _obs_dict(self, obs) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for kind in AGENT_TYPES:
            rows = obs.full(kind)[0].numpy()
            if rows.dtype != np.float32:
                rows = rows.astype(np.float32)
            out.update(zip(self.ids[kind], rows))
        return out

    def _reward_dict(self, rewards) -> dict[str, float]:
        out = dict(zip(self.ids["consumer"], rewards.consumer[0].tolist()))
        out.update(zip(self.ids["firm"], rewards.firm[0].tolist()))
        out["government"] = float(rewards.government[0])
        return out

    def _actions(self, action_dict: Mapping[str, Any]) -> Actions:
        """Per-agent actions -> batched index tensors; errors name the agent."""
        if not isinstance(action_dict, Mapping):
            raise ActionError(f"action_dict must be a dict keyed by agent id, got {type(action_dict).__name__}")
        if len(action_dict) != len(self.possible_agents) or not all(a in action_dict for a in self.agents):
            missing = [a for a in self.possible_agents if a not in action_dict]
            extra = [a for a in action_dict if a not in self.action_spaces]
            if missing:
                raise ActionError(f"no action for agent(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}"
                                  f" ({len(missing)} missing): every agent acts every step")
            raise ActionError(f"unknown agent id(s) in action_dict: {extra[:5]}")
        batched = {kind: self._stack(kind, action_dict) for kind in AGENT_TYPES}
        return Actions(consumer=batched["consumer"][None], firm=batched["firm"][None],
                       government=batched["government"])

    def _stack(self, kind: str, action_dict: Mapping[str, Any]) -> torch.Tensor:
        ids = self.ids[kind]
        width = len(self._nvec[kind])
        try:
            arr = np.asarray([action_dict[a] for a in ids])
            ok = arr.shape == (len(ids), width) and arr.dtype.kind in "iu"
        except (ValueError, TypeError):
            ok = False
        if not ok:
            for a in ids:  # slow path: find and name the offending agent
                try:
                    one = np.asarray(action_dict[a])
                except (ValueError, TypeError):  # ragged nested lists
                    raise ActionError(f"{a}: action must be {width} integer indices (space {self.action_spaces[a]}),"
                                      f" got {action_dict[a]!r}") from None
                if one.shape != (width,):
                    raise ActionError(f"{a}: action must have shape ({width},) (space {self.action_spaces[a]}),"
                                      f" got shape {one.shape}")
                if one.dtype.kind not in "iu":
                    raise ActionError(f"{a}: action must be integer indices, got dtype {one.dtype}")
            raise ActionError(f"{kind} actions could not be stacked")  # pragma: no cover
        return torch.from_numpy(arr.astype(np.int64, copy=False))
