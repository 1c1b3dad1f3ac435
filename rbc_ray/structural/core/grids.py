"""Grids: double-exponential assets, Tauchen chains, the partial-equilibrium interest-rate chain.

Shared by the SRL solver and the independent EGM solver (the only code they share).
All functions return float64 CPU tensors; callers move them to their device/dtype.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

_F64 = torch.float64


def asset_grid(b_min: float, b_max: float, n: int) -> torch.Tensor:
    """Double-exponential grid dense near the borrowing limit:
    b_min + geomspace(pivot, (b_max - b_min) + pivot, n) - pivot, pivot = max(|b_min|, 0.25).

    The spec writes geomspace(bmin+pivot, bmax+pivot, n) - pivot, which is undefined for
    b_min = -pivot (Huggett's -1); we apply it to the distance from the limit, b - b_min, which
    equals the spec's formula shifted so that the first node is exactly the borrowing limit.
    """
    pivot = max(abs(b_min), 0.25)
    lo, hi = math.log(pivot), math.log(b_max - b_min + pivot)
    g = b_min + torch.exp(torch.linspace(lo, hi, n, dtype=_F64)) - pivot
    g[0], g[-1] = b_min, b_max
    return g


def asset_locator(b_min: float, b_max: float, n: int):
    """Closed-form bracket index on `asset_grid(b_min, b_max, n)`: floor of the inverse map.

    Returns a function b -> lo (long, clamped to [0, n-2]); O(1) per element, unlike a binary
    search (searchsorted was the single most expensive op of a simulation step on CPU).
    """
    pivot = max(abs(b_min), 0.25)
    log_p = math.log(pivot)
    step = (math.log(b_max - b_min + pivot) - log_p) / (n - 1)

    def locate(b: torch.Tensor) -> torch.Tensor:
        x = (torch.log((b - b_min + pivot).clamp(min=pivot)) - log_p) / step
        return x.long().clamp(0, n - 2)

    return locate


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def tauchen(rho: float, sd: float, n: int, width: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Tauchen chain for log x' = rho log x + e, with `sd` the *unconditional* sd of log x.

    Grid: +-width*sd, innovation sd = sd*sqrt(1-rho^2) (spec). Returns (levels exp(grid), P) with
    P[i, j] = Pr(x' = x_j | x = x_i); no mean normalisation. n == 1 or sd == 0 gives the single
    point 1 (the stationary economy).
    """
    if n == 1 or sd == 0.0:
        return torch.ones(1, dtype=_F64), torch.ones(1, 1, dtype=_F64)
    grid = torch.linspace(-width * sd, width * sd, n, dtype=_F64)
    sig_e = sd * math.sqrt(1.0 - rho * rho)
    step = grid[1] - grid[0]
    mean = rho * grid[:, None]
    upper = _normal_cdf((grid[None, :] + step / 2 - mean) / sig_e)
    lower = _normal_cdf((grid[None, :] - step / 2 - mean) / sig_e)
    P = upper - lower
    P[:, 0] = upper[:, 0]
    P[:, -1] = 1.0 - lower[:, -1]
    P = P / P.sum(1, keepdim=True)
    return torch.exp(grid), P


def stationary(P: torch.Tensor, iters: int = 10_000, tol: float = 1e-14) -> torch.Tensor:
    """Stationary distribution of a row-stochastic matrix by power iteration."""
    pi = torch.full((P.shape[0],), 1.0 / P.shape[0], dtype=P.dtype)
    for _ in range(iters):
        new = pi @ P
        if (new - pi).abs().max() < tol:
            return new
        pi = new
    return pi


def rate_chain(r_grid: torch.Tensor, r_bar: float, rho: float, sd: float) -> torch.Tensor:
    """Transition matrix on `r_grid` for r' = (1-rho) r_bar + rho r + sd sqrt(max(r,0)) eps.

    Each row puts the normal mass of r' on the nearest node (cell boundaries at midpoints),
    so the chain's conditional mean and variance match the process up to the grid spacing.
    """
    n = r_grid.numel()
    mids = 0.5 * (r_grid[1:] + r_grid[:-1])
    mean = (1 - rho) * r_bar + rho * r_grid
    sig = (sd * torch.sqrt(torch.clamp(r_grid, min=0.0))).clamp(min=1e-12)
    cdf = _normal_cdf((mids[None, :] - mean[:, None]) / sig[:, None])  # [n, n-1]
    ones = torch.ones(n, 1, dtype=_F64)
    zeros = torch.zeros(n, 1, dtype=_F64)
    cum = torch.cat([zeros, cdf, ones], 1)
    P = cum[:, 1:] - cum[:, :-1]
    return P / P.sum(1, keepdim=True)


def simulate_chain(P: torch.Tensor, start: torch.Tensor, T: int, gen: torch.Generator,
                   walk: Callable | None = None) -> torch.Tensor:
    """Indices [T, N] of a Markov chain started at `start` [N] (long); row t is the state at t.

    `walk(cum, start, u)` (the SRL kernel's compiled walk, `kernels.fused.chain_walk()`) takes the
    same uniform draws and returns the same path as the torch loop below, which is the definition."""
    cum = torch.cumsum(P, 1)
    cum[:, -1] = 1.0 + 1e-12
    u = torch.rand(T, start.numel(), generator=gen, dtype=_F64)
    if walk is not None:
        return walk(cum, start.long(), u)
    out = torch.empty(T, start.numel(), dtype=torch.long)
    s = start.clone()
    for t in range(T):
        out[t] = s
        s = torch.searchsorted(cum[s], u[t, :, None]).squeeze(1).clamp(max=P.shape[0] - 1)
    return out
