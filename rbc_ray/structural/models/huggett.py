"""Huggett (1993) with aggregate risk, and its partial-equilibrium cousin, solved by SRL.

Household with assets b, income y (Markov), aggregate TFP z (Markov), bond price q = 1/(1+r):
    c + b' / (1 + r) = b + z y,    b' >= borrowing_limit,    u(c) = c^(1-crra) / (1-crra).
Policy: consumption share s(b, y, z, r) of the most the household can consume, cash - q*b_min,
monotone (non-increasing) in r. General equilibrium: each period r clears sum_j b'_j g_j = bond_supply
by interpolation on the r grid. Partial equilibrium: r follows an exogenous chain on the same grid.
With `price_lags` = L > 0 (general equilibrium only) the share is s(b, y, z, r_-1[, r_-2], r): the
table's rows are (z, lag node) pairs, z major, multilinear in the lagged rates (lags.lag_corners); the
bond-demand schedule at each r node is linear in the table, so clearing with the lag-blended table is
exact. The state carries the last L cleared rates per path (state["lags"] [N, L]).
"""

from __future__ import annotations

from typing import Any

import torch

from ..core import grids, policy, terminal
from ..kernels import fused
from ..config import HuggettCalibration, HuggettPECalibration
from ..core.distribution import income_index, lottery, point_mass, young_step
from ..core.market import blend, bracket
from ..core.maths import crra_utility
from ..core.household import HouseholdModel
from ..core import lagged as price_lags


