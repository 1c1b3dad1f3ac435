"""Accuracy measures as the macro literature reports them.

- Krusell-Smith: the perceived law of motion (PLM) of aggregate capital fitted on a long simulation,
  log K_{t+1} = a(z_t) + b(z_t) log K_t by aggregate TFP node (Krusell and Smith 1998) and pooled as
  log K_{t+1} = a0 + a1 log K_t + a2 log z_t, with R^2; and Den Haan's (2010) dynamic forecast error:
  the law iterated on its own forecast along the actual z sequence, never re-anchored to actual K.
- Every model: the share of mass whose Euler-equation error exceeds 1% (log10 error > -2).
- HANK: the residual of the forward-looking Phillips curve
  theta pi_t = eps (w_t/z_t - (eps-1)/eps) + beta theta E_t[pi_{t+1} Y_{t+1}/Y_t], in inflation
  units, with the expectation taken exactly over next period's exogenous state.

The fitting and forecasting functions are pure (arrays in, numbers out; float64 numpy); the
`*_accuracy` functions simulate a solved model with its public rollouts and feed them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .core.distribution import lottery, young_step

KS_KEYS = ("plm_r2", "plm_r2_min_by_z", "plm_r2_mean_by_z", "plm_z_nodes_fitted", "plm_pooled_const",
           "plm_pooled_log_K", "plm_pooled_log_z", "den_haan_max_pct", "den_haan_mean_pct")
"""JSON keys of `ks_accuracy` (null for the other models)."""
HANK_KEYS = ("phillips_residual_mean", "phillips_residual_max")
"""JSON keys of `hank_accuracy` (null for the other models)."""


def _np(x: Any) -> np.ndarray:
    return x.detach().double().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def ols(y: np.ndarray, regressors: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """Least squares of y on a constant and `regressors` (1-D arrays of y's length).

    Returns (coefficients [constant, regressors...], R^2). A regressor without variation in the
    sample is left out and its coefficient is NaN; R^2 is NaN when y itself does not vary."""
    y = np.asarray(y, dtype=np.float64)
    n = y.size
    coef = np.full(1 + len(regressors), np.nan)
    cols = [np.asarray(x, dtype=np.float64) for x in regressors]
    keep = [i for i, x in enumerate(cols) if np.ptp(x) > 1e-12 * max(1.0, float(np.abs(x).max()))]
    # centred columns: an R^2 near 1 keeps its digits
    Xc = np.column_stack([cols[i] - cols[i].mean() for i in keep]) if keep else np.zeros((n, 0))
    yc = y - y.mean()
    beta = np.linalg.lstsq(Xc, yc, rcond=None)[0] if keep else np.zeros(0)
    coef[0] = y.mean() - sum(beta[j] * cols[i].mean() for j, i in enumerate(keep))
    for j, i in enumerate(keep):
        coef[1 + i] = beta[j]
    resid = yc - Xc @ beta
    sst = float((yc ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / sst if sst > 1e-24 * n else math.nan
    return coef, r2


@dataclass
class PLMFit:
    """Perceived law of motion of log K fitted on simulated series.

    By node j of aggregate TFP: log K' = const[j] + slope[j] log K (NaN where the node has fewer
    than `min_obs` observations), with r2[j] and count[j] transitions; pooled over nodes:
    log K' = pooled[0] + pooled[1] log K + pooled[2] log z with R^2 pooled_r2."""

    const: np.ndarray
    slope: np.ndarray
    r2: np.ndarray
    count: np.ndarray
    pooled: np.ndarray
    pooled_r2: float

    @property
    def fitted(self) -> np.ndarray:
        return ~np.isnan(self.slope)

    def r2_min(self) -> float:
        ok = self.fitted & np.isfinite(self.r2)
        return float(self.r2[ok].min()) if ok.any() else math.nan

    def r2_mean(self) -> float:
        """Mean R^2 of the per-node regressions, weighted by each node's share of the observations."""
        ok = self.fitted & np.isfinite(self.r2)
        return float((self.r2[ok] * self.count[ok]).sum() / self.count[ok].sum()) if ok.any() else math.nan

    def law(self, log_z_nodes: Any) -> tuple[np.ndarray, np.ndarray]:
        """(const, slope) by node for forecasting: the node's own regression where fitted, the pooled
        law (a0 + a2 log z_j, a1) elsewhere."""
        log_z = _np(log_z_nodes)
        a2 = 0.0 if np.isnan(self.pooled[2]) else self.pooled[2]
        const = np.where(self.fitted, self.const, self.pooled[0] + a2 * log_z)
        slope = np.where(self.fitted, self.slope, self.pooled[1])
        return const, slope


