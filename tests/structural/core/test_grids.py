"""Grids: Tauchen chains, stationary moments, the asset grid and its closed-form locator."""

import math

import torch
from hypothesis import given, settings, strategies as st

from rbc_ray.structural.core import grids


def test_tauchen_rows_sum_to_one_and_levels_are_exp_of_symmetric_grid():
    y, P = grids.tauchen(0.6, 0.2, 3)
    assert torch.allclose(P.sum(1), torch.ones(3, dtype=P.dtype), atol=1e-14)
    assert (P >= 0).all()
    logs = torch.log(y)
    # grid +-3 sd, no mean normalisation
    assert torch.allclose(logs, torch.tensor([-0.6, 0.0, 0.6], dtype=logs.dtype), atol=1e-12)


def test_tauchen_stationary_moments_match_ar1_formula():
    rho, sd = 0.9, 0.02
    z, P = grids.tauchen(rho, sd, 41)
    pi = grids.stationary(P)
    x = torch.log(z)
    mean = (pi * x).sum()
    var = (pi * (x - mean) ** 2).sum()
    assert abs(float(mean)) < 1e-10
    assert abs(math.sqrt(float(var)) / sd - 1.0) < 0.05  # unconditional sd
    ex_next = P @ x  # E[x' | x]
    cov = (pi * (x - mean) * (ex_next - mean)).sum()
    assert abs(float(cov / var) - rho) < 0.01  # first-order autocorrelation


def test_zero_sd_gives_a_single_state():
    z, P = grids.tauchen(0.9, 0.0, 30)
    assert z.tolist() == [1.0] and P.tolist() == [[1.0]]


def test_asset_grid_endpoints_monotone_and_dense_near_limit():
    b = grids.asset_grid(-1.0, 50.0, 200)
    assert float(b[0]) == -1.0 and float(b[-1]) == 50.0
    d = torch.diff(b)
    assert (d > 0).all() and (torch.diff(d) > 0).all()  # spacing grows: dense near the limit


@settings(max_examples=30, deadline=None)
@given(st.floats(-2.0, 0.0), st.integers(5, 300))
def test_asset_locator_matches_binary_search(b_min, n):
    b = grids.asset_grid(b_min, 40.0, n)
    x = b_min + (40.0 - b_min) * torch.rand(500, dtype=torch.float64)
    lo = grids.asset_locator(b_min, 40.0, n)(x)
    ref = (torch.searchsorted(b, x, right=True) - 1).clamp(0, n - 2)
    # identical except possibly exactly at a node (then both brackets are valid)
    assert ((lo == ref) | ((b[ref] - x).abs() < 1e-9) | ((b[lo + 1] - x).abs() < 1e-9)).all()


def test_rate_chain_rows_and_conditional_mean():
    r = torch.linspace(0.01, 0.06, 20, dtype=torch.float64)
    P = grids.rate_chain(r, 0.038, 0.8, 0.02)
    assert torch.allclose(P.sum(1), torch.ones(20, dtype=P.dtype), atol=1e-12)
    cond_mean = P @ r
    target = 0.2 * 0.038 + 0.8 * r
    interior = (target > 0.02) & (target < 0.05)
    assert (cond_mean[interior] - target[interior]).abs().max() < 1.5e-3  # within the grid step
