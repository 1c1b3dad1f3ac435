"""Lagged prices in the SRL policy state (`price_lags`, rbc_ray/structural/lags.py).

In float64: the fused kernels equal the torch rollouts and autograd with one and two lags; a table
that is constant across the lag nodes reproduces the model without lags (objective, paths, final
histogram, and the gradient summed over the lag nodes); a table that depends on the lag changes the
outcome; the lags a rollout uses are the rates it cleared one and two periods before.
"""

import pytest
import torch

from rbc_ray.config import ConfigError
from rbc_ray.structural import lags as price_lags
from rbc_ray.structural.api import build, solve
from rbc_ray.structural.config import calibration
from rbc_ray.structural.kernels import fused

SIZES = {"huggett": dict(n_b=40, n_r=8, n_z=5), "ks": dict(n_b=40, n_r=8, n_w=6, n_z=5)}
needs_kernels = pytest.mark.skipif(fused.load() is None, reason=f"fused kernels unavailable: {fused.error()}")


def _model(model, kernel, L, n_lag=3):
    cal = calibration(model, {**SIZES[model], "n_paths": 6, "e_trunc": 0.05, "dtype": "float64",
                              "kernel": kernel, "price_lags": L, "n_lag": n_lag}, smoke=True)
    m = build(model, cal)
    assert m.fused == (kernel == "fused")
    return m


@torch.no_grad()
def _perturb(m, lag_dependent):
    """Move the policy away from the initial guess the same way whatever the lags (interior shares,
    steeper in the rate); with `lag_dependent`, lower shares at higher lag nodes."""
    M = m.M
    rows0 = m.first.shape[0] // M
    f = 1 - 0.2 * torch.rand((rows0,) + tuple(m.first.shape[1:]), generator=torch.Generator().manual_seed(1),
                             dtype=m.first.dtype)
    f = f.repeat_interleave(M, 0)
    if lag_dependent and M > 1:
        node = torch.arange(M).repeat(rows0).to(f.dtype)  # row = (z or w node) M + lag node
        f = f * (1 - 0.3 * node / (M - 1))[:, None, None]
    m.first.mul_(f)
    m.incr.mul_(1.3)
    m.project()


