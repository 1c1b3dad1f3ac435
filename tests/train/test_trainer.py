"""Trainer: metric keys, determinism, exact checkpoint restore, divergence detection, frozen types,
the grad_sync hook, and a smoke run that beats a random consumer."""

import io
import math
from pathlib import Path

import pytest
import torch

from rbc_ray.train import METRIC_KEYS, PROFILE_KEYS, Trainer, TrainingDivergedError, load_experiment

SMOKE = Path(__file__).resolve().parents[2] / "tune_configs" / "open_rbc_smoke.yaml"
TINY = ["train.n_envs=4", "train.episodes_per_iteration=2", "train.torch_threads=1",
        "economy.n_consumers=3", "economy.n_firms=2", "curriculum.firm_start=0",
        "curriculum.government_start=1"]
EXPECTED_KEYS = (
    "iteration episodes env_steps agent_steps time_s agent_steps_per_s env_steps_per_s "
    "reward_consumer reward_firm reward_government entropy_consumer entropy_firm entropy_government "
    "policy_loss_consumer policy_loss_firm policy_loss_government value_loss_consumer value_loss_firm "
    "value_loss_government entropy_coef_consumer entropy_coef_firm entropy_coef_government "
    "training_consumer training_firm training_government mean_price mean_wage mean_hours "
    "mean_consumption mean_stock mean_exports income_tax corporate_tax welfare firm_profit "
    "price_low price_high wage_low wage_high tax_cap theta_factor").split()
TIMING = {"time_s", "agent_steps_per_s", "env_steps_per_s"}


def tiny(*extra):
    return Trainer(load_experiment(SMOKE, TINY + list(extra))[0])


def same(a, b):
    return all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a if k not in TIMING)


def test_metrics_have_exactly_the_documented_keys():
    trainer = tiny("curriculum.government_start=100000")
    m = trainer.train_iteration()
    assert list(m) == EXPECTED_KEYS == list(METRIC_KEYS)
    assert all(isinstance(v, float) for v in m.values())
    assert m["iteration"] == 1 and m["episodes"] == 2 and m["env_steps"] == 2 * 4 * 10
    assert m["agent_steps"] == m["env_steps"] * 6
    assert m["training_consumer"] == 1.0 and m["training_government"] == 0.0
    assert math.isnan(m["policy_loss_government"]) and math.isfinite(m["policy_loss_firm"])
    assert m["mean_price"] == 1000.0  # every firm starts at 1000; the episode-0 mask allows only 1000
    assert all(math.isfinite(v) for k, v in m.items() if "government" not in k)


def test_profile_adds_timing_keys():
    m = tiny("train.profile=true").train_iteration()
    assert set(m) == set(EXPECTED_KEYS) | set(PROFILE_KEYS)
    assert 0 < m["policy_time_share"] <= 1 and m["time_env_s"] > 0


def test_same_seed_same_results_different_seed_different():
    a, b, c = tiny(), tiny(), tiny("train.seed=1")
    ma, mb, mc = [[t.train_iteration() for _ in range(2)] for t in (a, b, c)]
    assert all(same(x, y) for x, y in zip(ma, mb))
    assert not same(ma[-1], mc[-1])


def test_checkpoint_restore_is_bit_identical():
    a = tiny()
    a.train_iteration()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    cont = [a.train_iteration() for _ in range(2)]
    buf.seek(0)
    b = Trainer.from_state_dict(torch.load(buf, weights_only=False))
    again = [b.train_iteration() for _ in range(2)]
    assert all(same(x, y) for x, y in zip(cont, again))
    for kind in a.policies:
        for p, q in zip(a.policies[kind].parameters(), b.policies[kind].parameters()):
            assert torch.equal(p, q)
    assert b.episode == a.episode and b.iteration == a.iteration == 3


def test_nan_parameter_is_diagnosed_with_type_and_position():
    trainer = tiny()
    with torch.no_grad():
        trainer.policies["firm"].value.weight.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match=r"firm (policy_loss|value_loss|parameter).*iteration 0.*episode 0"):
        trainer.train_iteration()


def test_nan_reward_is_diagnosed(monkeypatch):
    trainer = tiny()
    real_step = trainer.economy.step

    def bad_step(actions, validate=True):
        result = real_step(actions, validate)
        result.rewards.firm[0, 0] = float("inf")
        return result

    monkeypatch.setattr(trainer.economy, "step", bad_step)
    with pytest.raises(TrainingDivergedError, match="firm reward.*episode 0"):
        trainer.train_iteration()


