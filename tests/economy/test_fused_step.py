"""The fused CPU kernel in float32 (its fast log/exp path): accuracy, observations, errors, threads.

Float64 equality with the reference loop is in test_reference_equivalence.py (every case runs on
both backends); these tests cover what only float32 exercises: the polynomial log/exp of the
utility and float32 rounding, checked against the float64 torch step as the truth.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from economy_helpers import random_state, sample_actions

from rbc_ray.economy import Actions, Economy, EconomyConfig, Params, State, fused, observe, step

pytestmark = pytest.mark.skipif(not fused.available(), reason=f"fused CPU step unavailable: {fused.error()}")

CONFIGS = {
    "open_100x10": {},
    "closed_100x10": {"open_economy": False},
    "switches": {"n_consumers": 30, "n_firms": 7, "labour_disutility": "quadratic", "interest_rate": 0.1,
                 "tfp_rho": 0.9, "tfp_sigma": 0.1, "depreciation": 0.05, "investment_base": "budget",
                 "welfare": "consumer", "eta": 0.5},
    "digits_off": {"n_consumers": 20, "n_firms": 4, "digit_encoding": False},
    # the kernel's three power paths: x^k = x 2^((k-1) log2 x) for k in [1/2, 1) (the default k = 0.9
    # and "switches"' 0.5 above), 2^(k log2 x) for k in [-1/2, 1/2), the C library below -1/2; N = 45
    # consumers exercise the 32-float blocks and the remainder loop
    "eta_0.9": {"n_consumers": 45, "n_firms": 3, "eta": 0.9},
    "eta_2.5": {"n_consumers": 45, "n_firms": 3, "eta": 2.5},
    # the float32 ingest transposes 8 consumers x 8 heads in registers and looks grids of up to 16
    # values up there: 13 consumers and 9 firms (11 heads) leave partial blocks on both sides (the
    # demand grid starts above 0, so padding lanes must be masked out); a 17-value uneven demand
    # grid takes the index-by-index path
    "blocks_13x9": {"n_consumers": 13, "n_firms": 9, "demand_grid": [0.5 + k for k in range(11)],
                    "hours_grid": [0.0, 100.0, 180.0, 260.0, 520.0, 700.0, 800.0, 900.0, 1000.0]},
    "demand_grid_17": {"n_consumers": 21, "n_firms": 4, "demand_grid": [0.5 * k * k for k in range(17)]},
}


def as64(state: State) -> State:
    return State(**{f.name: getattr(state, f.name).double() for f in dataclasses.fields(state)})


def outputs(next_state: State, result) -> dict[str, torch.Tensor]:
    out = {f"state.{f.name}": getattr(next_state, f.name) for f in dataclasses.fields(next_state)}
    out.update({f"accounts.{f.name}": getattr(result.accounts, f.name) for f in dataclasses.fields(result.accounts)})
    out.update({f"rewards.{k}": getattr(result.rewards, k) for k in ("consumer", "firm", "government")})
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_float32_fused_step_is_float32_accurate(name: str) -> None:
    """Every output within 2e-6 of the float64 step, relative to the largest value of its field.

    Float32 carries ~6e-8 relative precision per operation; budgets and utilities are differences
    of large terms, so errors are measured against the field's scale, as for the torch float32 step
    (whose own error this test also measures, to show the kernel is no worse than 4x it). Measured:
    about 3e-7 for both.
    """
    cfg32 = EconomyConfig.from_dict({**CONFIGS[name]})
    p32, p64 = Params.build(cfg32), Params.build(cfg32.replace(dtype="float64"))
    gen = torch.Generator().manual_seed(5)
    n_envs = 16
    state = random_state(p32, n_envs, gen)
    worst = {"fused": 0.0, "torch": 0.0}
    for k in range(12):
        actions = sample_actions(cfg32, n_envs, gen)
        noise = torch.randn(n_envs, generator=gen)
        truth = outputs(*step(p64, as64(state), actions, noise.double()))
        for backend, fn in (("fused", fused.fused_step), ("torch", step)):
            got = outputs(*fn(p32, state, actions, noise))
            for key, want in truth.items():
                have = got[key]
                assert have.dtype == (torch.bool if want.dtype == torch.bool else torch.float32), key
                if want.dtype == torch.bool:
                    assert torch.equal(have, want), f"step {k} {backend} {key}"
                    continue
                scale = max(want.abs().max().item(), 1.0)
                err = (have.double() - want).abs().max().item() / scale
                worst[backend] = max(worst[backend], err)
                assert err <= 2e-6, f"step {k} {backend} {key}: error {err:.2e} of scale {scale:.3g}"
        state, _ = step(p32, state, actions, noise)
    assert worst["fused"] <= 4 * worst["torch"] + 1e-6, worst


# float32 builds 8 consumers' observation rows (8 x (n_digits + 1) floats, whole vectors) by
# permutes: 100 consumers leave a tail of 4, 16 none, 5 no whole block; 3 and 7 digits change the width
OBS_CONFIGS = {
    "paper": {},
    "16x3_3_digits": {"n_consumers": 16, "n_firms": 3, "n_digits": 3},
    "5x2": {"n_consumers": 5, "n_firms": 2},
    "13x9_7_digits": {"n_consumers": 13, "n_firms": 9, "n_digits": 7},
}


@pytest.mark.parametrize("name", sorted(OBS_CONFIGS))
def test_fused_observation_is_observe_of_its_next_state(name: str) -> None:
    """The kernel's observations are observe.py applied to the state it returns (float32)."""
    cfg = EconomyConfig.from_dict(OBS_CONFIGS[name])
    params = Params.build(cfg)
    gen = torch.Generator().manual_seed(2)
    state = random_state(params, 8, gen)
    for _ in range(5):
        next_state, result = fused.fused_step(params, state, sample_actions(cfg, 8, gen))
        expected = observe(params, next_state)
        for part in ("global_", "consumer", "firm"):
            torch.testing.assert_close(getattr(result.obs, part), getattr(expected, part), rtol=0, atol=1e-6)
        state = next_state