def fit_plm(log_K: Any, node: Any, log_z_nodes: Any, min_obs: int = 100) -> PLMFit:
    """Fit the perceived law of motion on series [T, N] of log K and TFP node indices (each column a
    path, consecutive rows consecutive periods); `log_z_nodes` [n_z] is log z at each node."""
    lk, nd, log_z = _np(log_K), np.asarray(_np(node), dtype=np.int64), _np(log_z_nodes)
    x, y, z_idx = lk[:-1].ravel(), lk[1:].ravel(), nd[:-1].ravel()
    n_z = log_z.size
    const, slope, r2 = (np.full(n_z, np.nan) for _ in range(3))
    count = np.bincount(z_idx, minlength=n_z).astype(np.float64)
    for j in range(n_z):
        if count[j] < max(min_obs, 3):
            continue
        sel = z_idx == j
        coef, r2_j = ols(y[sel], [x[sel]])
        if np.isnan(coef[1]):  # log K does not vary at this node: no slope to fit
            continue
        const[j], slope[j], r2[j] = coef[0], coef[1], r2_j
    pooled, pooled_r2 = ols(y, [x, log_z[z_idx]])
    return PLMFit(const=const, slope=slope, r2=r2, count=count, pooled=pooled, pooled_r2=pooled_r2)


def den_haan(log_K: Any, node: Any, const: Any, slope: Any) -> np.ndarray:
    """Den Haan (2010) dynamic forecast error, in percent, [T-1, N]: 100 |log K^_t - log K_t| for
    t = 1..T-1, where log K^_0 = log K_0 and log K^_{t+1} = const[z_t] + slope[z_t] log K^_t along
    the actual node sequence, never re-anchored to the actual K."""
    lk, nd = _np(log_K), np.asarray(_np(node), dtype=np.int64)
    a, b = _np(const), _np(slope)
    k_hat = lk[0].copy()
    err = np.empty((lk.shape[0] - 1, lk.shape[1]))
    for t in range(lk.shape[0] - 1):
        k_hat = a[nd[t]] + b[nd[t]] * k_hat
        err[t] = 100.0 * np.abs(k_hat - lk[t + 1])
    return err


def nearest_node(values: Any, grid: Any) -> np.ndarray:
    """Index of the grid node nearest to each value (recorded z back to its TFP node)."""
    v, g = _np(values), _np(grid)
    return np.abs(v[..., None] - g).argmin(-1)


def plm_summary(log_K: Any, node: Any, log_z_nodes: Any, min_obs: int = 100) -> dict[str, float]:
    """The KS_KEYS numbers of series [T, N] (rows after the burn-in): the fit, then Den Haan's error
    of the fitted law started from each path's first row."""
    fit = fit_plm(log_K, node, log_z_nodes, min_obs)
    const, slope = fit.law(log_z_nodes)
    err = den_haan(log_K, node, const, slope)
    return {"plm_r2": fit.pooled_r2, "plm_r2_min_by_z": fit.r2_min(), "plm_r2_mean_by_z": fit.r2_mean(),
            "plm_z_nodes_fitted": int(fit.fitted.sum()), "plm_pooled_const": float(fit.pooled[0]),
            "plm_pooled_log_K": float(fit.pooled[1]), "plm_pooled_log_z": float(fit.pooled[2]),
            "den_haan_max_pct": float(err.max()) if err.size else math.nan,
            "den_haan_mean_pct": float(err.mean()) if err.size else math.nan}


