"""One-asset HANK with Rotemberg pricing, solved by SRL (households and firm trained together).

Households (b >= 0, income y): u = log c - n^(1+1/frisch)/(1+1/frisch),
    c + b' = (1 + r) b + y (w n + tau),  tau E[y] = T = dividends - tax   (transfers and taxes in
    proportion to productivity, so that cash on hand stays positive at b = 0; hours n >= n_min).
    The government keeps the bond supply at B: tax = (1 + r) D - B with D = sum b g the bonds
    outstanding, i.e. the spec's r B whenever D = B (markets cleared last period). Aggregating the
    budgets, B' - B = z (1 - theta/2 pi^2) L - C: the bond gap is this period's goods-market error
    only (rolling D over instead, as a tax of r D would, carries any past error forever).
Policies c = s(b, y, r, w) * cash (s monotone non-increasing in r) and hours n(b, y, r, w)
(monotone non-decreasing in w).
Firm: inflation pi = Pi(w, z), trained to maximise discounted real profits with Rotemberg costs
    (p^(1-eps) - (w/z) p^-eps) Y - theta/2 pi^2 Y, own relative price p moved by own minus aggregate
    inflation (aggregate detached: the firm is a price taker), which reproduces the forward-looking
    Phillips curve theta pi_t = eps (w_t/z_t - (eps-1)/eps) + beta theta E[pi_{t+1} Y_{t+1}/Y_t].
Central bank: 1 + i = R_bar (1+pi)^phi_pi m (Taylor, m a monetary shock); Fisher 1 + r = (1+i)/(1+pi),
    the realised real return on bonds. Output Y = z L with effective hours L = sum y n g.
Clearing: the wage w clears the labour market, L = (C + costs)/z, by interpolation on the w grid
(r and pi follow w through Pi and the Taylor rule), written in its goods-market form
z (1 - theta/2 pi^2) L - C = 0 node by node. Households act at the two bracketing nodes (each node's
budget holds) and blend consumption, hours and savings with the clearing weights, so the bond market
clears by Walras' law: the bond gap (sum b' g - B) / B is nonzero only where the clearing wage leaves
the (extrapolated) grid or the lottery clamps. The labour gap, labour supplied minus labour needed at
the *cleared* prices and inflation, measures the interpolation error itself.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core import grids, policy, terminal
from ..kernels import fused
from ..config import HANKCalibration
from ..core.distribution import income_index, lottery, point_mass, young_step
from ..core.maths import uniform_bracket
from ..core.market import bracket
from ..core.household import HouseholdModel


class HANK(HouseholdModel):
    """SRL model object for `hank`."""

    def __init__(self, cal: HANKCalibration):
        super().__init__(cal)
        dev, dt = self.device, self.dtype
        z, P_z = grids.tauchen(cal.rho_z, cal.sd_z, cal.n_z)
        m, P_m = grids.tauchen(cal.rho_m, cal.sd_m, cal.n_m)
        self.z_grid, self.m_grid, self.n_z, self.n_m = z.to(dev, dt), m.to(dev, dt), z.numel(), m.numel()
        self.P_exo64 = torch.kron(P_z, P_m)  # joint (z, m) chain, index s = iz * n_m + im
        self.r_grid = self.price_grid(cal.r_min, cal.r_max, cal.n_r)
        self.w_grid = self.price_grid(cal.w_min, cal.w_max, cal.n_w)
        self.dr = (cal.r_max - cal.r_min) / (cal.n_r - 1)
        nb, ny = cal.n_b, self.y_grid.numel()
        self.J = nb * ny
        self.y_index = income_index(nb, ny, dev)
        self.b_j = self.b_grid.repeat_interleave(ny)
        self.y_j = self.y_grid.repeat(nb)
        share0 = self._initial_share()  # [nw, J, nr]
        self.first, self.incr = policy.to_params(share0)
        self.h_first, self.h_incr = policy.to_params(self._initial_hours(share0).permute(1, 2, 0))
        mc = self.w_grid[:, None] / self.z_grid[None, :]
        pi0 = (cal.epsilon / cal.theta) * (mc - (cal.epsilon - 1) / cal.epsilon)
        self.pi_first, self.pi_incr = policy.to_params(pi0.clamp(-cal.pi_max, cal.pi_max).T.contiguous())
        self.params = [self.first, self.incr, self.h_first, self.h_incr, self.pi_first, self.pi_incr]
        self.param_names = ("share_first", "share_incr", "hours_first", "hours_incr", "inflation_first",
                            "inflation_incr")
        self.clip_groups = [[self.first, self.incr, self.h_first, self.h_incr], [self.pi_first, self.pi_incr]]
        self.lr_scales = [1.0, 1.0, 1.0, 1.0, cal.lr_firm_scale, cal.lr_firm_scale]
        # on CPU the rollout is one C++ pass (fused.py); the clearing schedule and the households'
        # step of `equilibrium` (Euler errors) are C++ too
        self.fused = fused.wanted(cal, self.device)
        self.lookup = fused.asset_lookup(cal.borrowing_limit, cal.b_max, cal.n_b) if self.fused else None

    def _initial_share(self) -> torch.Tensor:
        """Log-utility permanent-income guess at unit hours, zero transfers: [nw, J, nr]."""
        cal = self.cal
        R = 1.0 + self.r_grid
        w = self.w_grid[:, None, None]
        cash = R * self.b_j[None, :, None] + w * self.y_j[None, :, None]
        human = w * (self.y_dist * self.y_grid).sum() / self.r_grid
        share = ((1 - cal.beta) * (cash + human) / cash).clamp(1e-3, 1.0)
        return torch.cummin(share, dim=-1).values

    def _initial_hours(self, share0: torch.Tensor) -> torch.Tensor:
        """Intratemporal optimum n = (w y / c)^frisch at the initial consumption (unit-hours cash),
        so that effective labour supply rises with w from the first epoch: [nw, nr, J]."""
        cal = self.cal
        w = self.w_grid[:, None, None]
        cash = (1.0 + self.r_grid) * self.b_j[None, :, None] + w * self.y_j[None, :, None]
        c0 = (share0 * cash).clamp(min=cal.c_min)
        n0 = (w * self.y_j[None, :, None] / c0).pow(cal.frisch).clamp(cal.n_min, cal.n_max)
        return n0.transpose(1, 2).contiguous()

    def project(self) -> None:
        cal = self.cal
        policy.project(self.first, self.incr, 0.0, 1.0, decreasing=True)
        policy.project(self.h_first, self.h_incr, cal.n_min, cal.n_max, decreasing=False)
        policy.project(self.pi_first, self.pi_incr, -cal.pi_max, cal.pi_max, decreasing=False)

    def utility(self, c: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        k = 1.0 + 1.0 / self.cal.frisch
        return torch.log(c.clamp(min=self.cal.c_min)) - n.pow(k) / k

    # ---------------------------------------------------------------- one period
    def _node_actions(self, share_tab, hours_tab, k, lo_r, a_r):
        """Share and hours at w nodes k with r interpolated (lo_r, a_r): [..., J].

        Rows of the [nw * nr, J] tables are picked by index_select: its backward is a row-wise
        index_add, where fancy indexing's is a sorted index_put (a sixth of a CPU epoch)."""
        nr, J = share_tab.shape[1], share_tab.shape[2]
        row = (k * nr + lo_r).reshape(-1)
        rows = torch.stack([row, row + 1], 1).reshape(-1)  # lo and lo + 1 of each entry, adjacent
        a = a_r[..., None]

        def interpolate(tab):
            pair = tab.reshape(-1, J).index_select(0, rows).view(*k.shape, 2, J)
            return pair[..., 0, :] * (1 - a) + pair[..., 1, :] * a

        return interpolate(share_tab), interpolate(hours_tab)

    def _clearing_schedule(self, share_tab, hours_tab, lo_r, a_r, r_k, cost_k, z, g):
        """Labour L, consumption C and transfer per unit of productivity tau at every w node, each
        [N, nw], households acting at each node (the torch definition; fused.hank_clearing on CPU)."""
        cal = self.cal
        N = g.shape[0]
        k = torch.arange(cal.n_w, device=g.device).expand(N, -1)
        S, H = self._node_actions(share_tab, hours_tab, k, lo_r, a_r)
        yg = (self.y_j * g)[:, :, None]
        L_k = torch.bmm(H, yg).squeeze(-1)
        debt = (self.b_j * g).sum(1, keepdim=True)  # bonds outstanding (= B when markets cleared)
        # government budget with the bond supply held at B: tax = (1 + r) debt - B, which is the
        # spec's r B whenever debt = B; off that path a clearing error is not rolled over forever
        T_k = L_k * (z[:, None] * cost_k - self.w_grid) - r_k * debt - (debt - cal.bond_supply)
        tau_k = T_k / (self.y_j * g).sum(1, keepdim=True)  # transfers paid in proportion to y
        # consumption at every w node exactly as households will act there (same clamps)
        cash_k = (1 + r_k)[..., None] * self.b_j + self.y_j * (self.w_grid[:, None] * H + tau_k[..., None])
        c_k = torch.minimum((S * cash_k).clamp(min=cal.c_min), cash_k - cal.borrowing_limit)
        C_k = torch.bmm(c_k, g[:, :, None]).squeeze(-1)
        return L_k, C_k, tau_k

    def _households(self, share_tab, hours_tab, lo_hi, lo_r2, a_r2, wts, r2, w2, tau2):
        """Consumption, hours and savings [N, J]: households act at the two bracketing w nodes lo_hi
        (node prices r2, w2 and transfers tau2), blended with the clearing weights wts (the torch
        definition; fused.hank_households on CPU)."""
        cal = self.cal
        s2, n2 = self._node_actions(share_tab, hours_tab, lo_hi, lo_r2, a_r2)
        cash2 = (1 + r2)[..., None] * self.b_j + self.y_j * (w2[..., None] * n2 + tau2[..., None])
        c2 = torch.minimum((s2 * cash2).clamp(min=cal.c_min), cash2 - cal.borrowing_limit)
        c = (c2 * wts[..., None]).sum(1)
        hours = (n2 * wts[..., None]).sum(1)
        b_next = ((cash2 - c2) * wts[..., None]).sum(1)  # each node's budget holds; blended like c, n
        return c, hours, b_next

    def equilibrium(self, share_tab, hours_tab, Pi, g, s) -> dict[str, torch.Tensor]:
        """Clear the labour market on the w grid for paths with histograms g and exogenous states s.

        Returns prices (detached), household actions (differentiable in the tables), the firm's
        own inflation (differentiable in Pi) and aggregates.
        """
        cal = self.cal
        zi, mi = s // self.n_m, s % self.n_m
        z, m = self.z_grid[zi], self.m_grid[mi]
        N = g.shape[0]
        with torch.no_grad():
            pi_k = Pi.detach()[:, zi].T  # [N, nw]
            r_k = cal.R_bar * (1 + pi_k).pow(cal.phi_pi - 1) * m[:, None] - 1
            lo_r, a_r = uniform_bracket(cal.r_min, self.dr, cal.n_r, r_k)
            cost_k = 1 - cal.theta / 2 * pi_k.pow(2)
            if self.fused:
                L_k, C_k, tau_k = fused.hank_clearing(
                    share_tab, hours_tab, lo_r, a_r, r_k, cost_k, z, g, self.y_j, self.b_j, self.w_grid,
                    cal.bond_supply, cal.c_min, cal.borrowing_limit)
            else:
                L_k, C_k, tau_k = self._clearing_schedule(share_tab.detach(), hours_tab.detach(), lo_r, a_r,
                                                          r_k, cost_k, z, g)
            excess_supply = z[:, None] * cost_k * L_k - C_k  # = z cost (L - labour demand): same root
            lo, om = bracket(excess_supply, 0.0, extrapolate=cal.w_extrapolate)
            rows = torch.arange(N, device=g.device)
            lo_hi = torch.stack([lo, lo + 1], 1)  # [N, 2]
            wts = torch.stack([1 - om, om], 1)
            pi_star = (pi_k[rows[:, None], lo_hi] * wts).sum(1)
            r_star = (r_k[rows[:, None], lo_hi] * wts).sum(1)
            w_star = (self.w_grid[lo_hi] * wts).sum(1)
            tau2 = tau_k[rows[:, None], lo_hi]  # [N, 2]
            r2 = r_k[rows[:, None], lo_hi]
            w2 = self.w_grid[lo_hi]
        # actions at the two bracketing nodes (node prices and transfers), then blended linearly, so
        # that aggregate hours and consumption are exactly the interpolated clearing schedule
        lo_r2, a_r2 = lo_r[rows[:, None], lo_hi], a_r[rows[:, None], lo_hi]
        if self.fused:
            c, hours, b_next = fused.hank_households(
                share_tab, hours_tab, lo_hi * cal.n_r + lo_r2, a_r2, wts, 1 + r2, w2, tau2, self.b_j, self.y_j,
                cal.c_min, cal.borrowing_limit)
        else:
            c, hours, b_next = self._households(share_tab, hours_tab, lo_hi, lo_r2, a_r2, wts, r2, w2, tau2)
        with torch.no_grad():
            L = (self.y_j * hours.detach() * g).sum(1)
            Y = z * L
            C = (c.detach() * g).sum(1)
            # accuracy at the cleared prices themselves (not node by node): labour supplied vs needed
            labour_gap = (L - C / (z * (1 - cal.theta / 2 * pi_star.pow(2)))) / L
        pi_own = (policy.gather(Pi, lo_hi, zi[:, None]) * wts).sum(1)
        return dict(r=r_star, w=w_star, pi=pi_star, z=z, L=L, Y=Y, C=C, c=c, n=hours,
                    b_next=b_next, pi_own=pi_own, labour_gap=labour_gap)

    # ---------------------------------------------------------------- simulation
    def initial_state(self) -> dict[str, torch.Tensor]:
        N = self.cal.n_paths
        g = point_mass(self.b_grid, self.cal.bond_supply, self.y_dist).expand(N, self.J).clone()
        mid = (self.n_z // 2) * self.n_m + self.n_m // 2
        return {"g": g, "s": torch.full((N,), mid, dtype=torch.long)}

    def draw_shocks(self, state, gen):
        return {"s": grids.simulate_chain(self.P_exo64, state["s"].cpu(), self.T + 1, gen,
                                          walk=fused.chain_walk()).to(self.device)}

    @property
    def Pi(self) -> torch.Tensor:
        """Firm inflation policy [nw, nz], non-decreasing in the wage (marginal cost)."""
        return policy.to_values(self.pi_first, self.pi_incr).T

    def tables(self):
        """(consumption share, hours), each [nw, nr, J]; hours are non-decreasing in w."""
        hours = policy.to_values(self.h_first, self.h_incr).permute(2, 0, 1).contiguous()
        return policy.to_values(self.first, self.incr).transpose(1, 2).contiguous(), hours

    @torch.no_grad()
    def terminal_value(self, share_tab, hours_tab, Pi, g: torch.Tensor, s: torch.Tensor) -> torch.Tensor | None:
        """V [N, J] of the households' continuation value at the horizon (core/terminal.py), None if
        terminal='none': the policies' value at the prices that clear on the starting histograms g."""
        cal = self.cal
        if cal.terminal == "none":
            return None
        pick = terminal.paths(g.shape[0])
        eq = self.equilibrium(share_tab, hours_tab, Pi, g[pick], s[pick])
        V = terminal.policy_value(self.utility(eq["c"], eq["n"]), eq["b_next"], self.b_grid, self.P_y, cal.beta,
                                  self.locate)
        return V.to(self.dtype).expand(g.shape[0], -1).contiguous()

    def rollout(self, state, shocks, record: bool = False):
        if self.lookup is not None:
            return self._rollout_fused(state, shocks, record)
        cal, T = self.cal, self.T
        share_tab, hours_tab = self.tables()
        Pi = self.Pi
        g = state["g"].to(self.device, self.dtype)
        N = g.shape[0]
        d = torch.full_like(g, 1.0 / self.J)
        s_path = shocks["s"]
        V = self.terminal_value(share_tab.detach(), hours_tab.detach(), Pi.detach(), g, s_path[0])
        hh = torch.zeros(N, device=self.device, dtype=self.dtype)
        firm = torch.zeros(N, device=self.device, dtype=self.dtype)
        log_p = torch.zeros(N, device=self.device, dtype=self.dtype)
        keys = ("r", "w", "pi", "z", "Y", "L", "C", "B", "bond_gap", "labour_gap", "resid", "at_limit")
        rec: dict[str, list] = {k: [] for k in keys}
        gap_max = torch.zeros((), device=self.device, dtype=self.dtype)
        w_sum = torch.zeros((), device=self.device, dtype=self.dtype)
        for t in range(T):
            eq = self.equilibrium(share_tab, hours_tab, Pi, g, s_path[t])
            hh = hh + cal.beta ** t * (d * self.utility(eq["c"], eq["n"])).sum(1)
            log_p = log_p + torch.log1p(eq["pi_own"]) - torch.log1p(eq["pi_own"].detach())
            p = torch.exp(log_p)
            mc = eq["w"] / eq["z"]
            profit = (p.pow(1 - cal.epsilon) - mc * p.pow(-cal.epsilon)
                      - cal.theta / 2 * eq["pi_own"].pow(2)) * eq["Y"]
            firm = firm + cal.beta ** t * profit
            lo_b, w_b = lottery(self.b_grid, eq["b_next"], self.locate)
            with torch.no_grad():
                B = (eq["b_next"].detach() * g).sum(1)
                gap = (B - cal.bond_supply) / cal.bond_supply
                gap_max = torch.maximum(gap_max, gap.abs().max())
                w_sum = w_sum + eq["w"].mean()
                if record:
                    vals = dict(r=eq["r"], w=eq["w"], pi=eq["pi"], z=eq["z"], Y=eq["Y"], L=eq["L"],
                                C=eq["C"], B=B, bond_gap=gap, labour_gap=eq["labour_gap"], resid=gap,
                                at_limit=g.view(N, cal.n_b, -1)[:, 0].sum(1))
                    for k in keys:
                        rec[k].append(vals[k])
                g = young_step(g, lo_b, w_b.detach(), self.P_y, self.y_index)
            d = young_step(d, lo_b, w_b, self.P_y, self.y_index)
        if V is not None:  # households' continuation value at the horizon, through d_T only
            hh = hh + cal.beta ** T * (d * V).sum(1)
        objective = (1 - cal.beta) * (hh.mean() + firm.mean())
        out: dict[str, Any] = {"price_mean": float(w_sum / T), "residual_max": float(gap_max)}
        if record:
            out.update({k: torch.stack(v) for k, v in rec.items()})
        return objective, {"g": g.detach(), "s": s_path[T]}, out

    def _firm_objective(self, Pi, lo, om, zi, w, z, Y):
        """sum_t beta^t real profit per path [N] from the clearing brackets lo, om [T, N] (the
        same profit as `rollout`; differentiable in Pi only, prices and output are detached)."""
        cal = self.cal
        lo_hi = torch.stack([lo, lo + 1], -1)
        wts = torch.stack([1 - om, om], -1)
        pi_own = (policy.gather(Pi, lo_hi, zi[..., None]) * wts).sum(-1)  # [T, N]
        step = torch.log1p(pi_own)
        p = torch.exp(torch.cumsum(step - step.detach(), 0))  # 1 in value, the own price's gradient
        profit = (p.pow(1 - cal.epsilon) - (w / z) * p.pow(-cal.epsilon) - cal.theta / 2 * pi_own.pow(2)) * Y
        disc = cal.beta ** torch.arange(lo.shape[0], dtype=torch.float64)
        return (disc.to(profit.dtype)[:, None] * profit).sum(0)

    def _rollout_fused(self, state, shocks, record: bool):
        """`rollout` by the fused CPU kernel (same maths; fused.py): the households' objective and
        histograms in C++, the firm's profit here from the kernel's clearing brackets."""
        cal, T, mod = self.cal, self.T, fused.load()
        share_tab, hours_tab = self.tables()
        Pi = self.Pi
        g0 = state["g"].to(self.device, self.dtype).contiguous()
        s_path = shocks["s"][:T].contiguous()
        lk = self.lookup
        vecs = (self.w_grid.contiguous(), self.b_j.contiguous(), self.y_j.contiguous())
        grid = (self.P_y.contiguous(), self.b_grid.contiguous(), lk.lut, lk.bmin, lk.inv_h)
        consts = [cal.beta, 1.0 + 1.0 / cal.frisch, cal.c_min, cal.borrowing_limit, cal.bond_supply, cal.theta,
                  cal.R_bar, cal.phi_pi, cal.r_min, self.dr, cal.w_extrapolate, self.n_z, self.n_m]
        V = self.terminal_value(share_tab.detach(), hours_tab.detach(), Pi.detach(), g0, s_path[0])
        V = V if V is not None else g0.new_empty(0)

        def fwd(tabs):
            names = ("obj", "g", "d_hist", "lo", "rec")
            return dict(zip(names, mod.hank_forward(
                tabs[0], tabs[1], Pi.detach().contiguous(), self.m_grid.contiguous(), self.z_grid.contiguous(),
                vecs[0], vecs[1], vecs[2], s_path, g0, grid[0], grid[1], grid[2], grid[3], grid[4], T, consts,
                fused.HISTORY.take((T, g0.shape[0], g0.shape[1]), g0.dtype), V)))

        def bwd(grad_obj, tabs, res):
            return mod.hank_backward(grad_obj, tabs[0], tabs[1], *vecs, s_path, res["d_hist"], res["lo"],
                                     res["rec"], *grid, consts, V)

        hh, res = fused.rollout(torch.stack([share_tab, hours_tab]), fwd, bwd)
        fields = dict(zip(("om", "r", "w", "pi", "z", "L", "C", "Y", "B", "bond_gap", "labour_gap", "at_limit"),
                          res["rec"][:12]))
        firm = self._firm_objective(Pi, res["lo"], fields["om"], s_path // self.n_m, fields["w"], fields["z"],
                                    fields["Y"])
        objective = (1 - cal.beta) * (hh.mean() + firm.mean())
        gap = fields["bond_gap"]
        out: dict[str, Any] = {"price_mean": float(fields["w"].mean()), "residual_max": float(gap.abs().max())}
        if record:
            out.update({k: v for k, v in fields.items() if k != "om"}, resid=gap)
        return objective, {"g": res["g"].detach(), "s": shocks["s"][T]}, out

    # ---------------------------------------------------------------- accuracy
    @torch.no_grad()
    def euler_errors(self, state, n_paths: int = 8):
        """(log10 |1 - c_euler/c|, histogram) [n, J]; c_euler = 1 / (beta E[(1+r') / c'])."""
        cal = self.cal
        share_tab, hours_tab = self.tables()
        g, s = state["g"][:n_paths].to(self.device, self.dtype), state["s"][:n_paths]
        eq = self.equilibrium(share_tab, hours_tab, self.Pi, g, s)
        c, b_next = eq["c"], eq["b_next"]
        lo_b, w_b = lottery(self.b_grid, b_next, self.locate)
        g_next = young_step(g, lo_b, w_b, self.P_y, self.y_index)
        P = self.P_exo64.to(self.device, self.dtype)
        ny = self.y_grid.numel()
        emu = torch.zeros_like(c)
        for s_next in range(P.shape[0]):
            prob = P[s, s_next]
            if float(prob.max()) < 1e-12:
                continue
            eq2 = self.equilibrium(share_tab, hours_tab, self.Pi, g_next, torch.full_like(s, s_next))
            mu2 = ((1 + eq2["r"])[:, None] / eq2["c"]).view(-1, cal.n_b, ny)
            idx = lo_b.view(-1, self.J, 1).expand(-1, -1, ny)
            mu_at = torch.gather(mu2, 1, idx) * (1 - w_b[..., None]) + torch.gather(mu2, 1, idx + 1) * w_b[..., None]
            emu += prob[:, None] * (mu_at * self.P_y[self.y_index]).sum(-1)
        c_euler = 1.0 / (cal.beta * emu)
        err = torch.log10((c_euler / c - 1.0).abs().clamp(min=1e-16))
        ok = (b_next > cal.borrowing_limit + 1e-6) & (g > 1e-7) & (c > cal.c_min)
        return torch.where(ok, err, torch.full_like(err, float("nan"))), g
