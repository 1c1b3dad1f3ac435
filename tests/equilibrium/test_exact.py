"""Exact best responses of a tiny economy, and the learned best response measured against them.

The economy: 2 consumers, 1 firm, 3 steps, open, float64, no TFP shock. The profile is deterministic:
every type plays one action at every step (constant networks with one-hot probabilities),

    consumers: 3 units from the firm, 1040 hours, employer 0
    firm:      price 1000, wage 22            (indices 2, 2)
    government: income and corporate tax 0.4  (indices 2, 2)

so the economy, and every payoff, is deterministic. For the firm (one agent) and the government
(one agent) the enumeration of their open-loop sequences, 30^3 and 36^3 replicas of one batched
economy, gives the exact best payoff U*_k; since the state path is fixed by the deviator's own
actions, that is the best closed-loop policy too (rbc_ray/equilibrium/exact.py), and a shared policy
of a one-agent type attains it. With the profile deterministic, `payoffs` measures U_k(profile)
exactly on any draws, so the exact epsilon U*_k - U_k(profile) is the true gain of the best
deviation. The profile is suboptimal for both types (the firm's best is price 2500 and wage 0, the
government's best is no corporate tax), so epsilon is clearly positive and "the learned gain reaches
90% of it" means something. A learned (stochastic) deviation cannot beat U*_k, so its confirmed gain
is at most epsilon (up to 3 SE of evaluation noise) and its lower bound never exceeds epsilon.

The batched payoffs of a few enumerated sequences are checked against the per-agent reference loop
(rbc_ray/economy/reference.py) stepping the same actions. The file runs in about 20 s on one core.
"""

import dataclasses

import pytest
import torch

from rbc_ray.economy import AGENT_TYPES, open_economy
from rbc_ray.economy.reference import ReferenceEconomy
from rbc_ray.equilibrium import BestResponseConfig, payoffs
from rbc_ray.equilibrium.best_response import best_response
from rbc_ray.equilibrium.exact import (enumerate_plans, exact_best_response, exact_epsilon, full_plan,
                                       plan_payoffs)

from equilibrium_helpers import make_profile
from equilibrium_helpers import constant_policy, nets_of

TINY_ECONOMY = ["economy.n_consumers=2", "economy.n_firms=1", "economy.episode_length=3",
                "economy.dtype=float64", "train.dtype=float64"]
PLAN = {"consumer": [3, 4, 0], "firm": [2, 2], "government": [2, 2]}
"""the deterministic profile: every agent of a type plays these action indices at every step"""
CFG = open_economy(n_consumers=2, n_firms=1, episode_length=3, dtype="float64")
BR = BestResponseConfig(episodes=200, episodes_per_iteration=10, n_envs=16, eval_every=50, eval_envs=32,
                        eval_episodes=1, lr=3e-3, entropy_start=0.01, entropy_decay=200)


def onehot(index: int, size: int) -> list[float]:
    return [1.0 if i == index else 0.0 for i in range(size)]


@pytest.fixture(scope="module")
def deterministic_profile():
    """The tiny smoke profile with every type's network replaced by its constant one-hot policy."""
    profile = make_profile(TINY_ECONOMY)
    nets = nets_of(profile)
    policies = {k: constant_policy(nets[k], [onehot(a, n) for a, n in zip(PLAN[k], nets[k].nvec)]).state_dict()
                for k in AGENT_TYPES}
    return dataclasses.replace(profile, policies=policies)


@pytest.fixture(scope="module")
def exact():
    """{type: (exact epsilon, ExactBestResponse)} for the firm and the government."""
    return {kind: exact_epsilon(CFG, kind, PLAN) for kind in ("firm", "government")}


def reference_payoffs(cfg, plans: dict[str, torch.Tensor]) -> dict[str, float]:
    """Each type's payoff of one replica playing [T, n, heads] plans, by the per-agent reference loop."""
    ref = ReferenceEconomy(cfg, theta_factor=1.0)
    total = {k: 0.0 for k in AGENT_TYPES}
    for t in range(cfg.episode_length):
        out = ref.step(plans["consumer"][t].tolist(), plans["firm"][t].tolist(), plans["government"][t, 0].tolist())
        r = out["rewards"]
        total["consumer"] += sum(r["consumer"]) / cfg.n_consumers
        total["firm"] += sum(r["firm"]) / cfg.n_firms
        total["government"] += r["government"]
    return total


def test_the_profile_config_is_the_enumerated_one(deterministic_profile):
    assert deterministic_profile.config.economy_config == CFG


def test_enumeration_is_every_sequence_once_in_lexicographic_order():
    plans = enumerate_plans(CFG, "firm")
    assert plans.shape == (30 ** 3, 3, 1, 2)
    assert plans[0].sum() == 0 and plans[1].flatten().tolist() == [0, 0, 0, 0, 0, 1]
    assert plans[-1].flatten().tolist() == [5, 4] * 3
    assert len(torch.unique(plans.flatten(1), dim=0)) == 30 ** 3
    shared = enumerate_plans(CFG.replace(episode_length=1), "consumer")         # one action for both
    assert shared.shape == (11 * 5 * 1, 1, 2, 3) and torch.equal(shared[:, :, 0], shared[:, :, 1])
    joint = enumerate_plans(CFG.replace(episode_length=1), "consumer", per_agent=True)
    assert joint.shape == ((11 * 5 * 1) ** 2, 1, 2, 3)
    with pytest.raises(ValueError, match="exceed max_sequences"):
        enumerate_plans(CFG, "consumer", per_agent=True)


