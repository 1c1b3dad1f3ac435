"""The economic intuition report: known answers from hand-made networks (a constant policy has slope
exactly 0; weights set on the wage or stock inputs give the signs they were built with, through the
model's own observation encoding), the documented rows for a real tiny profile, Parquet and PNG."""

import copy
import dataclasses
import math

import pyarrow.parquet as pq
import pytest
import torch

from rbc_ray.economy import AGENT_TYPES
from rbc_ray.equilibrium.intuition import (INTUITION_COLUMNS, PROBES, intuition, intuition_report,
                                           least_squares_slope, plot_intuition, write_intuition)
from rbc_ray.equilibrium.spectrum import profile_networks

from equilibrium_helpers import make_profile
from equilibrium_helpers import constant_policy

DOCUMENTED = [("consumer", "hours", "wage", 1), ("consumer", "demand", "price", -1),
              ("firm", "price", "overdemanded", 1), ("firm", "price", "stock", -1),
              ("government", "income_tax", "labour income (wage level)", 1)]


def with_networks(profile, nets):
    return dataclasses.replace(profile, policies={k: {n: v.clone() for n, v in net.state_dict().items()}
                                                  for k, net in nets.items()})


def handmade(template, features, head, per_choice):
    """A network whose `head` logits are per_choice x k x relu(sum of the `features` inputs) for choice
    k, every other logit 0 (uniform), padding kept out."""
    net = copy.deepcopy(template)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.first_global.weight[0, features] = 1.0
        net.trunk[0].weight[0, 0] = 1.0
        for k in range(net.nvec[head]):
            net.logits.weight[k * net.n_heads + head, 0] = per_choice * k
        net.logits.bias.copy_(net.pad_mask.flatten())
    return net


def test_a_constant_policy_has_slope_exactly_zero_and_does_not_agree(trained_profile):
    nets = profile_networks(trained_profile)
    const = {k: constant_policy(nets[k], [[1.0 / n] * n for n in nets[k].nvec]) for k in AGENT_TYPES}
    rows = intuition(with_networks(trained_profile, const), n_envs=4, points=5)
    assert len(rows) == len(PROBES)
    for r in rows:
        assert r["measured_slope"] == 0.0 and r["change"] == 0.0, r["stimulus"]
        assert r["agrees"] is False and r["material"] is False and math.isnan(r["correlation"])
        assert len(set(r["responses"])) == 1


def test_hours_that_rise_with_the_wage_input_give_a_positive_slope(trained_profile):
    nets = profile_networks(trained_profile)
    f = trained_profile.config.economy_config.n_firms
    nets["consumer"] = handmade(nets["consumer"], list(range(f, 2 * f)), head=f, per_choice=0.5)  # wages / 44
    rows = {(r["type"], r["stimulus"]): r for r in intuition(with_networks(trained_profile, nets), n_envs=4)}
    hours = rows[("consumer", "wage")]
    assert hours["responses"][0] == pytest.approx(520.0)      # wage 0: uniform over 0..1040 hours
    assert hours["measured_slope"] > 0 and hours["agrees"] and hours["material"]
    assert hours["correlation"] > 0.95 and hours["responses"][-1] > 800
    assert all(b > a for a, b in zip(hours["responses"], hours["responses"][1:]))
    assert rows[("consumer", "price")]["measured_slope"] == 0.0   # demand heads ignore everything


@pytest.mark.parametrize("digit_encoding", [True, False])
def test_prices_that_fall_with_the_stock_input_give_a_negative_slope(digit_encoding):
    profile = make_profile([f"economy.digit_encoding={str(digit_encoding).lower()}"])
    cfg = profile.config.economy_config
    f, d = cfg.n_firms, cfg.n_digits
    # the stock part of the global observation starts at 2F; with digits, firm i's feature j is
    # (stock mod 10^(j+1)) / 10^(j+1), so j = 3 is stock / 10^4 for stocks below 10^4
    features = [2 * f + i * d + 3 for i in range(f)] if digit_encoding else list(range(2 * f, 3 * f))
    per_choice = -200.0 if digit_encoding else -0.02
    nets = profile_networks(profile)
    nets["firm"] = handmade(nets["firm"], features, head=0, per_choice=per_choice)
    rows = {(r["type"], r["stimulus"]): r for r in intuition(with_networks(profile, nets), n_envs=4)}
    stock = rows[("firm", "stock")]
    assert stock["stimulus_values"][0] == 0.0 and stock["stimulus_values"][-1] >= 10.0
    # (the network reads every firm's stock, so firm i's price at stock 0 still reflects the others')
    assert stock["measured_slope"] < 0 and stock["agrees"]
    assert all(b <= a + 1e-9 for a, b in zip(stock["responses"], stock["responses"][1:]))
    assert rows[("firm", "overdemanded")]["measured_slope"] == 0.0   # the flag is not wired in


def test_a_real_tiny_profile_gives_the_documented_finite_table(tmp_path, trained_profile):
    rows = intuition(trained_profile, seed=3, n_envs=4, points=7)
    assert [(r["type"], r["response"], r["stimulus"], r["expected_sign"]) for r in rows] == DOCUMENTED
    for r in rows:
        assert list(r) == list(INTUITION_COLUMNS)
        assert math.isfinite(r["measured_slope"]) and math.isfinite(r["change"])
        assert len(r["stimulus_values"]) == len(r["responses"]) == (2 if r["stimulus"] == "overdemanded" else 7)
        assert all(math.isfinite(v) for v in r["responses"])
        assert isinstance(r["agrees"], bool) and r["agrees"] == (r["measured_slope"] * r["expected_sign"] > 0)
    assert intuition(trained_profile, seed=3, n_envs=4, points=7) == rows        # deterministic
    out = intuition_report(trained_profile, tmp_path, seed=3, n_envs=4, points=7)
    table = pq.read_table(tmp_path / "intuition.parquet").to_pylist()
    assert [r["measured_slope"] for r in table] == [r["measured_slope"] for r in out]
    assert table[0]["stimulus_values"] == out[0]["stimulus_values"]
    png = tmp_path / "intuition.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert write_intuition(rows, tmp_path / "again").exists()
    assert plot_intuition(rows[:1], tmp_path / "one.png").exists()


def test_least_squares_slope_known_values():
    assert least_squares_slope([0, 1, 2], [1, 3, 5]) == pytest.approx(2.0)
    assert least_squares_slope([0, 1, 2], [0.1, 0.1, 0.1]) == 0.0
    assert math.isnan(least_squares_slope([1, 1], [0, 2]))
