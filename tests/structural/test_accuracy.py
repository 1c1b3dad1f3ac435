"""Accuracy measures (rbc_ray/structural/accuracy.py): the perceived-law-of-motion regression, Den Haan
errors, the Euler-error share above 1% and the HANK Phillips-curve residual, on series whose answer is
known by hand, plus the JSON fields of smoke-size solves."""

import math

import numpy as np
import pytest
import torch

from rbc_ray.structural import accuracy as acc
from rbc_ray.structural import diagnostics, solve


def _chain(n_z, T, N, rng, stay=0.8):
    """Node indices [T, N] of a sticky Markov chain (stay with prob `stay`, else a uniform node)."""
    nd = np.empty((T, N), dtype=np.int64)
    nd[0] = rng.integers(0, n_z, N)
    for t in range(1, T):
        move = rng.random(N) > stay
        nd[t] = np.where(move, rng.integers(0, n_z, N), nd[t - 1])
    return nd


def _law_path(nd, a, b, x0, noise=None):
    """log K [T, N] from log K_{t+1} = a[z_t] + b[z_t] log K_t (+ noise[t])."""
    T, N = nd.shape
    lk = np.empty((T, N))
    lk[0] = x0
    for t in range(T - 1):
        lk[t + 1] = a[nd[t]] + b[nd[t]] * lk[t] + (0.0 if noise is None else noise[t])
    return lk


def test_exact_per_node_law_gives_r2_one_and_no_den_haan_error():
    rng = np.random.default_rng(0)
    n_z = 4
    a = np.array([0.30, 0.20, 0.25, 0.10])
    b = np.array([0.80, 0.88, 0.85, 0.95])  # node-specific slopes: the pooled law is not exact
    nd = _chain(n_z, 800, 6, rng)
    lk = _law_path(nd, a, b, rng.uniform(1.0, 2.0, 6))
    log_z = np.log(np.array([0.95, 0.98, 1.02, 1.05]))
    fit = acc.fit_plm(lk, nd, log_z, min_obs=50)
    assert fit.fitted.all()
    np.testing.assert_allclose(fit.const, a, atol=1e-9)
    np.testing.assert_allclose(fit.slope, b, atol=1e-9)
    assert fit.r2_min() == pytest.approx(1.0, abs=1e-12)
    assert fit.pooled_r2 < 1.0 - 1e-6
    out = acc.plm_summary(lk, nd, log_z, min_obs=50)
    assert out["plm_r2_mean_by_z"] == pytest.approx(1.0, abs=1e-12)
    assert out["plm_z_nodes_fitted"] == 4
    assert out["den_haan_max_pct"] < 1e-9 and out["den_haan_mean_pct"] < 1e-9


def test_pooled_law_recovers_its_coefficients():
    """log K' = a0 + a1 log K + a2 log z exactly: pooled R^2 = 1 and the three coefficients back."""
    rng = np.random.default_rng(1)
    log_z = np.log(np.linspace(0.94, 1.06, 7))
    a0, a1, a2 = 0.15, 0.9, 0.4
    nd = _chain(7, 600, 8, rng)
    lk = _law_path(nd, a0 + a2 * log_z, np.full(7, a1), 1.5)
    out = acc.plm_summary(lk, nd, log_z, min_obs=30)
    assert out["plm_r2"] == pytest.approx(1.0, abs=1e-12)
    assert (out["plm_pooled_const"], out["plm_pooled_log_K"], out["plm_pooled_log_z"]) == pytest.approx(
        (a0, a1, a2), abs=1e-9)


def test_noisy_ar1_law_has_r2_equal_to_slope_squared():
    """One node, log K' = a + b log K + e with iid e: in the stationary AR(1), var(log K) =
    var(e) / (1 - b^2), so R^2 = 1 - var(e) / var(log K) = b^2."""
    rng = np.random.default_rng(2)
    a, b, sd = 0.2, 0.9, 0.01
    T, N = 20_000, 4
    mean = a / (1 - b)
    x0 = mean + rng.normal(0, sd / math.sqrt(1 - b * b), N)  # start in the stationary distribution
    lk = _law_path(np.zeros((T, N), dtype=np.int64), np.array([a]), np.array([b]), x0, rng.normal(0, sd, (T, N)))
    fit = acc.fit_plm(lk, np.zeros((T, N), dtype=np.int64), np.zeros(1))
    assert fit.r2[0] == pytest.approx(b * b, abs=0.01)
    assert fit.slope[0] == pytest.approx(b, abs=0.01)
    assert fit.const[0] == pytest.approx(a, abs=0.01 * mean)