def test_plans_are_checked():
    assert full_plan(CFG, "government", [1, 2]).shape == (3, 1, 2)
    assert full_plan(CFG, "consumer", [[1, 2, 0], [3, 4, 0]]).shape == (3, 2, 3)
    with pytest.raises(ValueError, match="heads"):
        full_plan(CFG, "firm", [1, 2, 3])
    with pytest.raises(ValueError, match="does not fit"):
        full_plan(CFG, "consumer", [[1, 2, 0]] * 3)
    with pytest.raises(ValueError, match="outside"):
        full_plan(CFG, "firm", [6, 0])
    with pytest.raises(ValueError, match="no fixed plan"):
        exact_best_response(CFG, "firm", {"consumer": PLAN["consumer"]})
    with pytest.raises(ValueError, match="TFP shock"):
        plan_payoffs(CFG.replace(tfp_sigma=0.01), PLAN)


@pytest.mark.parametrize("kind", ["firm", "government"])
def test_enumerated_payoffs_match_the_reference_loop(exact, kind):
    """A few sequences (the best, the profile's, spread indices): batched payoff == reference payoff."""
    _, best = exact[kind]
    profile_plan = full_plan(CFG, kind, PLAN[kind])
    at = (best.plans.flatten(1) == profile_plan.flatten()).all(-1).nonzero()
    assert at.numel() == 1  # the profile's sequence is one of the enumerated ones
    count = len(best.plans)
    picks = {int(torch.argmax(best.payoffs)), int(at), 1, count // 3, count // 2, count - 1}
    fixed = {k: full_plan(CFG, k, PLAN[k]) for k in AGENT_TYPES if k != kind}
    for s in sorted(picks):
        ref = reference_payoffs(CFG, {**fixed, kind: best.plans[s]})
        assert float(best.payoffs[s]) == pytest.approx(ref[kind], rel=1e-12, abs=1e-9), s
    assert best.payoff == float(best.payoffs.max())
    assert torch.equal(best.plan, best.plans[int(torch.argmax(best.payoffs))])


def test_exact_answers_of_the_tiny_economy(exact):
    """The hand-checkable structure: the firm's best posts price 2500 and wage 0 at the two steps whose
    prices and wages act within the episode; the government's best sets no corporate tax."""
    firm_eps, firm = exact["firm"]
    assert firm.plan[:2, 0].tolist() == [[5, 0], [5, 0]]
    assert firm_eps > 0.5 * firm.payoff > 0
    gov_eps, gov = exact["government"]
    assert gov.plan[:2, 0, 1].tolist() == [0, 0] and gov_eps > 0
    # one agent: the joint (per-agent) enumeration is the shared one
    joint = exact_best_response(CFG, "government", PLAN, per_agent=True)
    assert joint.payoff == gov.payoff and torch.equal(joint.payoffs, gov.payoffs)
    # the last step's price and wage act after the episode: the firm's payoffs tie across them
    tail = firm.payoffs.view(-1, 30)
    assert torch.equal(tail, tail[:, :1].expand_as(tail))


def test_shared_plans_never_beat_joint_plans():
    """Two consumers, one step: the best sequence played by both is at most the best joint plan (the
    upper bound of any shared policy); here they agree (no goods at t = 0: both work 0 hours)."""
    cfg = CFG.replace(episode_length=1)
    shared = exact_best_response(cfg, "consumer", PLAN)
    joint = exact_best_response(cfg, "consumer", PLAN, per_agent=True)
    assert shared.payoff <= joint.payoff + 1e-12
    assert shared.payoff == pytest.approx(joint.payoff, abs=1e-12) and shared.payoff == pytest.approx(0.0, abs=1e-9)
    assert shared.plan[0, :, -2].tolist() == [0, 0]


@pytest.mark.parametrize("kind", ["firm", "government"])
def test_learned_best_response_reaches_the_exact_epsilon(deterministic_profile, exact, kind):
    """Fresh init (the warm start is the constant one-hot network: zero weights, no gradient to
    follow). The deterministic profile's payoff measured by `payoffs` is the exact U_k; the learned
    confirmed gain reaches >= 90% of the exact epsilon, never exceeds it beyond 3 SE, and its lower
    bound never exceeds it."""
    eps, best = exact[kind]
    nets = nets_of(deterministic_profile)
    before = payoffs(CFG, nets, BR.confirmation_seed, BR.eval_envs, BR.eval_episodes)[kind]
    assert torch.allclose(before, torch.full_like(before, best.payoff - eps), rtol=1e-12)
    result = best_response(deterministic_profile, kind, "fresh", seed=0, br=BR)
    est = result.confirmed
    tol = 1e-9 * abs(best.payoff)
    assert est.before == pytest.approx(best.payoff - eps, rel=1e-12)
    assert est.gain >= 0.9 * eps
    assert est.gain <= eps + 3 * est.se + tol
    assert est.lcb <= eps + tol and est.lcb_bootstrap <= eps + tol
    assert est.after <= best.payoff + 3 * est.se + tol
