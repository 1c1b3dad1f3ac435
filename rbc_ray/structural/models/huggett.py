"""Huggett (1993) with aggregate risk, and its partial-equilibrium cousin, solved by SRL.

Household with assets b, income y (Markov), aggregate TFP z (Markov), bond price q = 1/(1+r):
    c + b' / (1 + r) = b + z y,    b' >= borrowing_limit,    u(c) = c^(1-crra) / (1-crra).
Policy: consumption share s(b, y, z, r) of the most the household can consume, cash - q*b_min,
monotone (non-increasing) in r. General equilibrium: each period r clears sum_j b'_j g_j = bond_supply
by interpolation on the r grid. Partial equilibrium: r follows an exogenous chain on the same grid.
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
        self.first, self.incr = policy.to_params(self._initial_share())
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
        """(consumption c, savings b') at every (z, r-node, j): [nz, nr, J] each, differentiable."""
        share = policy.to_values(self.first, self.incr)  # [nz, J, nr]
        c = (share * self.c_max).clamp(min=self.cal.c_min)
        c = torch.minimum(c, self.c_max)
        b_next = (self.cash[:, :, None] - c) * (1.0 + self.r_grid)
        return c.transpose(1, 2), b_next.transpose(1, 2)

    # ---------------------------------------------------------------- simulation
    def initial_state(self) -> dict[str, torch.Tensor]:
        """Warm-up start: all paths at b = bond supply (mean-preserving split), y stationary, z median."""
        N = self.cal.n_paths
        b0 = 0.0 if self.partial else self.cal.bond_supply
        g = point_mass(self.b_grid, b0, self.y_dist).expand(N, self.J).clone()
        mid = (self.cal.n_r // 2) if self.partial else self.n_z // 2
        return {"g": g, "s": torch.full((N,), mid, dtype=torch.long)}

    def draw_shocks(self, state: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Aggregate-state indices [T+1, N] (z node, or r node in partial equilibrium)."""
        return {"s": grids.simulate_chain(self.P_exo64, state["s"].cpu(), self.T + 1, gen,
                                          walk=fused.chain_walk()).to(self.device)}

    def prices(self, b_tab: torch.Tensor, s: torch.Tensor, g: torch.Tensor):
        """(z index, r-node lo, weight on lo+1) for aggregate states s [N] and distributions g."""
        if self.partial:
            return torch.zeros_like(s), s.clamp(max=self.cal.n_r - 2), (s == self.cal.n_r - 1).to(g.dtype)
        S = aggregate_schedule(b_tab, s, g)  # [N, nr] bond demand at each r node
        lo, w = bracket(S, self.cal.bond_supply)
        return s, lo, w

    def _step(self, c_tab, b_tab, g, d, s, record: bool):
        """One period on all paths: clear the market, act, weight utility, move both histograms."""
        cal = self.cal
        zi, lo, w = self.prices(b_tab.detach(), s, g)
        r = blend(self.r_grid, lo, w)
        w_ = w[:, None]
        b_next = policy.rows(b_tab, zi, lo) * (1 - w_) + policy.rows(b_tab, zi, lo + 1) * w_  # blended at the cleared r
        c = self.cash[zi] - b_next / (1.0 + r)[:, None]
        u = crra_utility(c.clamp(min=cal.c_min), cal.crra)
        u_t = (d * u).sum(1)
        lo_b, w_b = lottery(self.b_grid, b_next, self.locate)
        stats: dict[str, torch.Tensor] = {"r": r}
        with torch.no_grad():
            demand = (b_next.detach() * g).sum(1)
            stats["resid"] = demand - (0.0 if self.partial else cal.bond_supply)
            if record:
                N = g.shape[0]
                stats.update(z=self.z_grid[zi], B=demand, C=(c.detach() * g).sum(1),
                             Ey=(self.y_j * g).sum(1), at_limit=g.view(N, cal.n_b, -1)[:, 0].sum(1))
            g = young_step(g, lo_b, w_b.detach(), self.P_y, self.y_index)
        d = young_step(d, lo_b, w_b, self.P_y, self.y_index)
        return u_t, g, d, stats

    @torch.no_grad()
    def terminal_value(self, b_tab: torch.Tensor, g: torch.Tensor, s: torch.Tensor) -> torch.Tensor | None:
        """V [N, J] of the continuation value at the horizon (core/terminal.py), None if terminal='none':
        the policy's value at the prices that clear on the starting histograms g, states s."""
        cal = self.cal
        if cal.terminal == "none":
            return None
        N, pick = g.shape[0], terminal.paths(g.shape[0])
        g, s = g[pick], s[pick]
        zi, lo, w = self.prices(b_tab, s, g)
        r, w_ = blend(self.r_grid, lo, w), w[:, None]
        b_next = policy.rows(b_tab, zi, lo) * (1 - w_) + policy.rows(b_tab, zi, lo + 1) * w_
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
        V = self.terminal_value(b_det, g, s_path[0])
        obj = torch.zeros(N, device=self.device, dtype=self.dtype)
        rec: dict[str, list] = {k: [] for k in ("r", "z", "C", "B", "Ey", "resid", "at_limit")}
        resid_max = torch.zeros((), device=self.device, dtype=self.dtype)
        r_sum = torch.zeros((), device=self.device, dtype=self.dtype)
        for t in range(T):
            u_t, g, d, stats = self._step(c_tab, b_tab, g, d, s_path[t], record)
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
        return objective, {"g": g.detach(), "s": s_path[T]}, out

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
        V = self.terminal_value(b_tab.detach(), g0, s_path[0])
        V = V if V is not None else g0.new_empty(0)

        def fwd(B):
            names = ("obj", "g", "d_hist", "zi", "lo_r", "w_r", "r", "resid", "rec")
            return dict(zip(names, mod.huggett_forward(
                B, self.cash.contiguous(), self.r_grid.contiguous(), s_path, g0, *consts,
                self.y_j.contiguous(), T, cal.beta, cal.crra, cal.c_min, cal.bond_supply, self.partial,
                evolve_g, record, fused.HISTORY.take((T, g0.shape[0], g0.shape[1]), g0.dtype), V)))

        def bwd(grad_obj, B, res):
            return mod.huggett_backward(grad_obj, B, self.cash.contiguous(), res["d_hist"], res["zi"],
                                        res["lo_r"], res["w_r"], res["r"], *consts, cal.beta, cal.crra,
                                        cal.c_min, V)

        obj, res = fused.rollout(b_tab, fwd, bwd)
        objective = (1 - cal.beta) * obj.mean()
        out: dict[str, Any] = {"price_mean": float(res["r"].mean()),
                               "residual_max": float(res["resid"].abs().max())}
        if record:
            demand, C, Ey, at_limit = res["rec"].unbind(0)
            out.update(r=res["r"], z=self.z_grid[res["zi"]], C=C, B=demand, Ey=Ey, resid=res["resid"],
                       at_limit=at_limit)
        g_T = res["g"] if evolve_g else g0
        return objective, {"g": g_T.detach(), "s": shocks["s"][T]}, out

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
        zi, lo, w = self.prices(b_tab, s, g)
        r = blend(self.r_grid, lo, w)
        b_next = b_tab[zi, lo] * (1 - w[:, None]) + b_tab[zi, lo + 1] * w[:, None]
        c = self.cash[zi] - b_next / (1.0 + r)[:, None]
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
            zi2, lo2, w2 = self.prices(b_tab, sv, g_next)
            r2 = blend(self.r_grid, lo2, w2)
            b2 = b_tab[zi2, lo2] * (1 - w2[:, None]) + b_tab[zi2, lo2 + 1] * w2[:, None]
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
