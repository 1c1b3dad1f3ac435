"""Krusell-Smith, SRL variant: households observe (r, w), never the distribution.

    c + k' = (1 + r) k + w y,   k' >= 0,   u(c) = c^(1-crra) / (1-crra)
    K = sum_j k_j g_j,   r = alpha z K^(alpha-1) - delta,   w = (1-alpha) z K^alpha   (L = 1)
No root-finding: K is a dot product with the (detached) histogram. The policy is a consumption share
s(k, y, r, w) of cash on hand, a table on the r grid x w grid, bilinear between nodes, monotone
(non-increasing) in r by construction. With `price_lags` = L > 0 the share is s(k, y, r_-1[, r_-2], r, w):
the table's rows are (w node, lag node) pairs, w major, multilinear in the lagged rates (lags.lag_corners).
The state carries the last L rates per path (state["lags"] [N, L]); a fresh start takes the rate of its
first period, computed from the initial histogram before anyone acts. (K_{t-1} needs no axis of its
own: it is recoverable from r_{t-1} and z_{t-1}.)
"""

from __future__ import annotations

from typing import Any

import torch

from ..core import grids, policy, terminal
from ..kernels import fused
from ..config import KSCalibration
from ..core.distribution import income_index, lottery, point_mass, young_step
from ..core.maths import crra_utility, uniform_bracket
from ..core.household import HouseholdModel
from ..core import lagged as price_lags


