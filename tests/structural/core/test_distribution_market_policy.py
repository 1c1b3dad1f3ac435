"""Young's lottery, clearing by interpolation and the monotone policy parameterisation (hand cases)."""

import torch
from hypothesis import given, settings, strategies as st

from rbc_ray.structural.core import distribution as D
from rbc_ray.structural.core import market, policy


def test_young_hand_case():
    b_grid = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    P_y = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    y_index = D.income_index(3, 2)
    g = torch.zeros(1, 6, dtype=torch.float64)
    g[0, 0] = 1.0  # all mass at (b=0, y=0)
    b_next = torch.full((1, 6), 0.25, dtype=torch.float64)
    lo, w = D.lottery(b_grid, b_next)
    g1 = D.young_step(g, lo, w, P_y, y_index).view(3, 2)
    expected = torch.tensor([[0.75 * 0.9, 0.75 * 0.1], [0.25 * 0.9, 0.25 * 0.1], [0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(g1, expected, atol=1e-15)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(4, 40), st.integers(1, 4), st.integers(0, 10_000))
def test_young_conserves_mass_and_mean_assets(N, nb, ny, seed):
    gen = torch.Generator().manual_seed(seed)
    b_grid = torch.sort(torch.rand(nb, generator=gen, dtype=torch.float64) * 10).values
    b_grid[0], b_grid[-1] = -1.0, 12.0
    P_y = torch.rand(ny, ny, generator=gen, dtype=torch.float64)
    P_y = P_y / P_y.sum(1, keepdim=True)
    g = torch.rand(N, nb * ny, generator=gen, dtype=torch.float64)
    g = g / g.sum(1, keepdim=True)
    b_next = -1.0 + 13.0 * torch.rand(N, nb * ny, generator=gen, dtype=torch.float64)
    lo, w = D.lottery(b_grid, b_next)
    g1 = D.young_step(g, lo, w, P_y, D.income_index(nb, ny))
    assert torch.allclose(g1.sum(1), torch.ones(N, dtype=g1.dtype), atol=1e-12)
    assert (g1 >= -1e-15).all()
    mean_next = (g1.view(N, nb, ny).sum(2) * b_grid).sum(1)
    assert torch.allclose(mean_next, (g * b_next.clamp(-1.0, 12.0)).sum(1), atol=1e-11)


def test_young_is_differentiable_in_savings():
    b_grid = torch.linspace(0, 4, 5, dtype=torch.float64)
    g = torch.full((1, 5), 0.2, dtype=torch.float64)
    b_next = torch.tensor([[0.5, 1.5, 2.2, 3.1, 3.9]], dtype=torch.float64, requires_grad=True)
    lo, w = D.lottery(b_grid, b_next)
    g1 = D.young_step(g, lo, w, torch.ones(1, 1, dtype=torch.float64), D.income_index(5, 1))
    (g1 * b_grid).sum().backward()  # mean assets next period = sum g b'
    assert torch.allclose(b_next.grad, g, atol=1e-14)


def test_fast_locator_gives_same_lottery():
    from rbc_ray.structural.core import grids
    b_grid = grids.asset_grid(-1.0, 50.0, 120)
    x = -1.0 + 51.0 * torch.rand(3, 400, dtype=torch.float64)
    lo1, w1 = D.lottery(b_grid, x)
    lo2, w2 = D.lottery(b_grid, x, grids.asset_locator(-1.0, 50.0, 120))
    v1 = b_grid[lo1] * (1 - w1) + b_grid[lo1 + 1] * w1
    v2 = b_grid[lo2] * (1 - w2) + b_grid[lo2 + 1] * w2
    assert torch.allclose(v1, x) and torch.allclose(v2, x)


def test_clearing_interpolation_hand_case():
    S = torch.tensor([[-2.0, -1.0, 1.0, 3.0], [0.0, 1.0, 2.0, 3.0]], dtype=torch.float64)
    lo, w = market.bracket(S, torch.tensor([0.0, 2.5], dtype=torch.float64))
    assert lo.tolist() == [1, 2] and torch.allclose(w, torch.tensor([0.5, 0.5], dtype=torch.float64))
    grid = torch.tensor([0.01, 0.02, 0.03, 0.04], dtype=torch.float64)
    assert torch.allclose(market.blend(grid, lo, w), torch.tensor([0.025, 0.035], dtype=torch.float64))
    # the blended schedule hits the target exactly
    S_star = S.gather(1, lo[:, None]).squeeze(1) * (1 - w) + S.gather(1, (lo + 1)[:, None]).squeeze(1) * w
    assert torch.allclose(S_star, torch.tensor([0.0, 2.5], dtype=torch.float64))


def test_clearing_outside_the_grid_clamps_to_the_end_node():
    S = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    lo, w = market.bracket(S, 0.0)
    assert lo.tolist() == [0] and float(w) == 0.0
    lo, w = market.bracket(S, 10.0)
    assert lo.tolist() == [1] and float(w) == 1.0


def test_monotone_policy_roundtrip_and_projection():
    v = torch.rand(4, 6, 7, dtype=torch.float64)
    first, incr = policy.to_params(v)
    assert torch.allclose(policy.to_values(first, incr), v)
    with torch.no_grad():
        incr += 0.3 * torch.randn_like(incr)
        first += 0.5
    policy.project(first, incr, 0.0, 1.0, decreasing=True)
    out = policy.to_values(first, incr)
    assert (torch.diff(out, dim=-1) <= 1e-15).all()
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-15
