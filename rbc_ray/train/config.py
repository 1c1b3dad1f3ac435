"""Experiment config: frozen, typed, validated; loaded from YAML plus `key=value` overrides.

YAML layout (tune_configs/*.yaml):

    name: open_rbc
    economy: {n_consumers: 100, n_firms: 10, ...}   # EconomyConfig fields (or `preset`)
    train: {n_envs: 128, total_episodes: 150000, episodes_per_iteration: 10, ...}
    policies: {consumer: {lr: 1e-3, ...}, firm: {...}, government: {...}}
    curriculum: {compress: 1, firm_start: 30000, ...}
    tune: {...}                                       # returned untouched for the Ray layer

Overrides use dotted paths and YAML scalars: `train.n_envs=8`, `policies.firm.lr=1e-4`,
`train.frozen=[firm]`. Unknown keys and bad values raise ConfigError (a ValueError) naming the
full dotted key.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .. import config as engine
from ..config import ConfigError, build, plain, read_yaml, unknown_key
from ..economy import AGENT_TYPES, CONFIG_KEYS, EconomyConfig
from .curriculum import CurriculumConfig

TOP_LEVEL_KEYS = ("name", "economy", "train", "policies", "curriculum", "tune")


@dataclass(frozen=True)
class TrainConfig:
    """How to run: batch size, length, device, seed, threads."""

    n_envs: int = 128
    """parallel economy replicas per episode"""
    total_episodes: int = 150_000
    """episodes of a full run (the trainer itself runs iteration by iteration)"""
    episodes_per_iteration: int = 10
    """episodes (each one PPO update per trainable type) per train_iteration()"""
    device: str = "cpu"
    """'cpu' or 'cuda' (or 'cuda:N')"""
    seed: int = 0
    """seeds network init, action sampling and the economy"""
    torch_threads: int = 2
    """torch.set_num_threads on CPU (never more than the cores you own)"""
    dtype: str = "float32"
    """dtype of the networks ('float32' or 'float64')"""
    frozen: tuple[str, ...] = ()
    """agent types that act (sampled from their current policy) but never update"""
    profile: bool = False
    """add time_policy_s / time_env_s / policy_time_share to the metrics (syncs on GPU)"""
    reuse_rollout_forward: bool = True
    """a training type's first PPO epoch (full batch) backpropagates through the rollout's own forward
    pass instead of recomputing it: same parameters, same inputs, one forward pass less per update"""
    chunk_mb: float = 2048.0
    """memory budget (MB, estimated) of one policy pass: the rollout's forward and each PPO
    (mini)batch run in pieces of (step, env) rows, or of one row's agents, that fit it, gradients
    accumulated over the pieces (the same update to float rounding). Paper scale at 128 envs fits in
    one piece; 0: never split"""
    compile: bool = False
    """torch.compile the PPO loss (joint log-prob, entropy, clipped objective) of each type"""
    eval_seed: int = 10_000
    """seed of Trainer.evaluate (the same episodes for every policy compared)"""
    snapshot_every: int = 0
    """keep a policy-only snapshot every this many episodes, and at the end (0: only at the end of
    `rbc-ray train` runs); they are never rotated away, so mid-training profiles can be analysed"""


@dataclass(frozen=True)
class AgentConfig:
    """Network and PPO settings of one agent type."""

    hidden: tuple[int, ...] = (128, 128)
    """ReLU trunk widths"""
    lr: float = 1e-3
    """Adam learning rate"""
    reward_scale: float = 1.0
    """rewards are divided by this before returns and value targets"""
    clip: float = 0.1
    """PPO ratio clip"""
    value_clip: float = 1.0
    """value change clip around the rollout value (scaled units); 0 disables"""
    value_coef: float = 1.0
    """weight of the (smooth-L1) value loss"""
    max_grad_norm: float = 2.0
    """gradient-norm clip"""
    epochs: int = 2
    """PPO epochs per update"""
    minibatches: int = 1
    """minibatches per epoch (1 = full batch, the reference); split over (step, env) rows"""
    gamma: float = 0.99
    """discount factor"""
    returns: str = "rtg"
    """'rtg' (returns-to-go, advantage G - V) or 'gae'"""
    discount_once: bool = False
    """reference quirk: G_t = r_t + gamma * sum_{k>t} r_k (rtg only)"""
    gae_lambda: float = 0.95
    """GAE lambda (returns='gae' only)"""


def _agent(**kw: Any) -> Any:
    return field(default_factory=lambda: AgentConfig(**kw))


@dataclass(frozen=True)
class PoliciesConfig:
    """Per-type settings; defaults are the reference's (lr, reward scales)."""

    consumer: AgentConfig = _agent(reward_scale=5.0)
    """consumer policy"""
    firm: AgentConfig = _agent(reward_scale=30000.0)
    """firm policy"""
    government: AgentConfig = _agent(lr=5e-5, reward_scale=1000.0)
    """government policy"""


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a training run."""

    name: str = "experiment"
    """run name"""
    economy: dict = field(default_factory=dict)
    """EconomyConfig fields (normalised to the full field set)"""
    train: TrainConfig = field(default_factory=TrainConfig)
    """run settings"""
    policies: PoliciesConfig = field(default_factory=PoliciesConfig)
    """per-type network and PPO settings"""
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    """schedules (training starts, entropy, masks, theta)"""

    def __post_init__(self) -> None:
        object.__setattr__(self, "economy", _economy(self.economy).to_dict())
        validate(self)

    @property
    def economy_config(self) -> EconomyConfig:
        return EconomyConfig.from_dict(self.economy)

    def agent(self, kind: str) -> AgentConfig:
        return getattr(self.policies, kind)

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (lists, no tuples) that from_dict turns back into an equal config."""
        return plain(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ExperimentConfig":
        values = dict(values)
        values.pop("tune", None)
        return build(cls, values)


def load_experiment(source: str | Path | Mapping[str, Any],
                    overrides: typing.Sequence[str] = ()) -> tuple[ExperimentConfig, dict]:
    """YAML path (or mapping) + `dotted.key=value` overrides -> (config, the YAML's `tune:` dict)."""
    raw = plain(source) if isinstance(source, Mapping) else read_yaml(source)
    for item in overrides:
        apply_override(raw, item)
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(unknown_key(str(key), str(key), TOP_LEVEL_KEYS, "top-level keys"))
    tune = raw.pop("tune", None) or {}
    if not isinstance(tune, dict):
        raise ConfigError("tune must be a mapping")
    return ExperimentConfig.from_dict(raw), tune


def apply_override(raw: dict, item: str) -> None:
    """Set `a.b.c=value` (value parsed as YAML) in an experiment mapping, in place."""
    engine.apply_override(raw, item, TOP_LEVEL_KEYS)


# ---------------------------------------------------------------------- building and validation
def _economy(values: Any) -> EconomyConfig:
    if isinstance(values, EconomyConfig):
        return values
    if not isinstance(values, Mapping):
        raise ConfigError(f"economy must be a mapping of EconomyConfig fields, got {values!r}")
    for key in values:
        if key not in CONFIG_KEYS and key != "preset":
            raise ConfigError(unknown_key(f"economy.{key}", str(key), CONFIG_KEYS, "EconomyConfig fields"))
    try:
        return EconomyConfig.from_dict(values)
    except ConfigError as err:
        raise ConfigError(f"economy.{err}") from None


def validate(cfg: ExperimentConfig) -> None:
    """Range checks; the message names the dotted key."""

    def need(ok: bool, key: str, value: Any, why: str) -> None:
        if not ok:
            raise ConfigError(f"{key}={value!r}: {why}")

    t = cfg.train
    for name in ("n_envs", "total_episodes", "episodes_per_iteration", "torch_threads"):
        need(getattr(t, name) > 0, f"train.{name}", getattr(t, name), "must be positive")
    need(t.snapshot_every >= 0, "train.snapshot_every", t.snapshot_every, "must be >= 0")
    need(math.isfinite(t.chunk_mb) and t.chunk_mb >= 0, "train.chunk_mb", t.chunk_mb, "must be >= 0 (0: never split)")
    need(t.device == "cpu" or t.device.startswith("cuda"), "train.device", t.device, "'cpu' or 'cuda[:N]'")
    need(t.dtype in ("float32", "float64"), "train.dtype", t.dtype, "'float32' or 'float64'")
    for kind in t.frozen:
        need(kind in AGENT_TYPES, "train.frozen", t.frozen, f"entries must be in {AGENT_TYPES}")
    for kind in AGENT_TYPES:
        a, p = cfg.agent(kind), f"policies.{kind}"
        need(len(a.hidden) > 0 and all(h > 0 for h in a.hidden), f"{p}.hidden", a.hidden,
             "one or more positive widths")
        for name in ("lr", "reward_scale", "clip", "max_grad_norm"):
            v = getattr(a, name)
            need(math.isfinite(v) and v > 0, f"{p}.{name}", v, "must be positive")
        for name in ("value_clip", "value_coef"):
            v = getattr(a, name)
            need(math.isfinite(v) and v >= 0, f"{p}.{name}", v, "must be >= 0")
        need(a.epochs > 0, f"{p}.epochs", a.epochs, "must be positive")
        need(0 < a.minibatches <= t.n_envs, f"{p}.minibatches", a.minibatches,
             "must lie in 1..train.n_envs")
        need(0.0 <= a.gamma <= 1.0, f"{p}.gamma", a.gamma, "must lie in [0, 1]")
        need(0.0 <= a.gae_lambda <= 1.0, f"{p}.gae_lambda", a.gae_lambda, "must lie in [0, 1]")
        need(a.returns in ("rtg", "gae"), f"{p}.returns", a.returns, "'rtg' or 'gae'")
    cfg.curriculum.validate()
    if len(never_training(cfg)) == len(AGENT_TYPES):
        raise ConfigError(f"no agent type would ever train: {'; '.join(never_training(cfg))}")


def last_episode(cfg: ExperimentConfig) -> int:
    """The last episode a full run plays (whole iterations: total_episodes rounded up)."""
    t = cfg.train
    return math.ceil(t.total_episodes / t.episodes_per_iteration) * t.episodes_per_iteration - 1


def never_training(cfg: ExperimentConfig, frozen: bool = True) -> list[str]:
    """One line per agent type that acts but never updates in a full run: starting after the run's last
    episode (curriculum.<type>_start / compress), or (with `frozen`) listed in train.frozen."""
    c, out = cfg.curriculum, []
    for kind in AGENT_TYPES:
        start = getattr(c, f"{kind}_start") / c.compress
        if kind in cfg.train.frozen:
            if frozen:
                out.append(f"{kind} is in train.frozen")
        elif start > last_episode(cfg):
            out.append(f"{kind} starts at episode {start:g} (curriculum.{kind}_start={getattr(c, f'{kind}_start'):g}"
                       f" / curriculum.compress={c.compress:g}), after the run's last episode {last_episode(cfg)} "
                       f"(train.total_episodes={cfg.train.total_episodes})")
    return out
