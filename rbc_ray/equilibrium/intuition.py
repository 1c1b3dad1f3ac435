"""Economic intuition report: how each type's policy responds to what it observes.

A probe varies one observed quantity across its range, holding everything else at states of a real
episode, and records the policy's expected action (choice probabilities x grid values), averaged over
the episode's states and the agents concerned. The quantity is changed in the `State` and the
observation rebuilt by `rbc_ray.economy.observe`, so scaling and the digit encoding of stocks are the
model's own. The slope of the response curve (least squares) is compared with the sign economics
leads one to expect:

| type | response | stimulus | expected | basis |
|---|---|---|---|---|
| consumer | hours | wage offered (every firm's wage) | + | labour supply rises with the wage |
| consumer | demand for good i | price of good i | - | the law of demand |
| firm | price | its overdemanded flag (0 -> 1) | + | a rationed firm raises its price |
| firm | price | its stock | - | a firm with goods to clear lowers its price |
| government | income-tax rate | wage level (labour income per hour) | + | hypothesis: tax more when incomes are high |

The government observes no income, only the posted wages (labour income = wage x hours), so the wage
level stands in for labour income; its expected sign is a hypothesis, not a theorem.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..economy import AGENT_TYPES, Actions, Economy, State, observe
from ..economy.state import Params
from ..policies import ActorCritic
from . import spectrum_plots
from .profile import Profile
from .spectrum import half_step, profile_networks, write_table

INTUITION_FILE, INTUITION_PLOT = "intuition.parquet", "intuition.png"

INTUITION_COLUMNS = (
    "profile", "type", "response", "stimulus", "expected_sign", "basis", "measured_slope", "correlation",
    "change", "agrees", "material", "stimulus_unit", "response_unit", "stimulus_values", "responses", "probe")
"""Columns of intuition.parquet (see docs/equilibrium.md)."""


@dataclass(frozen=True)
class Probe:
    """One stimulus-response pair: which type, which head, how the state is changed."""

    kind: str
    response: str
    head: str
    """'hours', 'demand' (the head of the probed good), 'price' or 'income_tax'"""
    stimulus: str
    expected_sign: int
    basis: str
    stimulus_unit: str
    response_unit: str
    per_firm: bool
    """probe each firm i in turn (its own price, stock or flag) and average the curves"""
    description: str


PROBES = (
    Probe("consumer", "hours", "hours", "wage", +1,
          "theory: labour supply rises with the wage offered", "wage per hour", "hours",
          False, "every firm's wage set to the value, so the employer's wage is that value whichever "
          "firm the consumer works for; expected hours averaged over consumers and states"),
    Probe("consumer", "demand", "demand", "price", -1, "theory: the law of demand", "price", "units",
          True, "firm i's price set to the value; expected units demanded from firm i, averaged over "
          "consumers, states and firms i"),
    Probe("firm", "price", "price", "overdemanded", +1,
          "theory: a rationed (overdemanded) firm raises its price", "flag 0/1", "price",
          True, "firm i's overdemanded flag set to 0 then 1; firm i's expected price, averaged over "
          "states and firms i"),
    Probe("firm", "price", "price", "stock", -1,
          "theory: a firm holding more unsold stock lowers its price", "units", "price",
          True, "firm i's stock set to the value (re-encoded by observe, digits included); firm i's "
          "expected price, averaged over states and firms i"),
    Probe("government", "income_tax", "income_tax", "labour income (wage level)", +1,
          "hypothesis: a welfare-maximising government taxes labour income more when it is high",
          "wage per hour", "tax rate",
          False, "every firm's wage set to the value (the government observes wages, not incomes); "
          "expected income-tax rate, averaged over states"),
)
"""The probes of the report, in table order."""


# ---------------------------------------------------------------------------------------- states
def episode_states(profile: Profile, nets: Mapping[str, ActorCritic], seed: int = 0, n_envs: int = 16,
                   device: str | torch.device = "cpu") -> tuple[Params, State]:
    """The states of one episode played by the profile under best-response conditions (stochastic
    policies, no masks, theta at full strength), every step of every replica stacked as one batch of
    episode_length x n_envs states."""
    econ = profile.config.economy_config
    economy = Economy(econ, n_envs, device, seed=seed)
    generator = torch.Generator(device=economy.device)
    generator.manual_seed(seed)
    obs = economy.reset(seed=seed, theta_factor=1.0)
    states = []
    with torch.no_grad():
        for _ in range(econ.episode_length):
            states.append(economy.state.clone())
            acts = {}
            for kind in AGENT_TYPES:
                logits, _ = nets[kind](obs.global_, obs.own(kind))
                acts[kind], _ = nets[kind].sample(logits, None, generator)
            obs = economy.step(Actions(consumer=acts["consumer"], firm=acts["firm"],
                                       government=acts["government"][:, 0]), validate=False).obs
    fields = State.__dataclass_fields__
    return economy.params, State(**{f: torch.cat([getattr(s, f) for s in states]) for f in fields})


def expected_action(net: ActorCritic, params: Params, state: State, kind: str, head: int,
                    grid: torch.Tensor) -> torch.Tensor:
    """[B, n]: the expected value of one action head (its choice probabilities x grid values) of
    every agent of `kind` at each state."""
    obs = observe(params, state)
    with torch.no_grad():
        logits, _ = net(obs.global_.to(net.value.weight.dtype), obs.own(kind).to(net.value.weight.dtype))
        k = grid.numel()
        p = torch.softmax(net.head_logits(logits, head)[..., :k].to(torch.float64), dim=-1)
    return p @ grid.to(torch.float64)


# ---------------------------------------------------------------------------------------- slopes
def least_squares_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """The least-squares slope of y on x; exactly 0 when y is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    dx = x - x.mean()
    denom = float((dx * dx).sum())
    if denom == 0 or len(x) < 2:
        return math.nan
    return float((dx * (y - y[0])).sum() / denom)


def correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r of the curve; nan when either side is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


# ---------------------------------------------------------------------------------------- probes
def _stimulus_values(probe: Probe, params: Params, base: State, points: int) -> np.ndarray:
    cfg = params.cfg
    if probe.stimulus == "overdemanded":
        return np.array([0.0, 1.0])
    if probe.stimulus == "price":
        grid = cfg.price_grid
    elif probe.stimulus == "stock":
        return np.linspace(0.0, max(float(base.stock.max()), 10.0), points)
    else:
        grid = cfg.wage_grid
    return np.linspace(min(grid), max(grid), points)


def _setter(probe: Probe) -> Callable[[State, float, int], State]:
    def every_wage(state: State, v: float, i: int) -> State:
        return state.replace(wage=torch.full_like(state.wage, v))

    def one_firm(field: str) -> Callable[[State, float, int], State]:
        def set_(state: State, v: float, i: int) -> State:
            x = getattr(state, field).clone()
            x[:, i] = v
            return state.replace(**{field: x})
        return set_

    if probe.stimulus in ("price", "stock", "overdemanded"):
        return one_firm(probe.stimulus)
    return every_wage


def response_grid(probe: Probe, cfg) -> tuple[float, ...]:
    """The action grid of the probe's response head."""
    return {"hours": cfg.hours_grid, "demand": cfg.demand_grid, "price": cfg.price_grid,
            "income_tax": cfg.tax_grid}[probe.head]


def run_probe(probe: Probe, nets: Mapping[str, ActorCritic], params: Params, base: State,
              points: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """(stimulus values, mean expected response at each): the probe's response curve."""
    cfg = params.cfg
    f = cfg.n_firms
    net = nets[probe.kind]
    values = _stimulus_values(probe, params, base, points)
    set_ = _setter(probe)
    grid = torch.tensor(response_grid(probe, cfg), dtype=torch.float64, device=params.device)
    firms = range(f) if probe.per_firm else [None]
    curves = np.zeros((len(firms), len(values)))
    for a, i in enumerate(firms):
        if probe.kind == "consumer":
            head = f if probe.head == "hours" else i
        else:
            head = 0          # firm: price; government: income tax
        for b, v in enumerate(values):
            y = expected_action(net, params, set_(base, float(v), i if i is not None else 0), probe.kind, head, grid)
            if probe.kind == "firm":
                y = y[:, i]       # firm i's own response to its own price, stock or flag
            curves[a, b] = float(y.mean())
    return values, curves.mean(0)


def intuition(profile: Profile, seed: int = 0, n_envs: int = 16, points: int = 11,
              device: str | torch.device = "cpu", probes: Sequence[Probe] = PROBES) -> list[dict[str, Any]]:
    """One row per probe (INTUITION_COLUMNS): the profile's response curve to the stimulus, its
    least-squares slope (`measured_slope`, response units per stimulus unit), Pearson's r, `change` =
    slope x the stimulus range, `agrees`: the slope has the expected sign (a slope of exactly 0,
    a policy that ignores the stimulus, does not agree), and `material`: |change| is at least half a
    step of the response's action grid (the spectrum's resolution), so the response is one an agent's
    choices can express rather than a nudge of its probabilities. Base states: one episode of `n_envs`
    replicas played by the profile under best-response conditions from `seed`."""
    nets = profile_networks(profile, device)
    params, base = episode_states(profile, nets, seed, n_envs, device)
    rows = []
    for probe in probes:
        x, y = run_probe(probe, nets, params, base, points)
        slope = least_squares_slope(x, y)
        rows.append({"profile": profile.name, "type": probe.kind, "response": probe.response,
                     "stimulus": probe.stimulus, "expected_sign": probe.expected_sign, "basis": probe.basis,
                     "measured_slope": slope, "correlation": correlation(x, y),
                     "change": slope * float(x.max() - x.min()),
                     "agrees": bool(math.isfinite(slope) and slope * probe.expected_sign > 0),
                     "material": bool(abs(slope * float(x.max() - x.min()))
                                      >= half_step(response_grid(probe, params.cfg))),
                     "stimulus_unit": probe.stimulus_unit, "response_unit": probe.response_unit,
                     "stimulus_values": [float(v) for v in x], "responses": [float(v) for v in y],
                     "probe": probe.description})
    return rows


def write_intuition(rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike) -> Path:
    """OUT/intuition.parquet: the rows (curves as list columns)."""
    return write_table(rows, Path(out_dir) / INTUITION_FILE)


def plot_intuition(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """One PNG: per probe, the response curve, its least-squares line, the expected and measured signs."""
    return spectrum_plots.plot_intuition(rows, path)


def intuition_report(profile: Profile, out_dir: str | os.PathLike, seed: int = 0, n_envs: int = 16,
                     points: int = 11, device: str | torch.device = "cpu") -> list[dict[str, Any]]:
    """`intuition`, written as OUT/intuition.parquet and drawn as OUT/intuition.png; returns the rows."""
    rows = intuition(profile, seed, n_envs, points, device)
    write_intuition(rows, out_dir)
    plot_intuition(rows, Path(out_dir) / INTUITION_PLOT)
    return rows
