"""Known answers of the analyser's best response (seconds on CPU).

- identity: a deviation equal to the profile gains exactly 0 with 0 spread (common random numbers);
- plumbing: the frozen types' networks are bit for bit the profile's after a best response;
- a one-step economy (episode_length 1): prices, wages and taxes chosen at t act from t + 1, so the
  firms' and the government's exact epsilon is 0 and the analyser's bound must not exceed it; the
  consumers earn u(c) - theta_j / 2 h with c = 0 (initial stock 0), so their exact best response is
  h = 0 with payoff 0 (docs/model.md, consumers), and the exact gain is minus the profile's payoff.
"""

import copy

import pytest
import torch

from rbc_ray.economy import AGENT_TYPES
from rbc_ray.equilibrium import BestResponseConfig, paired_gain, payoffs
from rbc_ray.equilibrium.best_response import best_response

from equilibrium_helpers import constant_policy, make_profile, nets_of

BR = BestResponseConfig(episodes=20, episodes_per_iteration=5, eval_every=10, eval_envs=16, eval_episodes=1)


def test_identity_deviation_gains_exactly_zero(trained_profile):
    nets = nets_of(trained_profile)
    copies = copy.deepcopy(nets)
    cfg = trained_profile.config.economy_config
    for kind in AGENT_TYPES:
        before = payoffs(cfg, nets, 7, 16, 2)[kind]
        after = payoffs(cfg, {**nets, kind: copies[kind]}, 7, 16, 2)[kind]
        est = paired_gain(before, after)
        assert est.gain == 0.0 and est.se == 0.0 and est.lcb == 0.0 and est.lcb_bootstrap == 0.0
        assert before.shape == (32,)
    # and the evaluation is not constant: another seed gives other payoffs
    assert not torch.equal(payoffs(cfg, nets, 7, 16, 1)["firm"], payoffs(cfg, nets, 8, 16, 1)["firm"])


def test_warm_start_is_the_profile_and_frozen_types_stay_bit_identical(trained_profile):
    result = best_response(trained_profile, "firm", "warm", seed=3, br=BR)
    assert result.curve[0]["episode"] == 0 and result.curve[0]["selection_gain"] == 0.0
    assert [row["episode"] for row in result.curve] == [0, 10, 20]
    for kind in ("consumer", "government"):
        for name, value in trained_profile.policies[kind].items():
            assert torch.equal(result.policies[kind][name], value), (kind, name)
    moved = any(not torch.equal(result.policies["firm"][n], v) for n, v in trained_profile.policies["firm"].items())
    assert moved  # the deviating type did train
    assert result.best.episode in (0, 10, 20) and result.best_half.episode in (0, 10)
    assert result.confirmed.n == 16 and result.confirmed_half.n == 16


@pytest.mark.parametrize("kind", ["firm", "government"])
def test_one_step_economy_firms_and_government_cannot_gain(kind):
    profile = make_profile(["economy.episode_length=1"])
    result = best_response(profile, kind, "fresh", seed=0, br=BR)
    assert all(row["selection_gain"] == 0.0 for row in result.curve)
    assert result.confirmed.gain == 0.0 and result.confirmed.lcb <= 0.0


def test_one_step_economy_consumers_learn_the_hand_computed_best_response():
    profile = make_profile(["economy.episode_length=1"])
    br = BestResponseConfig(episodes=300, episodes_per_iteration=10, eval_every=100, eval_envs=32,
                            eval_episodes=2, lr=3e-3, entropy_start=0.01)
    result = best_response(profile, "consumer", "warm", seed=0, br=br)
    # exact: hours 0 gives payoff 0 in every replica, so the exact gain is -U(profile) on the same draws
    nets = nets_of(profile)
    before = payoffs(profile.config.economy_config, nets, br.confirmation_seed, 32, 2)["consumer"]
    exact_gain = float(-before.mean())
    theta = 0.01 * (1 - torch.arange(4) / 4) ** 0.25
    assert exact_gain == pytest.approx(float((theta / 2).mean()) * 520, rel=0.15)  # near-uniform hours
    est = result.confirmed
    assert est.before == pytest.approx(float(before.mean()))
    assert est.lcb <= exact_gain + 1e-9 and est.gain <= exact_gain + 1e-9
    assert est.gain >= 0.9 * exact_gain


