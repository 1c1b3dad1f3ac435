"""Bad input fails early with one clear error naming the key or the agent; presets and calibration.

Errors: ConfigError (a ValueError) names the config key; ActionError (a ValueError) names the agent
('consumer_3', 'firm_1', 'government'), the env and the action head. Never a bare torch RuntimeError
or IndexError from deep inside the step.
"""

from __future__ import annotations

import math

import pytest
import torch

from rbc_ray.economy import (PRESETS, ActionError, Actions, ConfigError, Economy, EconomyConfig,
                             Params, closed_economy, initial_state, obs_sizes, observe, open_economy,
                             paper_economy, preset_config)


def raises_clear(exc_type, match: str, fn, *args, **kwargs) -> None:
    """fn(*args, **kwargs) raises exc_type matching `match`, and it is no torch Runtime/IndexError."""
    with pytest.raises(exc_type, match=match) as info:
        fn(*args, **kwargs)
    assert not isinstance(info.value, (RuntimeError, IndexError, KeyError, AttributeError))


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("key,value,match", [
    ("n_consumers", -1, r"n_consumers.*positive"),
    ("n_consumers", 0, r"n_consumers.*positive"),
    ("n_firms", 0, r"n_firms.*positive"),
    ("n_firms", -3, r"n_firms.*positive"),
    ("episode_length", 0, r"episode_length.*positive"),
    ("n_digits", 0, r"n_digits.*positive"),
    ("n_firms", 2.5, r"n_firms.*int"),
    ("n_consumers", "10", r"n_consumers.*int"),
    ("episode_length", True, r"episode_length.*int"),
    ("open_economy", "yes", r"open_economy.*bool"),
    ("eta", None, r"eta.*number"),
    ("eta", 1.0, r"eta"),
    ("price_grid", [], r"price_grid.*non-empty"),
    ("demand_grid", (), r"demand_grid.*non-empty"),
    ("tax_grid", [], r"tax_grid.*non-empty"),
    ("price_grid", "abc", r"price_grid.*list"),
    ("price_grid", [0, "a"], r"price_grid.*list"),
    ("price_grid", 5, r"price_grid"),
    ("hours_grid", [0, -260], r"hours_grid.*>= 0"),
    ("tax_grid", [0, 1.5], r"tax_grid.*\[0, 1\]"),
    ("alpha_set", [0.2, 1.0], r"alpha_set"),
    ("labour_disutility", "cubic", r"labour_disutility"),
    ("investment_base", "assets", r"investment_base"),
    ("welfare", "utilitarian", r"welfare"),
    ("dtype", "float16", r"dtype"),
    ("interest_rate", -1.0, r"interest_rate"),
    ("depreciation", 1.5, r"depreciation"),
    ("tfp_sigma", -0.1, r"tfp_sigma"),
    ("tfp_rho", 1.0, r"tfp_rho"),
    ("productivity", float("nan"), r"productivity"),
    ("q_export", float("inf"), r"q_export"),
])
def test_bad_config_value_names_the_key(key, value, match) -> None:
    raises_clear(ConfigError, match, EconomyConfig.from_dict, {key: value})
    raises_clear(ConfigError, match, EconomyConfig().replace, **{key: value})
    if key != "open_economy":  # (see test_preset_function_overrides_its_own_switch)
        raises_clear(ConfigError, match, closed_economy, **{key: value})


@pytest.mark.parametrize("make,override", [
    (closed_economy, {"open_economy": True}), (open_economy, {"open_economy": False}),
    (paper_economy, {"export_strict": False}),
    (lambda **kw: preset_config("paper", **kw), {"labour_disutility": "linear"})])
def test_preset_function_overrides_its_own_switch(make, override) -> None:
    cfg = make(**override)
    key, value = next(iter(override.items()))
    assert getattr(cfg, key) == value


def test_unknown_key_is_named() -> None:
    raises_clear(ConfigError, r"unknown key 'n_agentz'.*EconomyConfig fields", EconomyConfig.from_dict,
                 {"n_agentz": 3})
    raises_clear(ConfigError, r"'firms'", EconomyConfig.from_dict, {"preset": "open", "firms": 3})


def test_bad_preset() -> None:
    raises_clear(ConfigError, r"preset='galactic'.*closed.*open.*paper", preset_config, "galactic")
    raises_clear(ConfigError, r"preset='galactic'", EconomyConfig.from_dict, {"preset": "galactic"})


def test_unhashable_preset_is_a_config_error() -> None:
    raises_clear(ConfigError, r"preset", EconomyConfig.from_dict, {"preset": ["open"]})


@pytest.mark.parametrize("key,value", [("eta", "x"), ("theta_max", None), ("price_grid", (0.0, "a"))])
def test_direct_constructor_wrong_type_is_config_error(key, value) -> None:
    """EconomyConfig(...) itself (not only from_dict/replace) must reject wrong types by key."""
    raises_clear(ConfigError, key, EconomyConfig, **{key: value})


