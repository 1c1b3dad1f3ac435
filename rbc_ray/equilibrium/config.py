"""The `br:` section: how a best response trains and how deviations are evaluated."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError, build, plain


@dataclass(frozen=True)
class BestResponseConfig:
    """Best-response training and evaluation (`--set br.KEY=VALUE`)."""

    episodes: int = 1500
    """training episodes of one best response (the budget)"""
    episodes_per_iteration: int = 10
    """episodes per PPO iteration (each one update of the deviating type)"""
    n_envs: int = 0
    """economy replicas per training episode (0: the profile's train.n_envs)"""
    algorithm: str = "ppo"
    """'ppo' (the profile's PPO settings) or 'pg' (one full-batch epoch: the plain policy gradient)"""
    lr: float = 1e-3
    """Adam learning rate of the deviating type (a fresh optimiser)"""
    entropy_start: float = 0.05
    """entropy coefficient at the start of the best response"""
    entropy_decay: float = 500.0
    """e-folding episodes of the entropy coefficient"""
    entropy_floor: float = 0.1
    """the coefficient never falls below entropy_start * entropy_floor"""
    eval_every: int = 250
    """evaluate the deviation on the selection seeds every this many episodes (and at the end)"""
    eval_envs: int = 64
    """economy replicas per evaluation episode (each replica is one independent unit)"""
    eval_episodes: int = 2
    """evaluation episodes per evaluation (so units = eval_envs x eval_episodes)"""
    selection_seed: int = 1_000_000
    """seed of the evaluation episodes that choose the best deviation"""
    confirmation_seed: int = 2_000_000
    """seed of the separate evaluation episodes that report its gain"""
    device: str = "cpu"
    """where a best response trains and is evaluated: 'cpu' or 'cuda' (whatever device trained the profile)"""

    def __post_init__(self) -> None:
        for key in ("episodes", "episodes_per_iteration", "eval_every", "eval_envs", "eval_episodes"):
            if getattr(self, key) < 1:
                raise ConfigError(f"br.{key}={getattr(self, key)!r}: must be positive")
        if self.n_envs < 0:
            raise ConfigError(f"br.n_envs={self.n_envs!r}: must be >= 0 (0: the profile's)")
        if self.algorithm not in ("ppo", "pg"):
            raise ConfigError(f"br.algorithm={self.algorithm!r}: 'ppo' or 'pg'")
        if not self.lr > 0:
            raise ConfigError(f"br.lr={self.lr!r}: must be positive")
        if self.entropy_start < 0 or self.entropy_decay <= 0 or not 0 <= self.entropy_floor <= 1:
            raise ConfigError("br.entropy_start >= 0, br.entropy_decay > 0 and br.entropy_floor in [0, 1]")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"br.device={self.device!r}: 'cpu' or 'cuda'")
        if self.selection_seed == self.confirmation_seed:
            raise ConfigError("br.selection_seed and br.confirmation_seed must differ (separate evaluations)")

    @classmethod
    def from_dict(cls, values) -> "BestResponseConfig":
        return build(cls, values or {}, "br")

    def to_dict(self) -> dict:
        return plain(self)
