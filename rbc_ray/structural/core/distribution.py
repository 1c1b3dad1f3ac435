"""Young's lottery: move a histogram on the (b, y) grid with a continuous savings policy.

Layout: a distribution is a tensor [N, J] over N simulated paths with J = n_b * n_y and the flat
index j = i_b * n_y + i_y (assets major). Savings b' of state j are split between the two bracketing
asset nodes (linear weights, differentiable in b'), then the income transition P_y moves y.
That is g_{t+1} = A_pi^T g_t without ever forming A: two scatter_adds and one small matmul.
"""

from __future__ import annotations

import torch


def lottery(b_grid: torch.Tensor, b_next: torch.Tensor, locate=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bracketing index `lo` (long, same shape as b_next) and the weight on node lo+1.

    b' outside [b_grid[0], b_grid[-1]] is clamped to the end nodes. The weight is differentiable
    in b' (gradient zero where clamped); the index is not (it is piecewise constant).
    `locate` (from grids.asset_locator) replaces the binary search by the grid's closed-form
    inverse; rounding at a node is absorbed by clamping the weight to [0, 1].
    """
    nb = b_grid.numel()
    bn = b_next.clamp(min=float(b_grid[0]), max=float(b_grid[-1]))
    if locate is None:
        lo = (torch.searchsorted(b_grid, bn.detach().contiguous(), right=True) - 1).clamp(0, nb - 2)
    else:
        lo = locate(bn.detach())
    left, right = b_grid[lo], b_grid[lo + 1]
    w_hi = ((bn - left) / (right - left)).clamp(0.0, 1.0)
    return lo, w_hi


def income_index(n_b: int, n_y: int, device=None) -> torch.Tensor:
    """i_y of every flat state j (long [J])."""
    return torch.arange(n_y, device=device).repeat(n_b)


def young_step(g: torch.Tensor, lo: torch.Tensor, w_hi: torch.Tensor, P_y: torch.Tensor,
               y_index: torch.Tensor) -> torch.Tensor:
    """One period of the histogram: g [N, J] -> [N, J], mass conserving.

    `lo`, `w_hi` [N, J] from `lottery`; `P_y` [n_y, n_y] row-stochastic; `y_index` [J].
    """
    n_y = P_y.shape[0]
    idx = lo * n_y + y_index
    mass_hi = g * w_hi
    out = torch.zeros_like(g).scatter_add(1, idx, g - mass_hi).scatter_add(1, idx + n_y, mass_hi)
    N, J = g.shape
    return (out.view(N, J // n_y, n_y) @ P_y).view(N, J)


def point_mass(b_grid: torch.Tensor, b0: float, y_dist: torch.Tensor) -> torch.Tensor:
    """Distribution [J] with all assets at b0 (lottery-split) and income at `y_dist`."""
    lo, w = lottery(b_grid, torch.tensor([b0], dtype=b_grid.dtype, device=b_grid.device))
    nb, ny = b_grid.numel(), y_dist.numel()
    m = torch.zeros(nb, dtype=b_grid.dtype, device=b_grid.device)
    m[lo] += 1 - w
    m[lo + 1] += w
    return (m[:, None] * y_dist[None, :].to(m)).reshape(nb * ny)
