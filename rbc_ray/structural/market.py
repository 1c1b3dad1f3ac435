"""Market clearing by interpolation on the price grid: no root-finder, no inner loop.

Given an aggregate schedule S[n, k] (e.g. bond demand, or excess labour supply) at every price
node k of path n, the clearing price is linearly interpolated between the two nodes that bracket
the target. Households then act with the same two weights, so the market clears exactly in the
blended action whenever the target lies inside the grid (a residual appears only when it does not).
"""

from __future__ import annotations

import torch


def bracket(S: torch.Tensor, target: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo [N] long, w_hi [N]) with S[lo] + w_hi (S[lo+1] - S[lo]) = target, S increasing in k.

    The bracket is the last node whose S is below the target (clamped to the grid); w_hi is clamped
    to [0, 1], so a target outside the schedule's range yields the end node and a residual.
    """
    S = S.detach()
    K = S.shape[-1]
    excess = S - torch.as_tensor(target, dtype=S.dtype, device=S.device).reshape(-1, 1)
    lo = ((excess < 0).sum(-1) - 1).clamp(0, K - 2)
    e_lo = excess.gather(-1, lo[:, None]).squeeze(-1)
    e_hi = excess.gather(-1, (lo + 1)[:, None]).squeeze(-1)
    denom = e_hi - e_lo
    safe = torch.where(denom.abs() > 0, denom, torch.ones_like(denom))
    w_hi = torch.where(denom.abs() > 0, -e_lo / safe, torch.zeros_like(denom)).clamp(0.0, 1.0)
    return lo, w_hi


def blend(grid: torch.Tensor, lo: torch.Tensor, w_hi: torch.Tensor) -> torch.Tensor:
    """The interpolated price grid[lo] (1 - w_hi) + grid[lo+1] w_hi."""
    return grid[lo] * (1 - w_hi) + grid[lo + 1] * w_hi