def test_null_candidates_confirm_about_zero_and_rarely_bound_above_it():
    """Four deviations whose hours have the profile's mean (520) but not its draws: each true gain is 0.
    Chosen on selection draws, the best looks positive (the winner's curse); confirmed on separate
    draws its gain averages about 0 and its LCB exceeds 0 in about alpha of repeats at most."""
    from rbc_ray.equilibrium.best_response import Candidate, choose_and_confirm

    profile = make_profile(["economy.episode_length=1"])
    nets = nets_of(profile)
    nvec = nets["consumer"].nvec
    demand, employer = [[1.0] + [0.0] * (nvec[0] - 1)], [[1.0] + [0.0] * (nvec[-1] - 1)]
    hours = {"profile": [0, 0, 1, 0, 0], "a": [0.5, 0, 0, 0, 0.5], "b": [0, 0.5, 0, 0.5, 0],
             "c": [0.25, 0, 0.5, 0, 0.25], "d": [0.25, 0.25, 0, 0.25, 0.25]}
    n_firms = len(nvec) - 2
    policy = {k: constant_policy(nets["consumer"], demand * n_firms + [v] + employer) for k, v in hours.items()}
    reference = {**nets, "consumer": policy["profile"]}
    cfg = profile.config.economy_config
    alpha, repeats, above, selected, confirmed = 0.1, 100, 0, [], []

    def evaluate(seed, nets_):
        return payoffs(cfg, nets_, seed, 16, 1)["consumer"]

    for r in range(repeats):
        sel_seed, conf_seed = 10 * r + 1, 10 * r + 2
        before = evaluate(sel_seed, reference)
        cands = [Candidate(i, paired_gain(before, evaluate(sel_seed, {**reference, "consumer": policy[k]}), alpha),
                           policy[k].state_dict()) for i, k in enumerate("abcd")]
        best, est = choose_and_confirm(cands, reference, "consumer", evaluate, conf_seed, alpha)
        selected.append(best.selection.gain)
        confirmed.append(est.gain)
        above += est.lcb > 0
        assert est.se > 0  # the deviations do change the draws
    mean_sel, mean_conf = sum(selected) / repeats, sum(confirmed) / repeats
    spread = torch.tensor(confirmed).std().item() / repeats ** 0.5
    assert mean_sel > max(mean_conf, 0.0)    # choosing on the same draws overstates the gain
    assert abs(mean_conf) < 3 * spread       # confirmed on fresh draws: about 0
    assert above <= 2 * alpha * repeats      # LCB > 0 in about alpha of repeats at most


def test_checkpoint_specs_pick_snapshots():
    from rbc_ray.equilibrium.profile import pick

    assert pick([100, 200, 300, 400], "end") == [400]
    assert pick([100, 200, 300, 400], "mid,end") == [200, 400]
    assert pick([100, 200, 300, 400], "300, end, 300") == [300, 400]
    with pytest.raises(ValueError, match="no snapshot at that episode"):
        pick([100, 200], "150")
    with pytest.raises(ValueError, match="'end', 'mid' or an episode number"):
        pick([100, 200], "last")


def test_best_response_experiment_lifts_masks_and_freezes_the_others(trained_profile):
    from rbc_ray.equilibrium import best_response_experiment

    cfg = best_response_experiment(trained_profile, "government", BestResponseConfig(lr=2e-4, algorithm="pg"), 5)
    assert cfg.train.frozen == ("consumer", "firm") and cfg.train.seed == 5
    c = cfg.curriculum
    assert not c.masks and not c.theta_anneal and c.government_start == 0.0 and c.compress == 1.0
    assert cfg.policies.government.lr == 2e-4 and cfg.policies.government.epochs == 1
    assert cfg.policies.firm == trained_profile.config.policies.firm