@torch.no_grad()
def simulate_K(model: Any, state: dict[str, torch.Tensor], n_paths: int = 32, periods: int = 1000,
               burn: int = 100, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Recorded (K, z) [periods, n] of a Krusell-Smith model: consecutive rollouts chained from the
    first n paths of `state` (each draws its shocks from the previous one's final state), the first
    `burn` periods dropped."""
    n = min(n_paths, int(state["g"].shape[0]))
    st = {"g": state["g"][:n], "s": state["s"][:n]}
    gen = torch.Generator().manual_seed(seed)
    Ks, zs, total = [], [], 0
    while total < burn + periods:
        shocks = model.draw_shocks(st, gen)
        _, st, rec = model.rollout(st, shocks, record=True)
        Ks.append(rec["K"].detach().cpu())
        zs.append(rec["z"].detach().cpu())
        total += Ks[-1].shape[0]
    return torch.cat(Ks)[burn:burn + periods], torch.cat(zs)[burn:burn + periods]


def ks_accuracy(model: Any, state: dict[str, torch.Tensor], n_paths: int = 32, periods: int = 1000,
                burn: int = 100, seed: int = 0, min_obs: int = 100) -> dict[str, float]:
    """PLM regression and Den Haan error of a solved Krusell-Smith model from its ergodic `state`."""
    K, z = simulate_K(model, state, n_paths, periods, burn, seed)
    z_nodes = model.z_grid.detach().double().cpu()
    return plm_summary(torch.log(K.double()), nearest_node(z, z_nodes), torch.log(z_nodes), min_obs)


def euler_share_above(err: torch.Tensor, mass: torch.Tensor, threshold: float = -2.0) -> float:
    """Share of mass, on the set where the log10 Euler error is defined (not NaN), whose error
    exceeds 10^threshold (-2: 1% of consumption)."""
    ok = ~torch.isnan(err)
    wts = torch.where(ok, mass, torch.zeros_like(mass)).double()
    total = float(wts.sum())
    if not bool(ok.any()) or total <= 0:
        return math.nan
    above = torch.nan_to_num(err.double(), nan=-math.inf) > threshold
    return float((wts * above).sum()) / total


def phillips_residual(pi: Any, w: Any, z: Any, Y: Any, prob_next: Any, pi_next: Any, Y_next: Any,
                      theta: float, epsilon: float, beta: float) -> torch.Tensor:
    """Residual of theta pi = eps (w/z - (eps-1)/eps) + beta theta E[pi' Y'/Y], divided by theta:
    pi - (eps/theta)(w/z - (eps-1)/eps) - beta sum_s' prob(s') pi'(s') Y'(s') / Y.

    pi, w, z, Y [n] this period; prob_next, pi_next, Y_next [n, S] over next period's exogenous states."""
    pi, w, z, Y = (torch.as_tensor(x, dtype=torch.float64) for x in (pi, w, z, Y))
    prob, pi2, Y2 = (torch.as_tensor(x, dtype=torch.float64) for x in (prob_next, pi_next, Y_next))
    expected = (prob * pi2 * Y2).sum(-1) / Y
    return pi - (epsilon / theta) * (w / z - (epsilon - 1.0) / epsilon) - beta * expected


@torch.no_grad()
def hank_phillips_terms(model: Any, g: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the Phillips curve needs at histograms g [n, J] and exogenous states s [n] (float64, CPU):
    this period's pi, w, z, Y [n]; next period's pi_next, Y_next [n, S] at each exogenous state
    states[k] reachable from some s (the joint (z, m) chain), with probabilities prob [n, S].

    Next period's histogram follows from this period's savings (Young's lottery, as in the
    simulation); next period's prices, inflation and output are its clearing equilibrium at each s'."""
    share_tab, hours_tab = model.tables()
    Pi = model.Pi
    g = g.to(model.device, model.dtype).contiguous()
    eq = model.equilibrium(share_tab, hours_tab, Pi, g, s)
    lo_b, w_b = lottery(model.b_grid, eq["b_next"], model.locate)
    g_next = young_step(g, lo_b, w_b, model.P_y, model.y_index)
    P = model.P_exo64.to(torch.float64)
    s_cpu = s.cpu()
    states, prob, pi2, Y2 = [], [], [], []
    for s_next in range(P.shape[0]):
        p = P[s_cpu, s_next]
        if float(p.max()) < 1e-12:
            continue
        eq2 = model.equilibrium(share_tab, hours_tab, Pi, g_next, torch.full_like(s, s_next))
        states.append(s_next)
        prob.append(p)
        pi2.append(eq2["pi"].detach().double().cpu())
        Y2.append(eq2["Y"].detach().double().cpu())
    out = {k: eq[k].detach().double().cpu() for k in ("pi", "w", "z", "Y")}
    out.update(states=torch.tensor(states), prob=torch.stack(prob, -1), pi_next=torch.stack(pi2, -1),
               Y_next=torch.stack(Y2, -1))
    return out


def hank_phillips_residuals(model: Any, g: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Phillips-curve residuals [n] (inflation units) at histograms g [n, J] and exogenous states s [n],
    with the expectation exact over next period's exogenous state (`hank_phillips_terms`)."""
    cal, t = model.cal, hank_phillips_terms(model, g, s)
    return phillips_residual(t["pi"], t["w"], t["z"], t["Y"], t["prob"], t["pi_next"], t["Y_next"],
                             cal.theta, cal.epsilon, cal.beta)


@torch.no_grad()
def hank_accuracy(model: Any, state: dict[str, torch.Tensor], n_paths: int = 8, n_periods: int = 4,
                  seed: int = 0) -> dict[str, float]:
    """Mean and max |Phillips-curve residual| over the first n paths of `state` at n_periods periods,
    one rollout (T periods) apart along simulated paths."""
    n = min(n_paths, int(state["g"].shape[0]))
    st = {"g": state["g"][:n], "s": state["s"][:n]}
    gen = torch.Generator().manual_seed(seed)
    res = []
    for k in range(n_periods):
        if k:
            _, st, _ = model.rollout(st, model.draw_shocks(st, gen))
        res.append(hank_phillips_residuals(model, st["g"], st["s"]).abs())
    r = torch.cat(res)
    return {"phillips_residual_mean": float(r.mean()), "phillips_residual_max": float(r.max())}