def _initial_lags(m):
    """Lags in and just outside the lag grid (the outside ones clamp to its ends)."""
    cal = m.cal
    u = torch.rand(cal.n_paths, m.L, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return cal.r_min - 0.004 + u * (cal.r_max - cal.r_min + 0.008)


def _run(model, kernel, L, lag_dependent=True, record=True):
    m = _model(model, kernel, L)
    _perturb(m, lag_dependent)
    state = m.initial_state()
    if L:
        state["lags"] = _initial_lags(m)
    shocks = m.draw_shocks(state, torch.Generator().manual_seed(3))
    objective, final, rec = m.rollout(state, shocks, record=record)
    objective.backward()
    paths = {k: v.double() for k, v in rec.items() if torch.is_tensor(v)}
    return dict(m=m, obj=float(objective.detach()), first=m.first.grad.clone(), incr=m.incr.grad.clone(),
                paths=paths, final=final, lags0=state.get("lags"))


def _grad(run):
    return torch.cat([run["first"].flatten(), run["incr"].flatten()])


def test_lag_corners_by_hand():
    """Grid 0, 0.1, 0.2 (n_lag 3): r_-1 = 0.05 sits halfway in the first cell, r_-2 = 0.2 on the
    last node (bracket [1, 2], weight 1 on node 2), -1 clamps to node 0."""
    m, w = price_lags.lag_corners(torch.tensor([[0.05, 0.2], [-1.0, 0.15]], dtype=torch.float64), 0.0, 0.1, 3)
    # corner bits (b1, b2): node (i1 + b1) * 3 + (i2 + b2)
    assert m.tolist() == [[0 * 3 + 1, 0 * 3 + 2, 1 * 3 + 1, 1 * 3 + 2], [0 * 3 + 1, 0 * 3 + 2, 1 * 3 + 1, 1 * 3 + 2]]
    assert torch.allclose(w[0], torch.tensor([0.5 * 0.0, 0.5 * 1.0, 0.5 * 0.0, 0.5 * 1.0], dtype=torch.float64))
    assert torch.allclose(w[1], torch.tensor([1 * 0.5, 1 * 0.5, 0.0, 0.0], dtype=torch.float64))
    assert torch.allclose(w.sum(1), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("model", ["huggett", "ks"])
@pytest.mark.parametrize("L", [1, 2])
def test_lags_are_carried(model, L):
    """The lag a period uses is the rate cleared the period before (the initial lag in period 0);
    the final state holds the last L rates; the initial guess is the no-lag guess on every lag node."""
    m = _model(model, "torch", L)
    v = torch.cumsum(torch.cat([m.first, m.incr], -1), -1).detach()
    rows0 = v.shape[0] // m.M
    assert torch.equal(v.view(rows0, m.M, *v.shape[1:]), v.view(rows0, m.M, *v.shape[1:])[:, :1].expand(
        -1, m.M, *v.shape[1:]))
    run = _run(model, "torch", L)
    r, r_lag = run["paths"]["r"], run["paths"]["r_lag"]
    assert torch.equal(r_lag[0], run["lags0"][:, 0])
    assert torch.equal(r_lag[1:], r[:-1])
    want = torch.stack([r[-1 - l] for l in range(L)], 1)
    assert torch.equal(run["final"]["lags"], want)


@pytest.mark.parametrize("model", ["huggett", "ks"])
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("kernel", ["torch", pytest.param("fused", marks=needs_kernels)])
def test_lag_constant_table_reproduces_no_lags(model, L, kernel):
    """A table constant across the lag nodes is the model without lags: same objective, paths and
    histogram; the gradient summed over the lag nodes is the no-lag gradient. A lag-dependent table
    changes the outcome."""
    base = _run(model, kernel, 0)
    const = _run(model, kernel, L, lag_dependent=False)
    assert abs(const["obj"] - base["obj"]) < 1e-12
    for k, v in base["paths"].items():
        assert torch.allclose(const["paths"][k], v, atol=1e-12, rtol=1e-12), k
    assert torch.allclose(const["final"]["g"], base["final"]["g"], atol=1e-13)
    M = const["m"].M
    for name in ("first", "incr"):
        g = const[name]
        summed = g.view(g.shape[0] // M, M, *g.shape[1:]).sum(1)
        assert torch.allclose(summed, base[name], atol=1e-12 * float(base[name].abs().max()), rtol=1e-10), name
    dep = _run(model, kernel, L, lag_dependent=True)
    assert abs(dep["obj"] - const["obj"]) > 1e-4 * abs(base["obj"])
    assert float((dep["paths"]["r"] - const["paths"]["r"]).abs().max()) > 1e-5


@needs_kernels
@pytest.mark.parametrize("model", ["huggett", "ks"])
@pytest.mark.parametrize("L", [1, 2])
def test_fused_rollout_with_lags_matches_torch(model, L):
    """Kernel == torch autograd with a lag-dependent table: objective, every recorded path, final
    histogram and lags, gradient (Huggett in norm, as in test_fused: the kernel's clearing sum differs
    in rounding, so at a borrowing-limit node the two may take different one-sided derivatives)."""
    t = _run(model, "torch", L)
    f = _run(model, "fused", L)
    assert abs(f["obj"] - t["obj"]) < 1e-12
    assert set(f["paths"]) == set(t["paths"])
    for k in t["paths"]:
        assert f["paths"][k].shape == t["paths"][k].shape, k
        assert torch.allclose(f["paths"][k], t["paths"][k], atol=1e-12, rtol=1e-10), k
    assert torch.allclose(f["final"]["g"], t["final"]["g"], atol=1e-13)
    assert torch.allclose(f["final"]["lags"], t["final"]["lags"], atol=1e-14, rtol=0)
    gt, gf = _grad(t), _grad(f)
    rel = float((gf - gt).norm() / gt.norm())
    assert rel < (1e-3 if model == "huggett" else 1e-10), rel
    assert float(gt.norm()) > 0
    # every lag node the paths visited received gradient
    M = t["m"].M
    per_node = t["first"].view(-1, M, *t["first"].shape[1:]).abs().sum(dim=(0, 2, 3))
    assert int((per_node > 0).sum()) >= 2


@pytest.mark.parametrize("model", ["huggett", "ks"])
def test_euler_errors_with_lags(model):
    """With a lag-constant table the Euler errors (which move today's rate into tomorrow's r_-1) are the
    no-lag errors; with a lag-dependent one they differ."""
    errs = {}
    for key, L, dep in (("base", 0, False), ("const", 1, False), ("dep", 1, True)):
        m = _model(model, "torch", L)
        _perturb(m, dep)
        state = m.initial_state()
        if L:
            state["lags"] = _initial_lags(m)
        _, final, _ = m.rollout(state, m.draw_shocks(state, torch.Generator().manual_seed(3)))
        errs[key] = m.euler_errors(final, n_paths=4)[0]
    ok = ~torch.isnan(errs["base"])
    assert bool(ok.any())
    assert torch.equal(ok, ~torch.isnan(errs["const"]))
    assert torch.allclose(errs["const"][ok], errs["base"][ok], atol=1e-9)
    both = ok & ~torch.isnan(errs["dep"])
    assert float((errs["dep"][both] - errs["base"][both]).abs().max()) > 1e-3


@pytest.mark.parametrize("model", ["huggett", "ks"])
def test_training_with_lags_runs_and_reports(model):
    """A short smoke solve with one lag: the final state carries the lags, the summary has the
    welfare, and the impulse response (which builds its own states) runs."""
    from rbc_ray.structural import report
    res = solve(model, overrides={"price_lags": 1, "n_paths": 8, "max_epochs": 12, "warmup": 5, "threads": 1},
                smoke=True)
    assert res.state["lags"].shape == (8, 1)
    assert torch.equal(res.state["lags"][:, 0], res.paths["r"][-1].to(res.state["lags"].dtype))
    assert res.summary()["welfare"] < 0
    irf = report.impulse_response(res, horizon=5)
    assert irf["r"].shape == (5,)


@pytest.mark.parametrize("model,sets,needle", [
    ("huggett", {"price_lags": 3}, "price_lags"), ("ks", {"price_lags": -1}, "price_lags"),
    ("huggett", {"n_lag": 1}, "n_lag"), ("huggett-pe", {"price_lags": 1}, "price_lags"),
    ("hank", {"price_lags": 1}, "price_lags"), ("hank", {"n_lag": 4}, "n_lag")])
def test_bad_lag_settings_name_the_key(model, sets, needle):
    with pytest.raises(ConfigError, match=needle):
        calibration(model, sets)


def test_no_lags_keeps_the_state_and_tables():
    """price_lags = 0 (the default): no lag key in the state, tables of the no-lag shape."""
    m = _model("huggett", "torch", 0)
    assert "lags" not in m.initial_state()
    assert m.first.shape == (SIZES["huggett"]["n_z"], m.J, 1)
    k = _model("ks", "torch", 0)
    assert "lags" not in k.initial_state()
    assert k.share_table().shape == (SIZES["ks"]["n_w"], SIZES["ks"]["n_r"], k.J)


def test_consumption_equivalent_by_hand():
    """CRRA 2: u(c (1 + l)) = u(c) / (1 + l), so W = W0 / 1.05 is l = +5%; CRRA 3: u scales with
    (1 + l)^-2, W = W0 * 1.1^-2 is l = +10%; equal welfare is 0; log: exp(0.02) - 1."""
    assert abs(price_lags.consumption_equivalent(-1.0 / 1.05, -1.0, 2.0) - 0.05) < 1e-12
    assert abs(price_lags.consumption_equivalent(-2.0 * 1.1 ** -2, -2.0, 3.0) - 0.10) < 1e-12
    assert price_lags.consumption_equivalent(-0.7, -0.7, 2.0) == 0.0
    assert abs(price_lags.consumption_equivalent(1.02, 1.0, 1.0) - (2.718281828459045 ** 0.02 - 1)) < 1e-12


def test_welfare_discounts_population_utility():
    """(1 - beta) sum_t beta^t U_t averaged over paths: U = 1 for 3 periods at beta 0.5 is
    0.5 (1 + 0.5 + 0.25) = 0.875; a second path with U = 0 halves it."""
    U = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert abs(price_lags.welfare(U, 0.5) - 0.875 / 2) < 1e-12


def test_compare_lags_smoke():
    """compare_lags at a tiny size: a row per lag count with the Euler errors, moments of r and K,
    welfare, and a zero consumption equivalent for the reference."""
    rows = price_lags.compare_lags("ks", (0, 1), {"n_paths": 8, "max_epochs": 8, "warmup": 4, "threads": 1},
                                   smoke=True)
    assert list(rows) == [0, 1]
    for r in rows.values():
        for k in ("euler_mean_log10", "r_mean", "r_sd", "r_autocorr", "K_mean", "K_sd", "welfare", "epochs"):
            assert r[k] == r[k], k  # not NaN
        assert 0.02 <= r["r_mean"] <= 0.07
    assert rows[0]["ce_vs_ref"] == 0.0
    assert "| 1 |" in price_lags.markdown(rows)


@pytest.mark.parametrize("model", ["huggett", "ks"])
@pytest.mark.parametrize("kernel", ["torch", pytest.param("fused", marks=needs_kernels)])
def test_lag_gradient_same_bits_on_any_thread_count(model, kernel):
    """With lags the kernels sum only the slabs each block of paths touched (blocked_gradient_slabs)
    and torch picks rows with policy.rows: the gradient has the same bits on 1 and 2 threads and run to run."""
    def grad(threads):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            run = _run(model, kernel, 2, record=False)
            return _grad(run)
        finally:
            torch.set_num_threads(before)
    one, two, again = grad(1), grad(2), grad(2)
    assert float(one.abs().max()) > 0
    assert torch.equal(one, two) and torch.equal(two, again)