@torch.no_grad()
def aggregate_schedule(table: torch.Tensor, s: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """S[n, k] = sum_j table[s_n, k, j] g[n, j]: one dot product per price node and path.

    On CPU at large sizes, paths are grouped by aggregate state (one small matmul per state) to avoid
    copying the [N, K, J] gather; on GPU, and for small problems, the batched gather + bmm is faster.
    """
    if g.device.type != "cpu" or g.numel() * table.shape[1] < 2_000_000:
        return torch.bmm(table[s], g[:, :, None]).squeeze(-1)
    out = torch.empty(g.shape[0], table.shape[1], dtype=g.dtype, device=g.device)
    order = torch.argsort(s)
    counts = torch.bincount(s, minlength=table.shape[0]).tolist()
    pos = 0
    for state, cnt in enumerate(counts):
        if cnt:
            rows = order[pos:pos + cnt]
            out[rows] = g[rows] @ table[state].T
            pos += cnt
    return out


class Huggett(HouseholdModel):
    """SRL model object for `huggett` (market clearing) and `huggett-pe` (exogenous r chain)."""

    def __init__(self, cal: HuggettCalibration):
        super().__init__(cal)
        self.partial = isinstance(cal, HuggettPECalibration)
        dev, dt = self.device, self.dtype
        z, self.P_z64 = grids.tauchen(cal.rho_z, cal.sd_z, cal.n_z)
        self.z_grid, self.n_z = z.to(dev, dt), z.numel()
        self.r_grid = self.price_grid(cal.r_min, cal.r_max, cal.n_r)
        if self.partial:  # exogenous rate: the "aggregate shock" is the r node itself
            self.P_exo64 = grids.rate_chain(self.r_grid.double().cpu(), cal.r_bar, cal.rho_r, cal.sd_r)
        else:
            self.P_exo64 = self.P_z64
        nb, ny = cal.n_b, self.y_grid.numel()
        self.J = nb * ny
        self.y_index = income_index(nb, ny, dev)
        self.b_j = self.b_grid.repeat_interleave(ny)
        self.y_j = self.y_grid.repeat(nb)
        self.cash = self.b_j[None, :] + self.z_grid[:, None] * self.y_j[None, :]  # [nz, J]
        q = 1.0 / (1.0 + self.r_grid)
        self.c_max = self.cash[:, :, None] - q[None, None, :] * cal.borrowing_limit  # [nz, J, nr]
        self.L = 0 if self.partial else cal.price_lags
        self.n_lag = cal.n_lag
        self.M = cal.n_lag ** self.L  # lag nodes per z node: table rows are (z, lag node), z major
        self.lag_step = price_lags.lag_step(cal)
        # today's no-lag guess copied across the lag nodes: at initialisation the lags change nothing
        self.first, self.incr = policy.to_params(self._initial_share().repeat_interleave(self.M, 0))
        self.params = [self.first, self.incr]
        self.param_names = ("share_first", "share_incr")  # consumption share: first price node, increments
        self.lookup = (fused.asset_lookup(cal.borrowing_limit, cal.b_max, cal.n_b)
                       if fused.wanted(cal, self.device) else None)
        self.fused = self.lookup is not None

    # ---------------------------------------------------------------- policy
    def _initial_share(self) -> torch.Tensor:
        """Constant-price optimum (perfect-foresight permanent income at the mean income)."""
        cal = self.cal
        R = 1.0 + self.r_grid
        mpc = 1.0 - (cal.beta * R).pow(1.0 / cal.crra) / R
        human = (self.z_grid[:, None] * (self.y_dist * self.y_grid).sum())[:, :, None] / (R - 1.0)
        c0 = mpc * (self.cash[:, :, None] + human)
        share = (c0 / self.c_max).clamp(1e-3, 1.0)
        return torch.cummin(share, dim=-1).values  # non-increasing in r

    def project(self) -> None:
        policy.project(self.first, self.incr, 0.0, 1.0, decreasing=True)

    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(consumption c, savings b') at every (row, r-node, j): [nz M, nr, J] each, differentiable
        (row = z node M + lag node; M = 1 without lags)."""
        share = policy.to_values(self.first, self.incr)  # [nz M, J, nr]
        c_max, cash = self.c_max, self.cash
        if self.M > 1:
            c_max, cash = c_max.repeat_interleave(self.M, 0), cash.repeat_interleave(self.M, 0)
        c = (share * c_max).clamp(min=self.cal.c_min)
        c = torch.minimum(c, c_max)
        b_next = (cash[:, :, None] - c) * (1.0 + self.r_grid)
        return c.transpose(1, 2), b_next.transpose(1, 2)

    def lag_rows(self, zi: torch.Tensor, lags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(table rows [N, 2^L], weights [N, 2^L]) of the lag corners at z nodes zi and lags [N, L]."""
        m, wts = price_lags.lag_corners(lags, self.cal.r_min, self.lag_step, self.n_lag)
        return zi[:, None] * self.M + m, wts

    def initial_lags(self, n: int) -> torch.Tensor:
        """Lagged rates of a fresh start: the middle of the r grid, (r_min + r_max) / 2."""
        return torch.full((n, self.L), 0.5 * (self.cal.r_min + self.cal.r_max), dtype=self.dtype,
                          device=self.device)

    # ---------------------------------------------------------------- simulation
    def initial_state(self) -> dict[str, torch.Tensor]:
        """Warm-up start: all paths at b = bond supply (mean-preserving split), y stationary, z median."""
        N = self.cal.n_paths
        b0 = 0.0 if self.partial else self.cal.bond_supply
        g = point_mass(self.b_grid, b0, self.y_dist).expand(N, self.J).clone()
        mid = (self.cal.n_r // 2) if self.partial else self.n_z // 2
        state = {"g": g, "s": torch.full((N,), mid, dtype=torch.long)}
        if self.L:
            state["lags"] = self.initial_lags(N)
        return state

    def draw_shocks(self, state: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Aggregate-state indices [T+1, N] (z node, or r node in partial equilibrium)."""
        return {"s": grids.simulate_chain(self.P_exo64, state["s"].cpu(), self.T + 1, gen,
                                          walk=fused.chain_walk()).to(self.device)}

    def prices(self, b_tab: torch.Tensor, s: torch.Tensor, g: torch.Tensor, corners=None):
        """(z index, r-node lo, weight on lo+1) for aggregate states s [N] and distributions g;
        with lags, `corners` = lag_rows(s, lags) blends the table's lag corners first."""
        if self.partial:
            return torch.zeros_like(s), s.clamp(max=self.cal.n_r - 2), (s == self.cal.n_r - 1).to(g.dtype)
        if corners is None:
            S = aggregate_schedule(b_tab, s, g)  # [N, nr] bond demand at each r node
        else:
            with torch.no_grad():
                rows, wts = corners
                slab = wts[:, 0, None, None] * b_tab[rows[:, 0]]
                for c in range(1, rows.shape[1]):
                    slab = slab + wts[:, c, None, None] * b_tab[rows[:, c]]
                S = torch.bmm(slab, g[:, :, None]).squeeze(-1)
        lo, w = bracket(S, self.cal.bond_supply)
        return s, lo, w

    def savings(self, b_tab: torch.Tensor, zi: torch.Tensor, lo: torch.Tensor, w: torch.Tensor, corners=None):
        """b' [N, J] blended at the cleared rate (and the lag corners), with a reproducible gradient."""
        w_ = w[:, None]
        if corners is None:
            return policy.rows(b_tab, zi, lo) * (1 - w_) + policy.rows(b_tab, zi, lo + 1) * w_
        rows, wts = corners
        b_lo = b_hi = None
        for c in range(rows.shape[1]):
            wc = wts[:, c, None]
            x_lo, x_hi = wc * policy.rows(b_tab, rows[:, c], lo), wc * policy.rows(b_tab, rows[:, c], lo + 1)
            b_lo, b_hi = (x_lo, x_hi) if b_lo is None else (b_lo + x_lo, b_hi + x_hi)
        return b_lo * (1 - w_) + b_hi * w_

    def _step(self, c_tab, b_tab, g, d, s, record: bool, lags=None):
        """One period on all paths: clear the market, act, weight utility, move both histograms."""
        cal = self.cal
        corners = self.lag_rows(s, lags) if self.L else None
        zi, lo, w = self.prices(b_tab.detach(), s, g, corners)
        r = blend(self.r_grid, lo, w)
        b_next = self.savings(b_tab, zi, lo, w, corners)  # blended at the cleared r
        c = self.cash[zi] - b_next / (1.0 + r)[:, None]
        u = crra_utility(c.clamp(min=cal.c_min), cal.crra)
        u_t = (d * u).sum(1)
        if record:
            with torch.no_grad():
                U = (u.detach() * g).sum(1)
        lo_b, w_b = lottery(self.b_grid, b_next, self.locate)
        stats: dict[str, torch.Tensor] = {"r": r}
        with torch.no_grad():
            demand = (b_next.detach() * g).sum(1)
            stats["resid"] = demand - (0.0 if self.partial else cal.bond_supply)
            if record:
                N = g.shape[0]
                stats.update(z=self.z_grid[zi], B=demand, C=(c.detach() * g).sum(1),
                             Ey=(self.y_j * g).sum(1), at_limit=g.view(N, cal.n_b, -1)[:, 0].sum(1), U=U)
                if self.L:
                    stats["r_lag"] = lags[:, 0]
            g = young_step(g, lo_b, w_b.detach(), self.P_y, self.y_index)
        d = young_step(d, lo_b, w_b, self.P_y, self.y_index)
        return u_t, g, d, stats

    @torch.no_grad()
    def terminal_value(self, b_tab: torch.Tensor, g: torch.Tensor, s: torch.Tensor,
                       lags: torch.Tensor | None = None) -> torch.Tensor | None:
        """V [N, J] of the continuation value at the horizon (core/terminal.py), None if terminal='none':
        the policy's value at the prices that clear on the starting histograms g, states s (and lagged
        rates `lags`); prices are held constant, so the policy is then read with every lag at that rate."""
        cal = self.cal
        if cal.terminal == "none":
            return None
        N, pick = g.shape[0], terminal.paths(g.shape[0])
        g, s = g[pick], s[pick]
        corners = self.lag_rows(s, lags[pick]) if self.L else None
        zi, lo, w = self.prices(b_tab, s, g, corners)
        r = blend(self.r_grid, lo, w)
        if self.L:
            corners = self.lag_rows(s, r[:, None].expand(-1, self.L))
        b_next = self.savings(b_tab, zi, lo, w, corners)
        u = crra_utility((self.cash[zi] - b_next / (1.0 + r)[:, None]).clamp(min=cal.c_min), cal.crra)
        V = terminal.policy_value(u, b_next, self.b_grid, self.P_y, cal.beta, self.locate)
        return V.to(self.dtype).expand(N, -1).contiguous()

    def rollout(self, state: dict[str, torch.Tensor], shocks: dict[str, torch.Tensor],
                record: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        """Simulate T periods on N paths; returns (objective, final state, records)."""
        if self.fused:
            return self._rollout_fused(state, shocks, record)
        cal, T = self.cal, self.T
        c_tab, b_tab = self.tables()
        b_det = b_tab.detach()
        g = state["g"].to(self.device, self.dtype)
        N = g.shape[0]
        d = torch.full_like(g, 1.0 / self.J)
        s_path = shocks["s"]
        lags = self._lags(state, N)
        V = self.terminal_value(b_det, g, s_path[0], lags)
        obj = torch.zeros(N, device=self.device, dtype=self.dtype)
        rec: dict[str, list] = {k: [] for k in ("r", "z", "C", "B", "Ey", "resid", "at_limit", "U")
                                + (("r_lag",) if self.L else ())}
        resid_max = torch.zeros((), device=self.device, dtype=self.dtype)
        r_sum = torch.zeros((), device=self.device, dtype=self.dtype)
        for t in range(T):
            u_t, g, d, stats = self._step(c_tab, b_tab, g, d, s_path[t], record, lags)
            if self.L:
                lags = price_lags.shift(lags, stats["r"])
            obj = obj + cal.beta ** t * u_t
            resid_max = torch.maximum(resid_max, stats["resid"].abs().max())
            r_sum = r_sum + stats["r"].mean()
            if record:
                for k in rec:
                    rec[k].append(stats[k])
        if V is not None:  # continuation value at the horizon, through d_T only
            obj = obj + cal.beta ** T * (d * V).sum(1)
        objective = (1 - cal.beta) * obj.mean()
        out: dict[str, Any] = {"price_mean": float(r_sum / T), "residual_max": float(resid_max)}
        if record:
            out.update({k: torch.stack(v) for k, v in rec.items()})
        final = {"g": g.detach(), "s": s_path[T]}
        if self.L:
            final["lags"] = lags
        return objective, final, out

    def _lags(self, state: dict[str, torch.Tensor], n: int) -> torch.Tensor | None:
        """The state's lagged rates [n, L] (a fresh start's when the state has none); None without lags."""
        if not self.L:
            return None
        lags = state.get("lags")
        return self.initial_lags(n) if lags is None else lags[:n].to(self.device, self.dtype)

    def _rollout_fused(self, state, shocks, record: bool):
        """`rollout` by the fused CPU kernel (same maths; fused.py). In partial equilibrium the
        population histogram clears nothing, so training does not move it (only recording does)."""
        cal, T, mod = self.cal, self.T, fused.load()
        _, b_tab = self.tables()
        g0 = state["g"].to(self.device, self.dtype).contiguous()
        s_path = shocks["s"][:T].contiguous()
        lk = self.lookup
        consts = (self.P_y.contiguous(), self.b_grid.contiguous(), lk.lut, lk.bmin, lk.inv_h)
        evolve_g = record or not self.partial
        lags0 = self._lags(state, g0.shape[0])
        V = self.terminal_value(b_tab.detach(), g0, s_path[0], lags0)
        V = V if V is not None else g0.new_empty(0)
        lag_args = ((lags0 if self.L else torch.zeros(g0.shape[0], 0, dtype=g0.dtype)).contiguous(),
                    [cal.r_min, self.lag_step, float(self.n_lag)])

        def fwd(B):
            names = ("obj", "g", "d_hist", "zi", "lo_r", "w_r", "r", "resid", "rec", "lags")
            return dict(zip(names, mod.huggett_forward(
                B, self.cash.contiguous(), self.r_grid.contiguous(), s_path, g0, *consts,
                self.y_j.contiguous(), T, cal.beta, cal.crra, cal.c_min, cal.bond_supply, self.partial,
                evolve_g, record, fused.HISTORY.take((T, g0.shape[0], g0.shape[1]), g0.dtype), V, *lag_args)))

        def bwd(grad_obj, B, res):
            return mod.huggett_backward(grad_obj, B, self.cash.contiguous(), res["d_hist"], res["zi"],
                                        res["lo_r"], res["w_r"], res["r"], *consts, cal.beta, cal.crra,
                                        cal.c_min, V, *lag_args)

        obj, res = fused.rollout(b_tab, fwd, bwd)
        objective = (1 - cal.beta) * obj.mean()
        out: dict[str, Any] = {"price_mean": float(res["r"].mean()),
                               "residual_max": float(res["resid"].abs().max())}
        if record:
            demand, C, Ey, at_limit, U = res["rec"].unbind(0)
            out.update(r=res["r"], z=self.z_grid[res["zi"]], C=C, B=demand, Ey=Ey, resid=res["resid"],
                       at_limit=at_limit, U=U)
            if self.L:
                out["r_lag"] = torch.cat([lags0[None, :, 0], res["r"][:-1]], 0)
        g_T = res["g"] if evolve_g else g0
        final = {"g": g_T.detach(), "s": shocks["s"][T]}
        if self.L:
            final["lags"] = res["lags"]
        return objective, final, out

    # ---------------------------------------------------------------- accuracy
    @torch.no_grad()
    def euler_errors(self, state: dict[str, torch.Tensor], n_paths: int = 8):
        """(log10 |1 - c_euler / c|, histogram) on the first n paths, NaN where constrained.

        c_euler = (beta (1+r) E[u'(c')])^(-1/crra): the expectation runs over y' and the next
        aggregate state (z' with its clearing price given next period's histogram, or r' in partial
        equilibrium), with c' interpolated linearly in b'. Returns two [n, J] tensors (errors NaN off the ergodic set).
        """
        cal = self.cal
        _, b_tab = self.tables()
        g, s = state["g"][:n_paths].to(self.device, self.dtype), state["s"][:n_paths]
        lags = self._lags(state, g.shape[0])
        corners = self.lag_rows(s, lags) if self.L else None
        zi, lo, w = self.prices(b_tab, s, g, corners)
        r = blend(self.r_grid, lo, w)
        b_next = self.savings(b_tab, zi, lo, w, corners)
        c = self.cash[zi] - b_next / (1.0 + r)[:, None]
        lags_next = price_lags.shift(lags, r) if self.L else None  # today's rate is tomorrow's r_-1
        lo_b, w_b = lottery(self.b_grid, b_next, self.locate)
        g_next = young_step(g, lo_b, w_b, self.P_y, self.y_index)
        P_exo = self.P_exo64.to(self.device, self.dtype)
        ny = self.y_grid.numel()
        emu = torch.zeros_like(c)
        for s_next in range(P_exo.shape[0]):
            prob = P_exo[s, s_next]  # [n]
            if float(prob.max()) == 0.0:
                continue
            sv = torch.full_like(s, s_next)
            corners2 = self.lag_rows(sv, lags_next) if self.L else None
            zi2, lo2, w2 = self.prices(b_tab, sv, g_next, corners2)
            r2 = blend(self.r_grid, lo2, w2)
            b2 = self.savings(b_tab, zi2, lo2, w2, corners2)
            c2 = (self.cash[zi2] - b2 / (1.0 + r2)[:, None]).clamp(min=cal.c_min)
            mu2 = c2.pow(-cal.crra).view(-1, cal.n_b, ny)  # [n, nb, y']
            mu_lo = torch.gather(mu2, 1, lo_b.view(-1, self.J, 1).expand(-1, -1, ny))
            mu_hi = torch.gather(mu2, 1, (lo_b + 1).view(-1, self.J, 1).expand(-1, -1, ny))
            mu_at = mu_lo * (1 - w_b[..., None]) + mu_hi * w_b[..., None]  # [n, J, y']
            emu += prob[:, None] * (mu_at * self.P_y[self.y_index]).sum(-1)
        c_euler = (cal.beta * (1.0 + r)[:, None] * emu).pow(-1.0 / cal.crra)
        err = torch.log10((c_euler / c - 1.0).abs().clamp(min=1e-16))
        unconstrained = b_next > cal.borrowing_limit + 1e-6
        ergodic = g > 1e-7
        return torch.where(unconstrained & ergodic & (c > cal.c_min), err, torch.full_like(err, float("nan"))), g

    @torch.no_grad()
    def consumption(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Consumption [n, J] at the cleared rate of the state's paths (and its lagged rates)."""
        _, b_tab = self.tables()
        g, s = state["g"].to(self.device, self.dtype), state["s"]
        corners = self.lag_rows(s, self._lags(state, g.shape[0])) if self.L else None
        zi, lo, w = self.prices(b_tab, s, g, corners)
        r = blend(self.r_grid, lo, w)
        return self.cash[zi] - self.savings(b_tab, zi, lo, w, corners) / (1.0 + r)[:, None]
