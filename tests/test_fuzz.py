"""Fuzzing with hypothesis: whatever a user writes in an experiment YAML, a `br:` section or an SRL
calibration, and whatever actions a user sends the RLlib and PettingZoo envs, the only outcomes are
a valid result or the documented error (ConfigError, ActionError): never a crash from deeper down,
and never a "valid" config holding NaN or inf."""

import dataclasses
import math
import typing

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rbc_ray.config import ConfigError
from rbc_ray.economy import CONFIG_KEYS, ActionError, EconomyConfig
from rbc_ray.envs import RBCMultiAgentEnv
from rbc_ray.envs.pettingzoo import RBCParallelEnv
from rbc_ray.equilibrium.config import BestResponseConfig
from rbc_ray.structural.config import CALIBRATION_TYPES, MODELS, calibration
from rbc_ray.train.config import AgentConfig, TrainConfig, load_experiment
from rbc_ray.train.curriculum import CurriculumConfig

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

anything = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                    max_size=3), max_leaves=5)
words = st.sampled_from(["", "cpu", "cuda", "cuda:1", "mps", "float32", "float64", "float16", "gae", "rtg", "ppo",
                         "pg", "consumer", "firm", "total", "fused", "torch", "auto", "open", "closed", "paper",
                         "1e-4", "nan", ".inf", "x"])


def typed(hint):
    """Values of a field's type, edge cases included (0, negatives, huge ints, NaN, inf, empty lists)."""
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(-3, 300) | st.integers() | st.floats(-5, 5)
    if hint is float:
        return (st.integers(-3, 3) | st.integers() | st.floats(-1e3, 1e3) | st.floats() | words
                | st.sampled_from([math.nan, math.inf, -math.inf, 10**400, 0.0, -1.0]))
    if hint is str:
        return words
    if typing.get_origin(hint) is tuple:
        return st.lists(typed(typing.get_args(hint)[0]), max_size=4)
    return anything


def section(cls, names=None):
    """A mapping of some of `cls`'s fields, mostly of the right type, sometimes anything at all."""
    hints = typing.get_type_hints(cls)
    names = sorted(names or hints)
    return st.lists(st.sampled_from(names) | st.text(max_size=4), max_size=5, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({k: typed(hints.get(k)) | typed(hints.get(k)) | anything for k in keys}))


def floats_in(x):
    if dataclasses.is_dataclass(x):
        x = dataclasses.asdict(x)
    if isinstance(x, dict):
        return [f for v in x.values() for f in floats_in(v)]
    if isinstance(x, (list, tuple)):
        return [f for v in x for f in floats_in(v)]
    return [x] if isinstance(x, float) else []


def valid_or_config_error(build, *args):
    try:
        result = build(*args)
    except ConfigError:
        return
    assert all(math.isfinite(v) for v in floats_in(result)), result


experiments = st.fixed_dictionaries({}, optional={
    "name": words | anything,
    "economy": section(EconomyConfig, CONFIG_KEYS) | st.fixed_dictionaries({"preset": words}) | anything,
    "train": section(TrainConfig) | anything,
    "curriculum": section(CurriculumConfig),
    "policies": st.fixed_dictionaries({}, optional={k: section(AgentConfig) for k in ("consumer", "firm", "government",
                                                                                       "bank")}) | anything,
    "tune": st.none() | anything}) | st.dictionaries(st.text(max_size=5), anything, max_size=3)


@FUZZ
@given(experiments)
def test_experiment_loader_gives_a_config_or_a_config_error(raw):
    valid_or_config_error(load_experiment, raw)


@FUZZ
@given(section(BestResponseConfig) | anything)
def test_br_section_gives_a_config_or_a_config_error(raw):
    valid_or_config_error(BestResponseConfig.from_dict, raw)


@FUZZ
@given(st.sampled_from(MODELS).flatmap(lambda m: st.tuples(st.just(m), section(CALIBRATION_TYPES[m]))))
def test_srl_calibration_gives_a_config_or_a_config_error(model_and_values):
    model, values = model_and_values
    valid_or_config_error(lambda: calibration(model, values, smoke=True))


ENV_CONFIG = {"preset": "open", "n_consumers": 2, "n_firms": 2, "seed": 0, "episode_length": 10_000}
_ENVS = {}


def envs():
    if not _ENVS:
        _ENVS["rllib"], _ENVS["pettingzoo"] = RBCMultiAgentEnv(ENV_CONFIG), RBCParallelEnv(ENV_CONFIG)
        for env in _ENVS.values():
            env.reset(seed=0)
    return _ENVS


def agent_action(nvec):
    valid = st.lists(st.integers(0, 12), min_size=len(nvec), max_size=len(nvec)).map(
        lambda v: np.minimum(np.array(v), np.array(nvec) - 1))
    near = st.lists(st.integers(-2, 13), min_size=len(nvec), max_size=len(nvec)).map(np.array)
    dtypes = st.sampled_from([np.int64, np.int32, np.uint8, np.int8, np.float32, np.float64, bool, object])
    weird = (st.none() | st.integers(-5, 20) | st.floats() | st.text(max_size=3)
             | st.lists(st.integers(-2, 12), max_size=6).map(np.array)
             | st.tuples(near, dtypes).map(lambda t: t[0].astype(t[1]))
             | st.lists(st.lists(st.integers(0, 3), max_size=3), max_size=3)
             | st.just(np.zeros((1, len(nvec)), np.int64)))
    return st.one_of(valid, valid, valid, near, weird)


def action_dicts():
    spaces = RBCMultiAgentEnv(ENV_CONFIG).action_spaces
    ids = list(spaces)
    return st.tuples(st.fixed_dictionaries({a: agent_action(list(spaces[a].nvec)) for a in ids}),
                     st.lists(st.sampled_from(ids), max_size=2, unique=True),
                     st.lists(st.sampled_from(["bank_0", "firm_9", 3, None]), max_size=1))


@FUZZ
@given(action_dicts())
def test_env_actions_step_or_raise_action_error(actions_drop_extra):
    actions, drop, extra = actions_drop_extra
    actions = {k: v for k, v in actions.items() if k not in drop}
    actions.update({k: np.zeros(2, np.int64) for k in extra})
    for name, env in envs().items():
        if name == "pettingzoo" and not env.agents:
            env.reset(seed=0)
        try:
            obs, rewards, *_ = env.step(actions)
        except ActionError:
            continue
        assert set(rewards) == set(env.possible_agents), name
        assert all(math.isfinite(r) for r in rewards.values()), name