def test_direct_constructor_rejects_non_bool_switch() -> None:
    raises_clear(ConfigError, r"open_economy", EconomyConfig, open_economy="yes")


def test_bad_economy_arguments() -> None:
    cfg = EconomyConfig(n_consumers=3, n_firms=2)
    raises_clear(ValueError, r"n_envs=0", Economy, cfg, n_envs=0)
    raises_clear(ValueError, r"n_envs=-2", Economy, cfg, n_envs=-2)
    raises_clear(ValueError, r"seed=1.5", Economy(cfg).reset, seed=1.5)
    params = Params.build(cfg)
    raises_clear(ValueError, r"theta_factor", initial_state, params, 2, theta_factor=1.5)


# ---------------------------------------------------------------- actions
@pytest.fixture
def econ() -> Economy:
    return Economy(EconomyConfig(n_consumers=5, n_firms=3), n_envs=2, seed=0)


def _with(actions: Actions, kind: str, index: tuple, value: int) -> Actions:
    """The actions as int64 (random_actions gives uint8, which cannot hold a negative index) with one
    index replaced."""
    tensors = {"consumer": actions.consumer.long(), "firm": actions.firm.long(),
               "government": actions.government.long()}
    tensors[kind][index] = value
    return Actions(**tensors)


@pytest.mark.parametrize("kind,index,value,match", [
    ("consumer", (1, 3, 3), 5, r"consumer_3 in env 1: action head 'hours' got 5, allowed 0..4"),
    ("consumer", (0, 3, 4), 3, r"consumer_3 in env 0: action head 'employer' got 3, allowed 0..2"),
    ("consumer", (0, 2, 1), -1, r"consumer_2 in env 0: action head 'demand_firm_1' got -1"),
    ("consumer", (1, 4, 0), 11, r"consumer_4 in env 1: action head 'demand_firm_0' got 11"),
    ("firm", (1, 1, 0), 6, r"firm_1 in env 1: action head 'price' got 6, allowed 0..5"),
    ("firm", (0, 2, 1), 5, r"firm_2 in env 0: action head 'wage' got 5"),
    ("firm", (0, 0, 1), -7, r"firm_0 in env 0: action head 'wage' got -7"),
    ("government", (1, 1), 6, r"government in env 1: action head 'corporate_tax' got 6"),
    ("government", (0, 0), -1, r"government in env 0: action head 'income_tax' got -1"),
])
def test_out_of_range_action_names_agent_and_head(econ, kind, index, value, match) -> None:
    bad = _with(econ.random_actions(), kind, index, value)
    before = econ.state.clone()
    raises_clear(ActionError, match, econ.step, bad)
    # a rejected step changes nothing
    assert all(torch.equal(getattr(before, k), getattr(econ.state, k)) for k in vars(before))


@pytest.mark.parametrize("kind,change,match", [
    ("consumer", lambda a: a[:, :4], r"consumer actions must have shape \(2, 5, 5\), got \(2, 4, 5\)"),
    ("consumer", lambda a: a[..., :4], r"consumer actions must have shape"),
    ("firm", lambda a: a[:1], r"firm actions must have shape \(2, 3, 2\)"),
    ("government", lambda a: a[:, 0], r"government actions must have shape \(2, 2\)"),
    ("consumer", lambda a: a.float(), r"consumer actions must be integer.*float32"),
    ("firm", lambda a: a.double(), r"firm actions must be integer"),
    ("government", lambda a: a.bool(), r"government actions must be integer.*bool"),
    ("firm", lambda a: a.numpy(), r"firm actions must be a torch tensor, got ndarray"),
    ("government", lambda a: a.tolist(), r"government actions must be a torch tensor, got list"),
])
def test_wrong_shape_or_dtype_names_agent_type(econ, kind, change, match) -> None:
    a = econ.random_actions()
    tensors = {"consumer": a.consumer, "firm": a.firm, "government": a.government}
    tensors[kind] = change(tensors[kind])
    raises_clear(ActionError, match, econ.step, Actions(**tensors))


def test_valid_random_actions_pass(econ) -> None:
    """The validator accepts what the model's own sampler produces (so the rejections above mean it)."""
    for _ in range(5):
        econ.step(econ.random_actions())
    assert float(econ.state.t[0]) == 5.0


# ---------------------------------------------------------------- presets and calibration
def _diff(a: EconomyConfig, b: EconomyConfig) -> dict:
    da, db = a.to_dict(), b.to_dict()
    return {k: (da[k], db[k]) for k in da if da[k] != db[k]}


