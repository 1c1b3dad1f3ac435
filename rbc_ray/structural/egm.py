"""Independent stationary solver: endogenous grid method + Young histogram + bisection.

The test oracle for SRL's no-aggregate-risk limit. It shares only the grid builders with the SRL
code (grids.py); its policy iteration, lottery, stationary distribution and market clearing are
written here from scratch, in float64, with plain loops where that reads more clearly.

    huggett_equilibrium(cal) -> EGMResult with r (bond market clears at bond_supply)
    ks_equilibrium(cal)      -> EGMResult with K, r, w (capital market: K = sum k g)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .core import grids

F64 = torch.float64


@dataclass
class EGMResult:
    """Stationary equilibrium: prices, aggregates, policies on the (b, y) grid, distribution."""

    r: float
    w: float
    K: float
    assets: float
    c: torch.Tensor
    b_next: torch.Tensor
    dist: torch.Tensor
    b_grid: torch.Tensor
    y_grid: torch.Tensor


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of (xp, fp) at x, linear extrapolation at both ends."""
    i = (torch.searchsorted(xp.contiguous(), x.contiguous()) - 1).clamp(0, xp.numel() - 2)
    x0, x1, f0, f1 = xp[i], xp[i + 1], fp[i], fp[i + 1]
    return f0 + (f1 - f0) * (x - x0) / (x1 - x0)


def egm_policy(b_grid, y_inc, P_y, R, price_b, beta, crra, b_min, tol=1e-11, max_iter=20_000):
    """Consumption policy c[b, y] for  c + price_b * b' = R * b + y_inc[y],  b' >= b_min.

    Euler: c^-crra = beta * (R_next / price_b) E[c'^-crra]; here R_next = R for KS (price_b = 1)
    and for Huggett (R = 1, price_b = q) the return on a bond is 1/q. We pass `gross` = R/price_b.
    """
    nb, ny = b_grid.numel(), y_inc.numel()
    cash = R * b_grid[:, None] + y_inc[None, :]
    c = (cash - price_b * b_min).clamp(min=1e-8) * 0.5 + 0.05
    gross = (R if price_b == 1.0 else 1.0) / price_b
    for _ in range(max_iter):
        emu = (c ** (-crra)) @ P_y.T  # [nb (b'), ny (y today)]
        c_endo = (beta * gross * emu) ** (-1.0 / crra)
        b_endo = (c_endo + price_b * b_grid[:, None] - y_inc[None, :]) / R  # today's b for each b'
        new = torch.empty_like(c)
        for j in range(ny):
            cj = _interp(b_grid, b_endo[:, j], c_endo[:, j])
            constrained = b_grid < b_endo[0, j]
            cj = torch.where(constrained, cash[:, j] - price_b * b_min, cj)
            new[:, j] = torch.minimum(cj, cash[:, j] - price_b * b_min)
        if (new - c).abs().max() < tol:
            return new
        c = new
    return c


def stationary_histogram(b_grid, b_next, P_y, tol=1e-13, max_iter=100_000) -> torch.Tensor:
    """Stationary distribution [nb, ny] of Young's lottery for savings b_next[b, y]."""
    nb, ny = b_next.shape
    bn = b_next.clamp(b_grid[0], b_grid[-1])
    lo = (torch.searchsorted(b_grid, bn.contiguous().view(-1), right=True) - 1).clamp(0, nb - 2).view(nb, ny)
    w_hi = (bn - b_grid[lo]) / (b_grid[lo + 1] - b_grid[lo])
    # dense transition over flat states (b, y) -> (b', y'); small enough for the test sizes
    J = nb * ny
    A = torch.zeros(J, J, dtype=F64)
    src = torch.arange(J)
    for yp in range(ny):
        prob = P_y[torch.arange(ny).repeat(nb), yp]
        A.index_put_((src, lo.view(-1) * ny + yp), (1 - w_hi).view(-1) * prob, accumulate=True)
        A.index_put_((src, (lo.view(-1) + 1) * ny + yp), w_hi.view(-1) * prob, accumulate=True)
    g = torch.full((J,), 1.0 / J, dtype=F64)
    for _ in range(max_iter):
        new = g @ A
        if (new - g).abs().max() < tol:
            g = new
            break
        g = new
    return (g / g.sum()).view(nb, ny)


