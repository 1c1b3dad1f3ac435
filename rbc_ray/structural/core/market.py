"""Market clearing by interpolation on the price grid: no root-finder, no inner loop.

Given an aggregate schedule S[n, k] (e.g. bond demand, or excess labour supply) at every price
node k of path n, the clearing price is linearly interpolated between the two nodes that bracket
the target. Households then act with the same two weights, so the market clears exactly in the
blended action whenever the target lies inside the grid (a residual appears only when it does not).
"""

from __future__ import annotations

import torch


def bracket(S: torch.Tensor, target: torch.Tensor | float,
            extrapolate: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo [N] long, w_hi [N]) with S[lo] + w_hi (S[lo+1] - S[lo]) = target, S increasing in k.

    The bracket is the first upward crossing of the target (for a monotone schedule: the last node
    below it); without a crossing, the end segment nearest the target is used; w_hi is clamped
    to [-extrapolate, 1 + extrapolate]. With the default 0 a target outside the schedule's range
    yields the end node and a residual; extrapolate > 0 continues the end segment linearly that many
    grid steps beyond the grid (HANK, whose clearing wage can leave the spec's w grid).
    """
    S = S.detach()
    K = S.shape[-1]
    excess = S - torch.as_tensor(target, dtype=S.dtype, device=S.device).reshape(-1, 1)
    below = excess < 0
    crossing = below[:, :-1] & ~below[:, 1:]  # upward crossings (robust to a non-monotone schedule)
    first = torch.argmax(crossing.to(torch.int8), dim=-1)
    lo = torch.where(crossing.any(-1), first, (below.sum(-1) - 1).clamp(0, K - 2))
    e_lo = excess.gather(-1, lo[:, None]).squeeze(-1)
    e_hi = excess.gather(-1, (lo + 1)[:, None]).squeeze(-1)
    denom = e_hi - e_lo
    safe = torch.where(denom.abs() > 0, denom, torch.ones_like(denom))
    w_hi = torch.where(denom.abs() > 0, -e_lo / safe, torch.zeros_like(denom))
    # no crossing: stay at (or extrapolate beyond) the end node on the side the target lies
    all_below, all_above = below.all(-1), (~below).all(-1)
    w_hi = torch.where(all_below, w_hi.clamp(min=1.0), w_hi)
    w_hi = torch.where(all_above, w_hi.clamp(max=0.0), w_hi)
    w_hi = torch.where(torch.isfinite(w_hi), w_hi, torch.zeros_like(w_hi))
    w_hi = w_hi.clamp(-extrapolate, 1.0 + extrapolate)
    return lo, w_hi


def blend(grid: torch.Tensor, lo: torch.Tensor, w_hi: torch.Tensor) -> torch.Tensor:
    """The interpolated price grid[lo] (1 - w_hi) + grid[lo+1] w_hi."""
    return grid[lo] * (1 - w_hi) + grid[lo + 1] * w_hi
