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

import dataclasses
import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..economy import AGENT_TYPES, CONFIG_KEYS, ConfigError, EconomyConfig
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
    eval_seed: int = 10_000
    """seed of Trainer.evaluate (the same episodes for every policy compared)"""


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
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ExperimentConfig":
        values = dict(values)
        values.pop("tune", None)
        return _build(cls, values, "")


def load_experiment(source: str | Path | Mapping[str, Any],
                    overrides: typing.Sequence[str] = ()) -> tuple[ExperimentConfig, dict]:
    """YAML path (or mapping) + `dotted.key=value` overrides -> (config, the YAML's `tune:` dict)."""
    if isinstance(source, Mapping):
        raw = _deep_copy(source)
    else:
        with open(source) as fh:
            raw = yaml.safe_load(fh) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: the YAML must be a mapping of {TOP_LEVEL_KEYS}")
    for item in overrides:
        apply_override(raw, item)
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"unknown key {key!r}; top-level keys are {TOP_LEVEL_KEYS}")
    tune = raw.pop("tune", None) or {}
    if not isinstance(tune, dict):
        raise ConfigError("tune must be a mapping")
    return ExperimentConfig.from_dict(raw), tune


def apply_override(raw: dict, item: str) -> None:
    """Set `a.b.c=value` (value parsed as a YAML scalar) in a nested dict, in place."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value (e.g. train.n_envs=8)")
    key, text = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"override {item!r}: bad key {key!r}")
    if parts[0] not in TOP_LEVEL_KEYS:
        raise ConfigError(f"unknown key {key!r}; top-level keys are {TOP_LEVEL_KEYS}")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"unknown key {key!r}: {'.'.join(parts[:depth + 1])} is not a section")
        node = nxt
    node[parts[-1]] = yaml.safe_load(text) if text.strip() else None


# ---------------------------------------------------------------------- building and validation
def _economy(values: Any) -> EconomyConfig:
    if isinstance(values, EconomyConfig):
        return values
    if not isinstance(values, Mapping):
        raise ConfigError(f"economy must be a mapping of EconomyConfig fields, got {values!r}")
    for key in values:
        if key not in CONFIG_KEYS and key != "preset":
            raise ConfigError(f"unknown key 'economy.{key}'; EconomyConfig fields: {sorted(CONFIG_KEYS)}")
    try:
        return EconomyConfig.from_dict(values)
    except ConfigError as err:
        raise ConfigError(f"economy.{err}") from None


def _build(cls: type, values: Any, prefix: str, base: Any = None) -> Any:
    """Dataclass `cls` from a mapping, checking every key and type; errors name the dotted key."""
    where = prefix or "config"
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    base = cls() if base is None else base  # nested defaults come from the parent (per-type lr...)
    known = {f.name for f in fields(cls)}
    changes = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in known:
            raise ConfigError(f"unknown key {key!r}; known keys of {where}: {sorted(known)}")
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            changes[name] = _build(hint, value, key, getattr(base, name))
        else:
            changes[name] = _coerce(key, hint, value)
    return dataclasses.replace(base, **changes)


def _coerce(key: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an int, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    if hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(_coerce(key, item, v) for v in value)
    raise ConfigError(f"{key}: unsupported config type {hint!r}")  # pragma: no cover


def validate(cfg: ExperimentConfig) -> None:
    """Range checks; the message names the dotted key."""

    def need(ok: bool, key: str, value: Any, why: str) -> None:
        if not ok:
            raise ConfigError(f"{key}={value!r}: {why}")

    t = cfg.train
    for name in ("n_envs", "total_episodes", "episodes_per_iteration", "torch_threads"):
        need(getattr(t, name) > 0, f"train.{name}", getattr(t, name), "must be positive")
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


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _deep_copy(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _deep_copy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deep_copy(v) for v in x]
    return x