def test_presets_differ_exactly_in_documented_switches() -> None:
    default = EconomyConfig()
    assert _diff(open_economy(), default) == {}  # the default is the code's open economy
    assert _diff(closed_economy(), open_economy()) == {"open_economy": (False, True)}
    assert _diff(paper_economy(), open_economy()) == {
        "labour_disutility": ("quadratic", "linear"),
        "alpha_set": ([0.2, 0.4, 0.6, 0.8], [0.2, 0.3, 0.4, 0.6, 0.8]),
        "investment_base": ("budget", "income"),
        "export_strict": (True, False),
    }
    assert sorted(PRESETS) == ["closed", "open", "paper"]
    for name in PRESETS:
        assert preset_config(name) == PRESETS[name]()
        assert EconomyConfig.from_dict({"preset": name}) == PRESETS[name]()
    # overrides go on top of a preset
    assert EconomyConfig.from_dict({"preset": "closed", "n_firms": 4}).n_firms == 4
    assert not EconomyConfig.from_dict({"preset": "closed", "n_firms": 4}).open_economy


def test_spec_defaults() -> None:
    """Defaults section of the spec: 100 / 10, r = 0, price 1000, wage 0, 'total', 500 / 100."""
    c = EconomyConfig()
    assert (c.n_consumers, c.n_firms, c.episode_length) == (100, 10, 10)
    assert (c.interest_rate, c.price0, c.wage0, c.welfare) == (0.0, 1000.0, 0.0, "total")
    assert (c.p_export, c.q_export, c.open_economy) == (500.0, 100.0, True)
    assert list(c.demand_grid) == list(range(11))
    assert list(c.hours_grid) == [0, 260, 520, 780, 1040]
    assert list(c.price_grid) == [0, 500, 1000, 1500, 2000, 2500]
    assert list(c.wage_grid) == [0, 11, 22, 33, 44]
    assert [round(x, 12) for x in c.tax_grid] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert (c.eta, c.productivity, c.investment_fraction, c.consumer_budget0) == (0.1, 0.01, 0.1, 2000.0)
    assert c.firm_budget0 == 22000.0 * 100


@pytest.mark.parametrize("n,f", [(100, 10), (7, 3), (1, 1), (13, 11)])
def test_theta_alpha_capital_assignment(n: int, f: int) -> None:
    cfg = EconomyConfig(n_consumers=n, n_firms=f, dtype="float64")
    params = Params.build(cfg)
    theta = [0.01 * (1 - j / n) ** 0.25 for j in range(n)]
    alpha = [[0.2, 0.3, 0.4, 0.6, 0.8][i % 5] for i in range(f)]
    capital = [5000.0 if i < f // 2 else 10000.0 for i in range(f)]
    assert params.theta.tolist() == pytest.approx(theta, rel=1e-12)
    assert params.alpha.tolist() == pytest.approx(alpha, rel=1e-12)
    assert params.capital0.tolist() == capital
    state = initial_state(params, 2)
    assert state.capital.tolist() == [capital, capital]
    assert state.firm_budget.tolist() == [[22000.0 * n] * f] * 2
    assert state.consumer_budget.tolist() == [[2000.0] * n] * 2
    assert state.price.tolist() == [[1000.0] * f] * 2 and state.wage.tolist() == [[0.0] * f] * 2
    assert state.stock.tolist() == [[0.0] * f] * 2


def test_theta_spans_spec_range() -> None:
    """theta from 0.01 down to ~0.0032 for N = 100 (0.01 x 0.01^(1/4))."""
    theta = Params.build(EconomyConfig(dtype="float64")).theta
    assert math.isclose(theta[0].item(), 0.01)
    assert math.isclose(theta[-1].item(), 0.01 * 0.01 ** 0.25, rel_tol=1e-12)
    assert math.isclose(theta[-1].item(), 0.00316, rel_tol=1e-3)
    assert bool((theta[1:] < theta[:-1]).all())


def test_paper_alpha_set() -> None:
    params = Params.build(paper_economy(n_firms=6, n_consumers=4, dtype="float64"))
    assert params.alpha.tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.2, 0.4])


# with digits: global = 3F + 10F + 3 = 133; consumer + 10 budget digits + theta = 144;
# firm + 10 budget digits + capital + alpha + one-hot(10) = 155. Without: global = 4F + 3 = 43.
@pytest.mark.parametrize("digit_encoding,widths", [
    (True, {"consumer": 144, "firm": 155, "government": 133}),
    (False, {"consumer": 43 + 2, "firm": 43 + 1 + 2 + 10, "government": 43}),
])
def test_observation_widths_for_10_firms(digit_encoding: bool, widths: dict) -> None:
    cfg = EconomyConfig(digit_encoding=digit_encoding)
    params = Params.build(cfg)
    sizes = obs_sizes(cfg)
    obs = observe(params, initial_state(params, 3))
    for kind, width in widths.items():
        assert sizes[kind] == width
        n_agents = {"consumer": 100, "firm": 10, "government": 1}[kind]
        assert tuple(obs.full(kind).shape) == (3, n_agents, width)