def test_den_haan_of_a_biased_law_by_hand():
    """Actual log K constant at x; the law's fixed point is x + delta / (1 - b), so the forecast
    drifts: log K^_t - x = delta (1 + b + ... + b^(t-1)). With b = 1/2, delta = 0.01 the errors at
    t = 1..4 are 1, 1.5, 1.75, 1.875 percent."""
    x, b, delta = 1.5, 0.5, 0.01
    lk = np.full((5, 3), x)
    nd = np.zeros((5, 3), dtype=np.int64)
    err = acc.den_haan(lk, nd, np.array([(1 - b) * x + delta]), np.array([b]))
    np.testing.assert_allclose(err[:, 0], [1.0, 1.5, 1.75, 1.875], rtol=1e-12)
    assert err.max() == pytest.approx(1.875) and err.mean() == pytest.approx((1 + 1.5 + 1.75 + 1.875) / 4)


def test_den_haan_is_never_reanchored():
    """Actual K jumps at t = 2; an exact-before-the-jump law keeps forecasting the old path."""
    lk = np.array([[1.0], [1.0], [1.2], [1.2]])
    err = acc.den_haan(lk, np.zeros((4, 1), dtype=np.int64), np.array([0.0]), np.array([1.0]))
    np.testing.assert_allclose(err[:, 0], [0.0, 20.0, 20.0], atol=1e-12)


def test_thin_nodes_fall_back_to_the_pooled_law():
    rng = np.random.default_rng(3)
    nd = _chain(3, 300, 4, rng)
    nd[:, :] = np.where(nd == 2, 1, nd)
    nd[5, 0] = 2  # node 2 seen once: below min_obs
    log_z = np.log(np.array([0.97, 1.0, 1.03]))
    lk = _law_path(nd, np.array([0.1, 0.12, 0.14]), np.array([0.9, 0.9, 0.9]), 1.2)
    fit = acc.fit_plm(lk, nd, log_z, min_obs=20)
    assert list(fit.fitted) == [True, True, False] and fit.count[2] == 1
    const, slope = fit.law(log_z)
    assert const[2] == pytest.approx(fit.pooled[0] + fit.pooled[2] * log_z[2])
    assert slope[2] == pytest.approx(fit.pooled[1])


def test_ols_without_variation():
    coef, r2 = acc.ols(np.array([1.0, 2.0, 3.0, 5.0]), [np.array([0.0, 1.0, 2.0, 4.0]), np.ones(4)])
    assert coef[:2] == pytest.approx([1.0, 1.0]) and math.isnan(coef[2]) and r2 == pytest.approx(1.0)
    _, r2 = acc.ols(np.full(5, 2.0), [np.arange(5.0)])
    assert math.isnan(r2)


def test_nearest_node():
    grid = torch.tensor([0.9, 1.0, 1.1])
    assert acc.nearest_node(torch.tensor([[1.0, 0.9], [1.1, 1.04]]), grid).tolist() == [[1, 0], [2, 1]]


def test_euler_share_above_one_percent_by_hand():
    """Mass on the defined set: 0.1 + 0.2 + 0.4 + 0.25 + 0.25 + 0.25 = 1.45; above 10^-2 (strictly):
    the -1.5 (0.2) and the -1 (0.25), so the share is 0.45 / 1.45; -2 itself is not above."""
    nan = float("nan")
    err = torch.tensor([[-3.0, -1.5, nan, -2.5], [-1.0, nan, -4.0, -2.0]])
    g = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    assert acc.euler_share_above(err, g) == pytest.approx(0.45 / 1.45)
    mean, mx, share = diagnostics.euler_stats(err, g)
    assert share == pytest.approx(0.45 / 1.45) and mx == -1.0
    assert mean == pytest.approx((-0.3 - 0.3 - 1.0 - 0.25 - 1.0 - 0.5) / 1.45)
    assert math.isnan(acc.euler_share_above(torch.full((2, 2), nan), torch.ones(2, 2)))


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_phillips_residual_stationary_by_hand():
    """pi constant in every next state, Y unchanged: the residual times theta is
    theta pi (1 - beta) - eps (w/z - (eps-1)/eps)."""
    theta, eps, beta = 100.0, 10.0, 0.975
    pi, w, z, Y = 0.002, 0.95, 1.05, 0.9
    prob = _t([[0.2, 0.5, 0.3]])
    res = acc.phillips_residual(_t([pi]), _t([w]), _t([z]), _t([Y]),
                                prob, _t([[pi] * 3]), _t([[Y] * 3]), theta, eps, beta)
    hand = (theta * pi * (1 - beta) - eps * (w / z - (eps - 1) / eps)) / theta
    assert float(res[0]) == pytest.approx(hand, rel=1e-12)