def test_production_outside_the_fast_path_takes_the_c_library() -> None:
    """float32 production runs as K 2^(a log2(L / K)) in double for finite K, L >= 0, and through the
    C library otherwise. Zero, subnormal and huge capital, zero labour and a hand-made negative
    capital (NaN, as torch gives) must all match the float32 torch step."""
    cfg = EconomyConfig(n_consumers=12, n_firms=4)
    p32 = Params.build(cfg)
    gen = torch.Generator().manual_seed(3)
    state = random_state(p32, 2, gen)
    capital = state.capital.clone()
    capital[0] = torch.tensor([0.0, 1e-40, 3e38, -5.0])
    state = dataclasses.replace(state, capital=capital)
    actions = sample_actions(cfg, 2, gen)
    actions.consumer[1, :, cfg.n_firms + 1] = 0  # every consumer works for firm 0 in env 1
    _, got = fused.fused_step(p32, state, actions)
    _, want = step(p32, state, actions)
    produced, truth = got.accounts.produced, want.accounts.produced
    assert produced[0, 0] == 0.0 and produced[0, 3].isnan() and (produced[1, 1:] == 0.0).all()
    torch.testing.assert_close(produced, truth, rtol=1e-6, atol=0.0, equal_nan=True)


def test_fused_step_is_deterministic_across_thread_counts() -> None:
    """Each env is computed whole by one thread, so 1 and 2 threads give identical bits."""
    cfg = EconomyConfig()
    params = Params.build(cfg)
    gen = torch.Generator().manual_seed(9)
    state = random_state(params, 64, gen)
    actions = sample_actions(cfg, 64, gen)
    before = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs.append(outputs(*fused.fused_step(params, state, actions)))
    finally:
        torch.set_num_threads(before)
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key


def test_fused_step_reports_out_of_range_actions() -> None:
    """Unvalidated out-of-range indices raise a clear error instead of reading out of bounds."""
    cfg = EconomyConfig(n_consumers=4, n_firms=2)
    econ = Economy(cfg, n_envs=2, seed=0, backend="fused")
    good = econ.random_actions()
    for kind, index, value in (("consumer", (1, 2, 0), 11), ("consumer", (0, 1, 2), 5), ("consumer", (0, 3, 3), 2),
                               ("consumer", (1, 0, 1), 255), ("firm", (1, 0, 1), -1), ("government", (0, 1), 6)):
        bad = {k: getattr(good, k).clone() for k in ("consumer", "firm", "government")}
        bad[kind][index] = value
        with pytest.raises(RuntimeError, match="out of range; step with validate=True"):
            econ.step(Actions(**bad), validate=False)


def test_backend_choice_and_errors() -> None:
    cfg = EconomyConfig(n_consumers=4, n_firms=2)
    assert Economy(cfg).backend == "fused"  # auto on CPU when the kernel builds
    assert Economy(cfg, backend="torch").backend == "torch"
    with pytest.raises(ValueError, match="backend='gpu': must be one of"):
        Economy(cfg, backend="gpu")
    with pytest.raises(ValueError, match="exclude each other"):
        Economy(cfg, backend="fused", compile=True)


