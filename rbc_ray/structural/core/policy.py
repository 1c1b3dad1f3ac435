"""Policy tables monotone along the price axis: first value + cumulative increments.

A table of values v[..., K] (K price nodes on the last axis) is stored as `first` = v[..., :1] and
`incr` = diff(v) along K. The sign of `incr` is projected after every optimiser step, so v is
monotone in the price by construction; values are clipped to bounds at the same time.
"""

from __future__ import annotations

import math

import torch


def to_params(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, incr) leaf tensors from a value table [..., K]."""
    first = values[..., :1].clone().requires_grad_(True)
    incr = torch.diff(values, dim=-1).clone().requires_grad_(True)
    return first, incr


def to_values(first: torch.Tensor, incr: torch.Tensor) -> torch.Tensor:
    """Value table [..., K] = first + cumsum of increments (differentiable)."""
    return torch.cumsum(torch.cat([first, incr], dim=-1), dim=-1)


@torch.no_grad()
def project(first: torch.Tensor, incr: torch.Tensor, lo: float, hi: float, decreasing: bool) -> None:
    """In place: values clipped to [lo, hi] and made monotone (non-increasing if `decreasing`)."""
    v = to_values(first, incr).clamp(lo, hi)
    v = torch.cummin(v, dim=-1).values if decreasing else torch.cummax(v, dim=-1).values
    first.copy_(v[..., :1])
    incr.copy_(torch.diff(v, dim=-1))


@torch.no_grad()
def clip_box(table: torch.Tensor, lo: float, hi: float) -> None:
    """In place clip of an unconstrained table (hours, inflation) to its bounds."""
    table.clamp_(lo, hi)


class _TableGather(torch.autograd.Function):
    """table.flatten()[index], its gradient summed by bincount (serially, in index order)."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.shape = table.shape
        return table.reshape(-1)[index]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (index,) = ctx.saved_tensors
        flat = torch.bincount(index.reshape(-1), weights=grad.reshape(-1), minlength=math.prod(ctx.shape))
        return flat.to(grad.dtype).view(ctx.shape), None


def gather(table: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """table[rows, cols] (indices broadcast) for a small 2-D table, with a reproducible gradient.

    torch's CPU backward of advanced indexing adds float gradients with parallel atomics once
    there are 32768 or more of them, so the sum's order (and training's last bits) changed from
    run to run; this backward sums in index order."""
    rows, cols = torch.broadcast_tensors(rows, cols)
    return _TableGather.apply(table, rows * table.shape[1] + cols)


def rows(table: torch.Tensor, i: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """table[i, k] [N, J] for a table [A, B, J] and row indices i, k [N], with a reproducible gradient.

    index_select's backward adds whole rows in index order (an index_add), where the backward of
    `table[i, k]` adds with parallel atomics on CPU once 32768 values meet."""
    return table.reshape(-1, table.shape[-1]).index_select(0, (i * table.shape[1] + k).reshape(-1))
