"""Accuracy and economics of a solved model: Euler errors, moments, inequality, impulse responses.

Everything here works on what `solve` returns (the model object, its final state and the simulated
paths), never on training internals.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .accuracy import euler_share_above


def euler_errors(model: Any, state: dict[str, torch.Tensor], n_paths: int = 8) -> tuple[float, float]:
    """(mass-weighted mean, max) of log10 Euler-equation errors on the ergodic, unconstrained set."""
    err, g = model.euler_errors(state, n_paths=n_paths)
    return euler_stats(err, g)[:2]


def euler_stats(err: torch.Tensor, g: torch.Tensor) -> tuple[float, float, float]:
    """(mass-weighted mean, max, share of mass above 1%) of log10 Euler errors `err` (NaN off the
    ergodic, unconstrained set) with histogram `g`, as `model.euler_errors` returns them."""
    ok = ~torch.isnan(err)
    if not bool(ok.any()):
        return float("nan"), float("nan"), float("nan")
    wts = torch.where(ok, g, torch.zeros_like(g)).double()
    mean = float((torch.nan_to_num(err.double()) * wts).sum() / wts.sum())
    return mean, float(err[ok].max()), euler_share_above(err, g, -2.0)


def gini(values: torch.Tensor, mass: torch.Tensor) -> float:
    """Gini coefficient of a discrete distribution (values may be negative: Huggett debt)."""
    v, m = values.double().flatten(), mass.double().flatten()
    order = torch.argsort(v)
    v, m = v[order], m[order] / m.sum()
    cum_m = torch.cumsum(m, 0)
    cum_vm = torch.cumsum(v * m, 0)
    total = float(cum_vm[-1])
    if abs(total) < 1e-12:
        return float("nan")
    lorenz_prev = torch.cat([torch.zeros(1, dtype=v.dtype), cum_vm[:-1]]) / total
    area = float((m * (lorenz_prev + cum_vm / total)).sum()) / 2.0
    return 1.0 - 2.0 * area


def autocorr(x: torch.Tensor) -> float:
    """First-order autocorrelation of [T, N] series, pooled over paths (time-demeaned per path)."""
    x = x.double()
    x = x - x.mean(0, keepdim=True)
    num = (x[1:] * x[:-1]).sum()
    den = (x * x).sum()
    return float(num / den) if float(den) > 0 else float("nan")


def moments(paths: dict[str, torch.Tensor], burn: int = 0) -> dict[str, dict[str, float]]:
    """Mean, sd and first-order autocorrelation of every [T, N] aggregate series."""
    out = {}
    for k, v in paths.items():
        if v.dim() != 2:
            continue
        x = v[burn:].double()
        out[k] = {"mean": float(x.mean()), "sd": float(x.std()) if x.numel() > 1 else 0.0,
                  "autocorr": autocorr(x) if x.shape[0] > 2 else float("nan")}
    return out


def wealth_stats(model: Any, state: dict[str, torch.Tensor]) -> dict[str, float]:
    """Wealth Gini and mass at the borrowing limit of the path-averaged final distribution."""
    g = state["g"].double().mean(0)
    b = model.b_j.double().cpu()
    g = g.cpu()
    at_limit = float(g.view(model.cal.n_b, -1)[0].sum())
    return {"wealth_gini": gini(b, g), "mass_at_borrowing_limit": at_limit}


def welfare(U: torch.Tensor, beta: float) -> float:
    """(1 - beta) E[sum_t beta^t g_t . u(c_t)] from the recorded population utility U [T, N]
    (g_t . u(c_t) per period and path), averaged over paths. Truncated at the simulation's T
    periods, like the training objective."""
    T = U.shape[0]
    disc = torch.tensor([beta ** t for t in range(T)], dtype=torch.float64)
    return float((1 - beta) * (disc[:, None] * U.double().cpu()).sum(0).mean())


def safe(x: float) -> float | None:
    """JSON-friendly float (None for NaN/inf)."""
    return None if x is None or not math.isfinite(x) else float(x)