def _household(cal, r, w, n_fine: int = 1000):
    """Grids plus the EGM policy and stationary distribution at prices (r, w).

    The policy is solved on a fine grid (max(n_fine, 5 n_b) nodes, same double-exponential shape) and
    read off at the histogram nodes, so the only discretisation shared with SRL is the histogram's.
    """
    b_grid = grids.asset_grid(cal.borrowing_limit, cal.b_max, cal.n_b)
    fine = grids.asset_grid(cal.borrowing_limit, cal.b_max, max(n_fine, 5 * cal.n_b))
    y, P_y = grids.tauchen(cal.rho_y, cal.sd_y, cal.n_y)
    if hasattr(cal, "alpha"):  # Krusell-Smith: c + k' = (1+r) k + w y
        R, price_b, inc = 1.0 + r, 1.0, w * y
    else:  # Huggett: c + b'/(1+r) = b + y
        R, price_b, inc = 1.0, 1.0 / (1.0 + r), y
    c_fine = egm_policy(fine, inc, P_y, R, price_b, cal.beta, cal.crra, cal.borrowing_limit)
    c = torch.stack([_interp(b_grid, fine, c_fine[:, j]) for j in range(y.numel())], 1)
    b_next = (R * b_grid[:, None] + inc[None, :] - c) / price_b
    dist = stationary_histogram(b_grid, b_next, P_y)
    return b_grid, y, c, b_next, dist


def _bisect(f, lo, hi, tol, max_iter=80):
    flo = f(lo)
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        fm = f(mid)
        if (fm > 0) == (flo > 0):
            lo, flo = mid, fm
        else:
            hi = mid
        if hi - lo < tol:
            break
    return 0.5 * (lo + hi)


def huggett_equilibrium(cal, r_lo: float = -0.02, r_hi: float | None = None, tol: float = 1e-7) -> EGMResult:
    """Stationary Huggett equilibrium: r such that sum b' g = bond_supply (bisection on r)."""
    r_hi = (1.0 / cal.beta - 1.0) - 1e-5 if r_hi is None else r_hi

    def excess(r):
        b_grid, y, c, b_next, dist = _household(cal, r, 1.0)
        return float((b_next * dist).sum()) - cal.bond_supply

    r = _bisect(excess, r_lo, r_hi, tol)
    b_grid, y, c, b_next, dist = _household(cal, r, 1.0)
    return EGMResult(r=r, w=1.0, K=float("nan"), assets=float((b_next * dist).sum()), c=c,
                     b_next=b_next, dist=dist, b_grid=b_grid, y_grid=y)


def ks_prices(cal, K: float) -> tuple[float, float]:
    """r = alpha K^(alpha-1) - delta, w = (1-alpha) K^alpha (z = 1, L = 1)."""
    return cal.alpha * K ** (cal.alpha - 1) - cal.delta, (1 - cal.alpha) * K ** cal.alpha


def ks_equilibrium(cal, tol: float = 1e-7) -> EGMResult:
    """Stationary Krusell-Smith (no aggregate risk): K = sum k' g at r(K), w(K) (bisection on r)."""

    def excess(r):  # capital supplied minus capital demanded at rate r
        K = ((r + cal.delta) / cal.alpha) ** (1.0 / (cal.alpha - 1.0))
        _, _, _, b_next, dist = _household(cal, r, ks_prices(cal, K)[1])
        return float((b_next * dist).sum()) - K

    r = _bisect(excess, -cal.delta + 1e-3, 1.0 / cal.beta - 1.0 - 1e-5, tol)
    K = ((r + cal.delta) / cal.alpha) ** (1.0 / (cal.alpha - 1.0))
    w = ks_prices(cal, K)[1]
    b_grid, y, c, b_next, dist = _household(cal, r, w)
    return EGMResult(r=r, w=w, K=K, assets=float((b_next * dist).sum()), c=c, b_next=b_next,
                     dist=dist, b_grid=b_grid, y_grid=y)