def test_frozen_types_do_not_change_and_grad_sync_sees_trained_types():
    seen = []
    cfg = load_experiment(SMOKE, TINY + ["train.frozen=[firm]"])[0]
    trainer = Trainer(cfg, grad_sync=lambda kind, module: seen.append(kind))
    before = {k: [p.detach().clone() for p in net.parameters()] for k, net in trainer.policies.items()}
    m = trainer.train_iteration()
    assert m["training_firm"] == 0.0 and math.isnan(m["value_loss_firm"])
    assert all(torch.equal(p, q) for p, q in zip(before["firm"], trainer.policies["firm"].parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(before["consumer"], trainer.policies["consumer"].parameters()))
    assert set(seen) == {"consumer", "government"} and "firm" not in seen


def test_evaluate_is_repeatable_and_leaves_training_rng_alone():
    a, b = tiny(), tiny()
    e1 = a.evaluate(1)
    assert a.evaluate(1) == e1
    assert same(a.train_iteration(), b.train_iteration())
    with pytest.raises(ValueError):
        a.evaluate(1, policy="greedy")


def test_smoke_training_beats_a_random_consumer():
    cfg, _ = load_experiment(SMOKE)
    trainer = Trainer(cfg)
    for _ in range(3):
        trainer.train_iteration()
    trained = trainer.evaluate(2)["reward_consumer"]
    random = trainer.evaluate(2, policy="random", types=("consumer",))["reward_consumer"]
    assert trained > random + 0.5, (trained, random)


@pytest.mark.parametrize("extra", [["policies.consumer.minibatches=2"], ["policies.consumer.returns=gae"],
                                   ["policies.consumer.discount_once=true"]])
def test_update_variants_train_and_differ_from_the_default(extra):
    base, variant = tiny(), tiny(*extra)
    mb, mv = base.train_iteration(), variant.train_iteration()
    assert math.isfinite(mv["policy_loss_consumer"]) and math.isfinite(mv["value_loss_consumer"])
    assert mv["value_loss_consumer"] != mb["value_loss_consumer"]


def test_restore_keeps_the_restoring_trainers_learning_rates():
    a = tiny()
    a.train_iteration()
    b = tiny("policies.firm.lr=0.01")
    b.load_state_dict(a.state_dict())
    assert b.optimizers["firm"].param_groups[0]["lr"] == 0.01
    assert b.optimizers["consumer"].param_groups[0]["lr"] == a.optimizers["consumer"].param_groups[0]["lr"]
    assert b.episode == a.episode


def test_reusing_the_rollout_forward_gives_the_recomputed_update():
    """train.reuse_rollout_forward (default on): the first PPO epoch backpropagates through the
    rollout's own forward. Same parameters and inputs, so the networks after two iterations match
    the trainer that recomputes the forward, to float64 rounding (the forward then runs in one
    batch instead of one per step, so the sums may round differently)."""
    on = tiny("train.dtype=float64")
    off = tiny("train.dtype=float64", "train.reuse_rollout_forward=false")
    assert on.cfg.train.reuse_rollout_forward and not off.cfg.train.reuse_rollout_forward
    before = {k: [p.detach().clone() for p in on.policies[k].parameters()] for k in ("consumer", "firm")}
    calls = {"on": 0, "off": 0}
    on.policies["consumer"].register_forward_hook(lambda *_: calls.__setitem__("on", calls["on"] + 1))
    off.policies["consumer"].register_forward_hook(lambda *_: calls.__setitem__("off", calls["off"] + 1))
    for _ in range(2):
        on.train_iteration(), off.train_iteration()
    # 2 iterations x 2 episodes: the reusing trainer skips one forward per consumer update
    assert calls["off"] - calls["on"] == 4, calls
    for kind in ("consumer", "firm", "government"):
        for p, q in zip(on.policies[kind].parameters(), off.policies[kind].parameters()):
            assert torch.allclose(p, q, rtol=1e-9, atol=1e-12), kind
    for kind in ("consumer", "firm"):  # and the updates did move them
        assert any(not torch.equal(p, b) for p, b in zip(on.policies[kind].parameters(), before[kind]))
