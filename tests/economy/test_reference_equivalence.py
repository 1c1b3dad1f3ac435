"""The batched step (torch and fused CPU kernel) equals the plain per-agent reference loop.

Float64, 1e-5 relative. The fused kernel is checked on exactly the same cases as the torch step.

For each config: several envs side by side, 50 steps of random actions (episodes reset when done),
and every state field, reward, accounting entry and full observation of every env is compared with
rbc_ray.economy.reference.ReferenceEconomy, the oracle written from the spec.
"""

from __future__ import annotations

import zlib

import pytest
import torch
from economy_helpers import (assert_record_close, assert_tree_close, batched_record, env_actions, random_state, reset_done,
                             sample_actions)

from rbc_ray.economy import Economy, EconomyConfig, Params, fused, initial_state, step
from rbc_ray.economy.reference import ReferenceEconomy

needs_fused = pytest.mark.skipif(not fused.available(), reason=f"fused CPU step unavailable: {fused.error()}")
BACKENDS = [pytest.param("torch", id="torch"), pytest.param("fused", id="fused", marks=needs_fused)]
STEPS = {"torch": step, "fused": fused.fused_step}

SMALL = {"n_consumers": 3, "n_firms": 2}
MID = {"n_consumers": 7, "n_firms": 3}

CASES = {
    "open_3x2": {**SMALL},
    "closed_3x2": {**SMALL, "open_economy": False},
    "open_7x3": {**MID},
    "closed_7x3": {**MID, "open_economy": False},
    "quadratic_labour": {**MID, "labour_disutility": "quadratic"},
    "alpha_paper": {**MID, "n_firms": 5, "alpha_set": (0.2, 0.4, 0.6, 0.8)},
    "investment_budget": {**MID, "investment_base": "budget"},
    "export_strict": {**MID, "export_strict": True, "price_grid": (0.0, 500.0, 1000.0)},
    "export_small_q": {**MID, "q_export": 3.0, "p_export": 1000.0},
    "welfare_consumer": {**MID, "welfare": "consumer"},
    "interest_0.1": {**MID, "interest_rate": 0.1},
    "tfp_shock": {**MID, "tfp_rho": 0.9, "tfp_sigma": 0.1},
    "depreciation": {**MID, "depreciation": 0.05},
    "digits_off": {**MID, "digit_encoding": False},
    "digits_4": {**MID, "n_digits": 4},
    "epsilon_0_no_episode_end": {**MID, "budget_epsilon": 0.0, "episode_length": 60},
    "non_arithmetic_grids": {**MID, "price_grid": (0.0, 300.0, 900.0, 2500.0),
                             "wage_grid": (0.0, 7.0, 30.0), "demand_grid": (0.0, 1.0, 3.0, 7.5),
                             "hours_grid": (0.0, 100.0, 1040.0), "tax_grid": (0.0, 0.15, 0.5, 1.0)},
    "paper_preset_closed": {**MID, "preset": "paper", "open_economy": False},
    "odd_constants": {**SMALL, "eta": 0.5, "productivity": 0.05, "investment_fraction": 0.3,
                      "firm_welfare_weight": 0.1, "theta_max": 0.02, "pareto_shape": 2.0,
                      "price0": 500.0, "wage0": 11.0, "stock0": 4.0, "episode_length": 7},
}


def run_against_reference(cfg: EconomyConfig, n_envs: int, n_steps: int, seed: int,
                          random_start: bool, backend: str = "torch") -> None:
    step_fn = STEPS[backend]
    params = Params.build(cfg)
    gen = torch.Generator().manual_seed(seed)
    state = initial_state(params, n_envs)
    refs = [ReferenceEconomy(cfg) for _ in range(n_envs)]
    # the spec's initial state, built independently by the reference
    for e, ref in enumerate(refs):
        assert_tree_close({k: getattr(state, k)[e].tolist() for k in ref.state_dict()},
                          ref.state_dict(), f"initial env {e}")
    if random_start:
        # env 0 starts from the spec's initial state, the others from random valid states
        rnd = random_state(params, n_envs, gen)
        state = reset_done(params, rnd, torch.arange(n_envs) == 0)
        refs = [ReferenceEconomy.from_state(cfg, state, e) for e in range(n_envs)]
    shocked = cfg.tfp_sigma > 0
    for k in range(n_steps):
        actions = sample_actions(cfg, n_envs, gen)
        noise = torch.randn(n_envs, generator=gen, dtype=torch.float64) if shocked else None
        next_state, result = step_fn(params, state, actions, noise)
        for e in range(n_envs):
            c, f, g = env_actions(actions, e)
            expected = refs[e].step(c, f, g, tfp_noise=float(noise[e]) if shocked else 0.0)
            assert_record_close(batched_record(next_state, result, e), expected, cfg, f"step {k} env {e}")
            if expected["done"]:
                refs[e] = ReferenceEconomy(cfg)
        state = reset_done(params, next_state, result.done)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_step_equals_reference(name: str, backend: str) -> None:
    cfg = EconomyConfig.from_dict({**CASES[name], "dtype": "float64"})
    run_against_reference(cfg, n_envs=4, n_steps=50, seed=zlib.crc32(name.encode()) % 1000, random_start=True,
                          backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("open_economy", [True, False], ids=["open", "closed"])
def test_reference_size_100x10(open_economy: bool, backend: str) -> None:
    """The paper's size (100 consumers, 10 firms), from the initial state."""
    cfg = EconomyConfig(open_economy=open_economy, dtype="float64")
    run_against_reference(cfg, n_envs=2, n_steps=50, seed=7, random_start=False, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_economy_wrapper_equals_reference(backend: str) -> None:
    """The stateful Economy (validated actions, its own random actions) follows the oracle too."""
    cfg = EconomyConfig(n_consumers=5, n_firms=3, dtype="float64", episode_length=4)
    econ = Economy(cfg, n_envs=3, seed=3, backend=backend)
    assert econ.backend == backend
    refs = [ReferenceEconomy(cfg) for _ in range(3)]
    gen = torch.Generator().manual_seed(11)
    for k in range(12):
        actions = econ.random_actions(gen)
        result = econ.step(actions)
        for e in range(3):
            expected = refs[e].step(*env_actions(actions, e))
            assert_record_close(batched_record(econ.state, result, e), expected, cfg, f"step {k} env {e}")
        if bool(result.done.all()):
            econ.reset()
            refs = [ReferenceEconomy(cfg) for _ in range(3)]