class KrusellSmith(HouseholdModel):
    """SRL model object for `ks`."""

    def __init__(self, cal: KSCalibration):
        super().__init__(cal)
        dev, dt = self.device, self.dtype
        z, self.P_exo64 = grids.tauchen(cal.rho_z, cal.sd_z, cal.n_z)
        self.z_grid, self.n_z = z.to(dev, dt), z.numel()
        self.r_grid = self.price_grid(cal.r_min, cal.r_max, cal.n_r)
        self.w_grid = self.price_grid(cal.w_min, cal.w_max, cal.n_w)
        self.dr = (cal.r_max - cal.r_min) / (cal.n_r - 1)
        self.dw = (cal.w_max - cal.w_min) / (cal.n_w - 1)
        nb, ny = cal.n_b, self.y_grid.numel()
        self.J = nb * ny
        self.y_index = income_index(nb, ny, dev)
        self.b_j = self.b_grid.repeat_interleave(ny)
        self.y_j = self.y_grid.repeat(nb)
        self.L, self.n_lag = cal.price_lags, cal.n_lag
        self.M = cal.n_lag ** self.L  # lag nodes per w node: table rows are (w, lag node), w major
        self.lag_step = price_lags.lag_step(cal)
        # today's no-lag guess copied across the lag nodes: at initialisation the lags change nothing
        self.first, self.incr = policy.to_params(self._initial_share().repeat_interleave(self.M, 0))
        self.params = [self.first, self.incr]
        self.param_names = ("share_first", "share_incr")  # consumption share: first price node, increments
        self.lookup = (fused.asset_lookup(cal.borrowing_limit, cal.b_max, cal.n_b)
                       if fused.wanted(cal, self.device) else None)
        self.fused = self.lookup is not None

    def _initial_share(self) -> torch.Tensor:
        """Constant-price optimum on the (w, j, r) grid: perfect-foresight permanent income."""
        cal = self.cal
        R = 1.0 + self.r_grid  # [nr]
        mpc = 1.0 - (cal.beta * R).pow(1.0 / cal.crra) / R
        w = self.w_grid[:, None, None]
        cash = R * self.b_j[None, :, None] + w * self.y_j[None, :, None]  # [nw, J, nr]
        human = w * (self.y_dist * self.y_grid).sum() / self.r_grid
        share = (mpc * (cash + human) / cash).clamp(1e-3, 1.0)
        return torch.cummin(share, dim=-1).values

    def project(self) -> None:
        policy.project(self.first, self.incr, 0.0, 1.0, decreasing=True)

    def share_table(self) -> torch.Tensor:
        """Consumption share [nw M, nr, J] (differentiable; row = w node M + lag node, M = 1 without lags)."""
        return policy.to_values(self.first, self.incr).transpose(1, 2)

    # ---------------------------------------------------------------- simulation
    def rep_agent_K(self) -> float:
        cal = self.cal
        return (cal.alpha / (1.0 / cal.beta - 1.0 + cal.delta)) ** (1.0 / (1.0 - cal.alpha))

    def initial_state(self) -> dict[str, torch.Tensor]:
        """Warm-up start: all capital at the representative-agent steady state, y stationary."""
        N = self.cal.n_paths
        g = point_mass(self.b_grid, self.rep_agent_K(), self.y_dist).expand(N, self.J).clone()
        state = {"g": g, "s": torch.full((N,), self.n_z // 2, dtype=torch.long)}
        if self.L:
            state["lags"] = self.initial_lags(g, state["s"])
        return state

    @torch.no_grad()
    def initial_lags(self, g: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Lagged rates of a fresh start [N, L]: the rate of its first period, from g and z before acting."""
        _, r, _ = self.prices(g.to(self.device, self.dtype), s)
        return r[:, None].expand(-1, self.L).contiguous()

    def _lags(self, state, n: int):
        """The state's lagged rates [n, L] (a fresh start's when it has none); None without lags."""
        if not self.L:
            return None
        lags = state.get("lags")
        if lags is None:
            return self.initial_lags(state["g"][:n], state["s"][:n])
        return lags[:n].to(self.device, self.dtype)

    def draw_shocks(self, state, gen):
        return {"s": grids.simulate_chain(self.P_exo64, state["s"].cpu(), self.T + 1, gen,
                                          walk=fused.chain_walk()).to(self.device)}

    def prices(self, g: torch.Tensor, zi: torch.Tensor):
        """(K, r, w) of histograms g [N, J] at TFP nodes zi [N]."""
        cal = self.cal
        K = (self.b_j * g).sum(1).clamp(min=1e-6)
        z = self.z_grid[zi]
        return K, cal.alpha * z * K.pow(cal.alpha - 1) - cal.delta, (1 - cal.alpha) * z * K.pow(cal.alpha)

    def act(self, share_tab: torch.Tensor, r: torch.Tensor, w: torch.Tensor, lags=None):
        """(consumption, k') [N, J] at prices (r, w) [N] (and lagged rates [N, L]): bilinear in (r, w),
        multilinear in the lags."""
        cal = self.cal
        lo_r, a_r = uniform_bracket(cal.r_min, self.dr, cal.n_r, r)
        lo_w, a_w = uniform_bracket(cal.w_min, self.dw, cal.n_w, w)
        a_r, a_w = a_r[:, None], a_w[:, None]
        def at(i, k):  # rows of the [nw M, nr, J] table, with a reproducible gradient
            return policy.rows(share_tab, i, k)

        def bilinear(row_lo, row_hi):
            s_lo = at(row_lo, lo_r) * (1 - a_r) + at(row_lo, lo_r + 1) * a_r
            s_hi = at(row_hi, lo_r) * (1 - a_r) + at(row_hi, lo_r + 1) * a_r
            return s_lo * (1 - a_w) + s_hi * a_w

        if self.L:
            if lags is None:
                raise ValueError("this Krusell-Smith policy has price lags: pass the lagged rates")
            m, wts = price_lags.lag_corners(lags, cal.r_min, self.lag_step, self.n_lag)
            share = None
            for k in range(m.shape[1]):
                x = wts[:, k, None] * bilinear(lo_w * self.M + m[:, k], (lo_w + 1) * self.M + m[:, k])
                share = x if share is None else share + x
        else:
            share = bilinear(lo_w, lo_w + 1)
        cash = (1.0 + r)[:, None] * self.b_j + w[:, None] * self.y_j
        c = torch.minimum((share * cash).clamp(min=cal.c_min), cash - cal.borrowing_limit)
        return c, cash - c

    @torch.no_grad()
    def terminal_value(self, share_tab: torch.Tensor, g: torch.Tensor, s: torch.Tensor) -> torch.Tensor | None:
        """V [N, J] of the continuation value at the horizon (core/terminal.py), None if terminal='none':
        the policy's value at the prices of the starting histograms g, TFP nodes s (prices held
        constant: with price lags, every lagged rate equals today's)."""
        cal = self.cal
        if cal.terminal == "none":
            return None
        pick = terminal.paths(g.shape[0])
        _, r, w = self.prices(g[pick], s[pick])
        lags = r[:, None].expand(-1, self.L).contiguous() if self.L else None
        c, k_next = self.act(share_tab, r, w, lags)
        V = terminal.policy_value(crra_utility(c, cal.crra), k_next, self.b_grid, self.P_y, cal.beta, self.locate)
        return V.to(self.dtype).expand(g.shape[0], -1).contiguous()

    def rollout(self, state, shocks, record: bool = False):
        if self.fused:
            return self._rollout_fused(state, shocks, record)
        cal, T = self.cal, self.T
        share_tab = self.share_table()
        g = state["g"].to(self.device, self.dtype)
        d = torch.full_like(g, 1.0 / self.J)
        s_path = shocks["s"]
        V = self.terminal_value(share_tab.detach(), g, s_path[0])
        obj = torch.zeros(g.shape[0], device=self.device, dtype=self.dtype)
        lags = self._lags(state, g.shape[0])
        keys = ("r", "w", "K", "z", "C", "Y", "resid", "at_limit", "U") + (("r_lag",) if self.L else ())
        rec: dict[str, list] = {k: [] for k in keys}
        resid_max = torch.zeros((), device=self.device, dtype=self.dtype)
        r_sum = torch.zeros((), device=self.device, dtype=self.dtype)
        for t in range(T):
            with torch.no_grad():
                K, r, w = self.prices(g, s_path[t])
            c, k_next = self.act(share_tab, r, w, lags)
            u = crra_utility(c, cal.crra)
            obj = obj + cal.beta ** t * (d * u).sum(1)
            lo_b, w_b = lottery(self.b_grid, k_next, self.locate)
            with torch.no_grad():
                savings = (k_next.detach() * g).sum(1)
                C = (c.detach() * g).sum(1) if record else None
                U = (u.detach() * g).sum(1) if record else None
                at_limit = g.view(g.shape[0], cal.n_b, -1)[:, 0].sum(1) if record else None
                g = young_step(g, lo_b, w_b.detach(), self.P_y, self.y_index)
                resid = (self.b_j * g).sum(1) - savings  # K_{t+1} vs aggregate saving: lottery error
                resid_max = torch.maximum(resid_max, resid.abs().max())
                r_sum = r_sum + r.mean()
                if record:
                    z = self.z_grid[s_path[t]]
                    vals = dict(r=r, w=w, K=K, z=z, C=C, Y=z * K.pow(cal.alpha), resid=resid,
                                at_limit=at_limit, U=U)
                    if self.L:
                        vals["r_lag"] = lags[:, 0]
                    for k in keys:
                        rec[k].append(vals[k])
                if self.L:
                    lags = price_lags.shift(lags, r)
            d = young_step(d, lo_b, w_b, self.P_y, self.y_index)
        if V is not None:  # continuation value at the horizon, through d_T only
            obj = obj + cal.beta ** T * (d * V).sum(1)
        out: dict[str, Any] = {"price_mean": float(r_sum / T), "residual_max": float(resid_max)}
        if record:
            out.update({k: torch.stack(v) for k, v in rec.items()})
        final = {"g": g.detach(), "s": s_path[T]}
        if self.L:
            final["lags"] = lags
        return (1 - cal.beta) * obj.mean(), final, out

    def _rollout_fused(self, state, shocks, record: bool):
        """`rollout` by the fused CPU kernel (same maths; fused.py)."""
        cal, T, mod = self.cal, self.T, fused.load()
        share_tab = self.share_table()
        g0 = state["g"].to(self.device, self.dtype).contiguous()
        s_path = shocks["s"][:T].contiguous()
        lk = self.lookup
        vecs = (self.b_j.contiguous(), self.y_j.contiguous())
        grid = (self.P_y.contiguous(), self.b_grid.contiguous(), lk.lut, lk.bmin, lk.inv_h)
        prices = (cal.r_min, self.dr, cal.w_min, self.dw)
        V = self.terminal_value(share_tab.detach(), g0, s_path[0])
        V = V if V is not None else g0.new_empty(0)
        lags0 = self._lags(state, g0.shape[0])
        lag_args = ((lags0 if self.L else torch.zeros(g0.shape[0], 0, dtype=g0.dtype)).contiguous(),
                    [cal.r_min, self.lag_step, float(self.n_lag)])

        def fwd(S):
            names = ("obj", "g", "d_hist", "r", "w", "resid", "rec", "lags")
            return dict(zip(names, mod.ks_forward(
                S, *vecs, self.z_grid.contiguous(), s_path, g0, *grid, T, cal.beta, cal.crra, cal.c_min,
                cal.borrowing_limit, cal.alpha, cal.delta, *prices, record,
                fused.HISTORY.take((T, g0.shape[0], g0.shape[1]), g0.dtype), V, *lag_args)))

        def bwd(grad_obj, S, res):
            return mod.ks_backward(grad_obj, S, *vecs, res["d_hist"], res["r"], res["w"], *grid, cal.beta,
                                   cal.crra, cal.c_min, cal.borrowing_limit, *prices, V, *lag_args)

        obj, res = fused.rollout(share_tab, fwd, bwd)
        out: dict[str, Any] = {"price_mean": float(res["r"].mean()),
                               "residual_max": float(res["resid"].abs().max())}
        if record:
            K, C, at_limit, U = res["rec"].unbind(0)
            z = self.z_grid[s_path]
            out.update(r=res["r"], w=res["w"], K=K, z=z, C=C, Y=z * K.pow(cal.alpha), resid=res["resid"],
                       at_limit=at_limit, U=U)
            if self.L:
                out["r_lag"] = torch.cat([lags0[None, :, 0], res["r"][:-1]], 0)
        final = {"g": res["g"].detach(), "s": shocks["s"][T]}
        if self.L:
            final["lags"] = res["lags"]
        return (1 - cal.beta) * obj.mean(), final, out

    # ---------------------------------------------------------------- accuracy
    @torch.no_grad()
    def euler_errors(self, state, n_paths: int = 8):
        """(log10 |1 - c_euler/c|, histogram) [n, J]; c_euler = (beta E[(1+r') c'^-crra])^(-1/crra)."""
        cal = self.cal
        share_tab = self.share_table()
        g, s = state["g"][:n_paths].to(self.device, self.dtype), state["s"][:n_paths]
        lags = self._lags(state, g.shape[0])
        _, r, w = self.prices(g, s)
        c, k_next = self.act(share_tab, r, w, lags)
        lags_next = price_lags.shift(lags, r) if self.L else None  # today's rate is tomorrow's r_-1
        lo_b, w_b = lottery(self.b_grid, k_next, self.locate)
        g_next = young_step(g, lo_b, w_b, self.P_y, self.y_index)
        P_z = self.P_exo64.to(self.device, self.dtype)
        ny = self.y_grid.numel()
        emu = torch.zeros_like(c)
        for z_next in range(self.n_z):
            prob = P_z[s, z_next]
            _, r2, w2 = self.prices(g_next, torch.full_like(s, z_next))
            c2, _ = self.act(share_tab, r2, w2, lags_next)
            mu2 = ((1.0 + r2)[:, None] * c2.pow(-cal.crra)).view(-1, cal.n_b, ny)
            idx = lo_b.view(-1, self.J, 1).expand(-1, -1, ny)
            mu_at = torch.gather(mu2, 1, idx) * (1 - w_b[..., None]) + torch.gather(mu2, 1, idx + 1) * w_b[..., None]
            emu += prob[:, None] * (mu_at * self.P_y[self.y_index]).sum(-1)
        c_euler = (cal.beta * emu).pow(-1.0 / cal.crra)
        err = torch.log10((c_euler / c - 1.0).abs().clamp(min=1e-16))
        ok = (k_next > cal.borrowing_limit + 1e-6) & (g > 1e-7) & (c > cal.c_min)
        return torch.where(ok, err, torch.full_like(err, float("nan"))), g

    @torch.no_grad()
    def consumption(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Consumption [n, J] at the prices of the state's paths (and its lagged rates)."""
        g = state["g"].to(self.device, self.dtype)
        _, r, w = self.prices(g, state["s"])
        return self.act(self.share_table(), r, w, self._lags(state, g.shape[0]))[0]
