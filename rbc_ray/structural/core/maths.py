"""Small formulas every SRL model shares: the CRRA utility, brackets on uniform grids, the horizon."""

from __future__ import annotations

import math

import torch


def crra_utility(c: torch.Tensor, crra: float) -> torch.Tensor:
    """u(c) = c^(1 - crra) / (1 - crra), log c when crra = 1."""
    return torch.log(c) if crra == 1.0 else c.pow(1.0 - crra) / (1.0 - crra)


def uniform_bracket(grid_min: float, step: float, n: int, x: torch.Tensor):
    """(lo, weight on lo+1) of x on a uniform grid; outside the grid the end node is used."""
    pos = ((x - grid_min) / step).clamp(0.0, n - 1.0)
    lo = pos.long().clamp(max=n - 2)
    return lo, pos - lo


def horizon(beta: float, e_trunc: float) -> int:
    """T = ceil(log(e_trunc) / log(beta)): the periods after which beta^t falls below e_trunc."""
    return int(math.ceil(math.log(e_trunc) / math.log(beta)))
