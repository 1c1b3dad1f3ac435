"""Validation of the four economies against the independent EGM solver, identities and the spec."""

import math

import torch

from rbc_ray.structural import solve


def test_huggett_stationary_r_agrees_with_egm(huggett_stationary, huggett_stationary_egm):
    res, ref = huggett_stationary, huggett_stationary_egm
    assert res.converged
    assert abs(ref.assets) < 1e-6  # the oracle itself clears the bond market
    assert abs(res.mean_r - ref.r) < 2e-4, (res.mean_r, ref.r)
    assert res.clearing_residual_max <= 1e-5


def test_huggett_stationary_euler_errors_are_small(huggett_stationary):
    assert huggett_stationary.euler_error_mean_log10 < -2.5
    assert math.isfinite(huggett_stationary.euler_error_max_log10)


def test_ks_stationary_capital_agrees_with_egm(ks_stationary, ks_stationary_egm):
    res, ref = ks_stationary, ks_stationary_egm
    assert res.converged
    assert abs(res.mean_K / ref.K - 1.0) < 0.01, (res.mean_K, ref.K)
    # prices follow from K exactly
    alpha, delta = res.calibration.alpha, res.calibration.delta
    assert abs(res.mean_r - (alpha * res.mean_K ** (alpha - 1) - delta)) < 1e-4


def test_huggett_aggregate_risk_identity_C_equals_z_Ey(huggett_risk):
    p = huggett_risk.paths
    resid = p["resid"].abs().max()
    assert resid <= 1e-5
    gap = (p["C"] - p["z"] * p["Ey"]).abs().max()
    # C_t - z_t E[y] = E_g[b] - B'/(1+r) = resid_{t-1} - resid_t/(1+r_t) (lottery preserves means)
    assert gap <= 2 * resid + 2e-6, (float(gap), float(resid))
    assert p["z"].std() > 0  # aggregate risk is really there


def test_huggett_rate_moves_against_tfp(huggett_risk):
    r, z = huggett_risk.paths["r"].double(), huggett_risk.paths["z"].double()
    rc, zc = r - r.mean(), z - z.mean()
    corr = (rc * zc).sum() / (rc.norm() * zc.norm())
    assert corr < 0  # good times: more saving supply, lower r


def test_policy_stays_monotone_in_price(huggett_risk):
    m = huggett_risk.solver
    with torch.no_grad():
        share = m.first.detach().new_tensor(0) + torch.cumsum(torch.cat([m.first, m.incr], -1), -1)
    assert (torch.diff(share, dim=-1) <= 1e-7).all()
    assert share.min() >= 0 and share.max() <= 1 + 1e-6


def test_hank_bond_gap_below_half_percent(hank_smoke):
    res = hank_smoke
    assert res.extra["bond_gap_max"] < 0.005, res.extra
    # the interpolation error itself: labour supplied vs needed at the cleared prices
    assert res.extra["labour_gap_mean"] < 0.02, res.extra  # coarse smoke w grid (14 nodes)
    assert abs(res.mean_inflation) < 0.03
    assert 0.0 <= res.mean_r <= 0.05 and 0.7 <= res.mean_w <= 1.1


def test_partial_equilibrium_huggett_runs_and_clears_nothing():
    res = solve("huggett-pe", {"n_b": 40, "n_r": 8, "n_paths": 8, "max_epochs": 8, "warmup": 2}, smoke=True)
    r = res.paths["r"]
    assert set(torch.unique(r).tolist()) <= set(res.solver.r_grid.tolist())  # r is the exogenous chain
    assert res.epochs == 8 and math.isfinite(res.euler_error_mean_log10)