@pytest.mark.parametrize("backend", ["fused", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("index", [torch.uint8, torch.int16, torch.int32])
def test_any_index_dtype_gives_the_int64_step(backend, dtype, index) -> None:
    """uint8 (random_actions' compact dtype), int16 and int32 indices give the int64 step bit for bit,
    on an uneven demand grid, where a uint8 tensor used as a torch index would act as a mask."""
    cfg = EconomyConfig(n_consumers=11, n_firms=3, dtype=dtype, demand_grid=[0.0, 0.5, 2.0, 3.5, 7.0])
    params = Params.build(cfg)
    gen = torch.Generator().manual_seed(4)
    state = random_state(params, 3, gen)
    actions = sample_actions(cfg, 3, gen)
    small = Actions(consumer=actions.consumer.to(index), firm=actions.firm.to(index),
                    government=actions.government.to(index))
    fn = fused.fused_step if backend == "fused" else step
    want, got = outputs(*fn(params, state, actions)), outputs(*fn(params, state, small))
    for key in want:
        assert torch.equal(want[key], got[key]), key


@pytest.mark.parametrize("n_consumers,n_firms", [(100, 10), (8, 3), (16, 14), (9, 15), (1, 1)])
def test_byte_transposed_ingest_gives_the_int64_step(n_consumers, n_firms) -> None:
    """uint8 actions with at most 16 heads are read 8 consumers' rows at a time as bytes (16-byte loads,
    a zero-padded copy for the last rows of an env): the int64 step bit for bit, whether the last rows
    fill a whole group (8), leave a tail (100, 9), have 16 heads (14 firms) or 17 (15 firms: not taken)."""
    cfg = EconomyConfig(n_consumers=n_consumers, n_firms=n_firms)
    params = Params.build(cfg)
    gen = torch.Generator().manual_seed(6)
    state = random_state(params, 5, gen)
    actions = sample_actions(cfg, 5, gen)
    small = Actions(consumer=actions.consumer.to(torch.uint8), firm=actions.firm.to(torch.uint8),
                    government=actions.government.to(torch.uint8))
    want, got = outputs(*fused.fused_step(params, state, actions)), outputs(*fused.fused_step(params, state, small))
    for key in want:
        assert torch.equal(want[key], got[key]), key


def test_mixed_index_dtypes_are_widened_not_wrapped() -> None:
    """uint8 consumers with int64 firm actions: a firm index of 261 must raise, not wrap to 5."""
    cfg = EconomyConfig(n_consumers=4, n_firms=2)
    econ = Economy(cfg, n_envs=2, seed=0, backend="fused")
    good = econ.random_actions()
    firm = good.firm.long()
    firm[1, 0, 0] = 256 + 5
    with pytest.raises(RuntimeError, match="out of range; step with validate=True"):
        econ.step(Actions(consumer=good.consumer, firm=firm, government=good.government), validate=False)
    firm[1, 0, 0] = 5
    econ.step(Actions(consumer=good.consumer, firm=firm, government=good.government), validate=False)
    assert float(econ.state.price[1, 0]) == cfg.price_grid[5]  # the next price is the chosen one


def test_random_actions_are_compact() -> None:
    """uint8 for the paper's economies (every head under 256 choices), wider beyond."""
    assert Economy(EconomyConfig(n_consumers=4, n_firms=2)).random_actions().consumer.dtype == torch.uint8
    wide = Economy(EconomyConfig(n_consumers=3, n_firms=300)).random_actions()
    assert wide.consumer.dtype == torch.int32
    assert int(wide.consumer[..., -1].max()) < 300


def test_kernel_names_its_inputs_and_outputs_as_fused_py_does() -> None:
    """fused.py builds the kernel's inputs and reads its outputs by the kernel's own tables of names."""
    module = fused.load()
    assert tuple(module.INPUTS) == fused.INPUTS
    assert tuple(module.OUTPUTS) == fused.OUTPUTS
    assert tuple(module.SCALARS) == fused.SCALARS
    assert tuple(module.FLAGS) == tuple(fused.FLAGS)
    cfg = EconomyConfig(n_consumers=6, n_firms=3)
    params = Params.build(cfg)
    gen = torch.Generator().manual_seed(10)
    state = random_state(params, 2, gen)
    actions = sample_actions(cfg, 2, gen)
    next_state, result = fused.fused_step(params, state, actions)
    _, want = step(params, state, actions)
    assert result.accounts.consumed.shape == want.accounts.consumed.shape == (2, 6, 3)
    assert result.done.dtype == torch.bool and next_state.theta_factor is state.theta_factor


def test_kept_results_keep_their_values() -> None:
    """Every step's outputs are fresh tensors: a result (or a view of one) kept by the caller keeps its
    values while the economy steps on."""
    cfg = EconomyConfig(n_consumers=9, n_firms=3)
    econ = Economy(cfg, n_envs=4, seed=0, backend="fused")
    gen = torch.Generator().manual_seed(7)
    kept = econ.step(econ.random_actions(gen))
    kept_copy, kept_done = kept.obs.consumer.clone(), kept.done.clone()
    view = econ.step(econ.random_actions(gen)).accounts.consumed[1:, 0]
    view_copy = view.clone()
    state = econ.state
    state_copy = state.consumer_budget.clone()
    for _ in range(12):
        econ.step(econ.random_actions(gen))
    assert torch.equal(kept.obs.consumer, kept_copy) and torch.equal(kept.done, kept_done)
    assert torch.equal(view, view_copy)
    assert torch.equal(state.consumer_budget, state_copy)