def test_phillips_residual_two_states_by_hand():
    """E[pi' Y'/Y] = 0.25 * 0.01 * 1.1 + 0.75 * (-0.004) * 0.95 = -0.00010; with w/z = 0.9 (marginal
    cost at its flexible-price value) the residual is pi - beta E = 0.003 + 0.99 * 0.0001."""
    res = acc.phillips_residual(_t([0.003]), _t([0.9]), _t([1.0]),
                                _t([1.0]), _t([[0.25, 0.75]]),
                                _t([[0.01, -0.004]]), _t([[1.1, 0.95]]), 50.0, 10.0, 0.99)
    assert float(res[0]) == pytest.approx(0.003 + 0.99 * 0.0001, rel=1e-12)


def test_ks_smoke_solve_reports_the_law_of_motion_fields():
    res = solve("ks", {"max_epochs": 40, "threads": 1}, smoke=True)
    out = res.summary()
    for k in acc.KS_KEYS:
        assert k in out and out[k] is not None and math.isfinite(out[k]), (k, out.get(k))
    assert 0.0 < out["plm_r2"] <= 1.0
    assert 0.0 < out["plm_r2_min_by_z"] <= out["plm_r2_mean_by_z"] <= 1.0
    assert 1 <= out["plm_z_nodes_fitted"] <= res.calibration.n_z
    assert 0.0 <= out["den_haan_mean_pct"] <= out["den_haan_max_pct"]
    assert 0.0 < out["plm_pooled_log_K"] < 1.0  # a stable law
    assert 0.0 <= out["euler_error_share_above_1pct"] <= 1.0
    for k in acc.HANK_KEYS:
        assert out[k] is None


def test_hank_smoke_reports_the_phillips_residual(hank_smoke):
    out = hank_smoke.summary()
    for k in acc.HANK_KEYS + ("labour_gap_mean", "labour_gap_max", "euler_error_share_above_1pct"):
        assert out[k] is not None and math.isfinite(out[k]), k
    assert 0.0 <= out["phillips_residual_mean"] <= out["phillips_residual_max"]
    assert out["phillips_residual_max"] < 0.05  # inflation units; |pi| <= pi_max = 0.1
    assert 0.0 <= out["euler_error_share_above_1pct"] <= 1.0
    for k in acc.KS_KEYS:
        assert out[k] is None


def test_huggett_reports_the_euler_share_and_null_law_of_motion(huggett_risk):
    out = huggett_risk.summary()
    assert 0.0 <= out["euler_error_share_above_1pct"] <= 1.0
    for k in acc.KS_KEYS + acc.HANK_KEYS:
        assert out[k] is None


def test_accuracy_switch_leaves_the_fields_null():
    res = solve("ks", {"max_epochs": 3, "warmup": 1, "n_paths": 4, "threads": 1}, smoke=True, accuracy=False)
    assert all(res.summary()[k] is None for k in acc.KS_KEYS)


def test_hank_phillips_terms_match_the_simulation():
    """This period's (pi, w, z, Y) and next period's (pi, Y) at the realised next state, as the
    Phillips residual computes them, are the ones a rollout records at t = 0 and t = 1 (float64)."""
    res = solve("hank", {"max_epochs": 5, "warmup": 2, "n_paths": 4, "dtype": "float64", "threads": 1},
                smoke=True, euler=False, accuracy=False)
    m, st = res.solver, res.state
    shocks = m.draw_shocks(st, torch.Generator().manual_seed(3))
    with torch.no_grad():
        _, _, rec = m.rollout(st, shocks, record=True)
    terms = acc.hank_phillips_terms(m, st["g"], st["s"])
    for k in ("pi", "w", "z", "Y"):
        torch.testing.assert_close(terms[k], rec[k][0].double().cpu(), rtol=1e-9, atol=1e-12)
    col = [terms["states"].tolist().index(int(s1)) for s1 in shocks["s"][1]]
    rows = torch.arange(len(col))
    torch.testing.assert_close(terms["pi_next"][rows, col], rec["pi"][1].double().cpu(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(terms["Y_next"][rows, col], rec["Y"][1].double().cpu(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(terms["prob"].sum(-1), torch.ones(len(col), dtype=torch.float64))
