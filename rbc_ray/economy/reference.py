"""Reference economy: one replica of the RBC economy as a plain per-agent Python loop (the test oracle).

This module is written from the specification (docs/model.md), not from step.py, and it
follows the spec's order of events literally: one consumer, one firm at a time, floats and lists, the
`math` module for the maths. It exists only so the tests can check the batched torch step against an
independent implementation; nothing in training uses it, and it is far too slow to.

    ref = ReferenceEconomy(cfg)                      # the spec's initial state
    ref = ReferenceEconomy.from_state(cfg, state, i) # env i of a batched `State`
    out = ref.step(consumer_actions, firm_actions, government_actions, tfp_noise=0.0)
    out["state"], out["rewards"], out["accounts"], out["obs"], out["done"]

Actions are grid indices, as in the batched model: consumer_actions[j] = [demand index for each firm
..., hours index, employer], firm_actions[i] = [price index, wage index], government_actions =
[income-tax index, corporate-tax index].

Points the spec leaves open, and the reading taken here:
- a consumer with a non-positive budget who asks for goods that cost something buys nothing
  (the budget scale B/cost is floored at 0);
- interest is paid on the budget after the step's flows (consumers and firms alike: "if B > 0 after
  the update, B *= 1 + r");
- the TFP shock multiplies A in this step's production with exp(log_tfp) of the current state, then
  log_tfp' = rho log_tfp + sigma noise; depreciation gives K' = (1 - delta) K + dK;
- a consumer observes its effective theta (theta_j x the annealing factor) / theta_scale;
- with the digit encoding each firm's stock becomes n_digits consecutive features (firm-major).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

STATE_FIELDS = ("price", "wage", "stock", "overdemanded", "capital", "firm_budget", "consumer_budget",
                "income_tax", "corporate_tax", "t", "log_tfp", "theta_factor")
"""Names of the state variables (same names as the batched State)."""


def _cfg_of(params_or_cfg: Any) -> Any:
    """Accept an EconomyConfig or anything holding one in `.cfg` (Params, Economy)."""
    return getattr(params_or_cfg, "cfg", params_or_cfg)


def digit_features(x: float, n_digits: int) -> list[float]:
    """The spec's digit expansion: (x mod 10^(j+1)) / 10^(j+1), j = 0 .. n_digits - 1."""
    return [(x % 10 ** (j + 1)) / 10 ** (j + 1) for j in range(n_digits)]


class ReferenceEconomy:
    """One economy replica, every variable a Python float (or a list of floats, one per agent)."""

    def __init__(self, cfg: Any, theta_factor: float = 1.0) -> None:
        cfg = _cfg_of(cfg)
        self.cfg = cfg
        n, f = cfg.n_consumers, cfg.n_firms
        # Consumers: theta_j = theta_max (1 - j/N)^(1/shape) (spec: 0.01 (1 - j/N)^(1/4)).
        self.theta = [cfg.theta_max * (1.0 - j / n) ** (1.0 / cfg.pareto_shape) for j in range(n)]
        # Firms: alpha repeats the alpha set; the first F // 2 firms start with the low capital.
        self.alpha = [cfg.alpha_set[i % len(cfg.alpha_set)] for i in range(f)]
        self.price = [float(cfg.price0)] * f
        self.wage = [float(cfg.wage0)] * f
        self.stock = [float(cfg.stock0)] * f
        self.overdemanded = [0.0] * f
        self.capital = [cfg.capital_low if i < f // 2 else cfg.capital_high for i in range(f)]
        self.firm_budget = [cfg.firm_budget0_per_consumer * n] * f
        self.consumer_budget = [float(cfg.consumer_budget0)] * n
        self.income_tax = 0.0
        self.corporate_tax = 0.0
        self.t = 0.0
        self.log_tfp = 0.0
        self.theta_factor = float(theta_factor)

    # ------------------------------------------------------------------ state in and out
    @classmethod
    def from_state(cls, params_or_cfg: Any, state: Any, env_index: int) -> "ReferenceEconomy":
        """Load env `env_index` of a batched State (tensors [E, ...]) into a reference economy."""
        ref = cls(params_or_cfg)
        for name in STATE_FIELDS:
            value = getattr(state, name)[env_index].tolist()
            setattr(ref, name, [float(v) for v in value] if isinstance(value, list) else float(value))
        return ref

    def state_dict(self) -> dict[str, Any]:
        """The state as a dict of floats and lists (copies)."""
        return {k: list(v) if isinstance(v, list) else v
                for k, v in ((name, getattr(self, name)) for name in STATE_FIELDS)}

    def observe(self) -> dict[str, list[list[float]]]:
        """Full observation of every agent: {'consumer': N rows, 'firm': F rows, 'government': 1 row}."""
        cfg = self.cfg
        f = cfg.n_firms

        def expand(x: float) -> list[float]:
            return digit_features(x, cfg.n_digits) if cfg.digit_encoding else [x]

        glob: list[float] = [p / cfg.price_scale for p in self.price]
        glob += [w / cfg.wage_scale for w in self.wage]
        for y in self.stock:
            glob += expand(y)
        glob += list(self.overdemanded)
        glob += [self.income_tax, self.corporate_tax, self.t / cfg.episode_length]
        consumer = [glob + expand(b) + [self.theta[j] * self.theta_factor / cfg.theta_scale]
                    for j, b in enumerate(self.consumer_budget)]
        firm = []
        for i in range(f):
            onehot = [1.0 if k == i else 0.0 for k in range(f)]
            firm.append(glob + expand(self.firm_budget[i]) + [self.capital[i] / cfg.capital_scale,
                                                             self.alpha[i]] + onehot)
        return {"consumer": consumer, "firm": firm, "government": [list(glob)]}

    # ------------------------------------------------------------------ the step
    def step(self, consumer_actions: Sequence[Sequence[int]], firm_actions: Sequence[Sequence[int]],
             government_actions: Sequence[int], tfp_noise: float = 0.0) -> dict[str, Any]:
        """One step in the spec's order of events; updates self and returns what happened."""
        cfg = self.cfg
        n, f = cfg.n_consumers, cfg.n_firms
        price, wage, stock = self.price, self.wage, self.stock

        demand = [[cfg.demand_grid[int(a[i])] for i in range(f)] for a in consumer_actions]
        hours = [cfg.hours_grid[int(a[f])] for a in consumer_actions]
        employer = [int(a[f + 1]) for a in consumer_actions]

        # 1 consumers scale demand to their budget: if sum_i p_i d_ij > B_j, scale by B_j / cost
        for j in range(n):
            cost = sum(price[i] * demand[j][i] for i in range(f))
            budget = self.consumer_budget[j]
            if cost > 0.0 and cost > budget:
                scale = max(budget, 0.0) / cost
                demand[j] = [d * scale for d in demand[j]]

        # 2 total demand and hours per firm
        total_demand = [0.0] * f
        labour = [0.0] * f
        for j in range(n):
            for i in range(f):
                total_demand[i] += demand[j][i]
            labour[employer[j]] += hours[j]

        # 3 rationing: demand above stock is scaled by y_i / D_i for everyone; the flag is observed next
        rationed = [total_demand[i] > 0.0 and total_demand[i] > stock[i] for i in range(f)]
        ration = [stock[i] / total_demand[i] if rationed[i] else 1.0 for i in range(f)]
        units_sold = [min(total_demand[i], stock[i]) for i in range(f)]

        # 4 consumers receive goods, utility, income tax
        consumed, spending, labour_income, income_tax_paid, consumer_reward = [], [], [], [], []
        one_minus_eta = 1.0 - cfg.eta
        for j in range(n):
            c = [demand[j][i] * ration[i] for i in range(f)]
            consumed.append(c)
            spending.append(sum(c[i] * price[i] for i in range(f)))
            utility = sum(((ci + 1.0) ** one_minus_eta - 1.0) / one_minus_eta for ci in c)
            theta_eff = self.theta[j] * self.theta_factor
            effort = hours[j] if cfg.labour_disutility == "linear" else hours[j] ** 2
            consumer_reward.append(utility - theta_eff / 2.0 * effort)
            income = wage[employer[j]] * hours[j]
            labour_income.append(income)
            income_tax_paid.append(self.income_tax * income)

        # 5 exports (open economy): min(q_export, leftover) from firms whose price reaches p_export
        exported = [0.0] * f
        if cfg.open_economy:
            for i in range(f):
                eligible = price[i] > cfg.p_export if cfg.export_strict else price[i] >= cfg.p_export
                if eligible:
                    exported[i] = min(cfg.q_export, max(stock[i] - units_sold[i], 0.0))

        # 6 firms: revenue, wages, investment, corporate tax, reward, production
        revenue, wage_bill, investment, profit, corp_tax_paid, firm_reward, produced = \
            [], [], [], [], [], [], []
        a_eff = cfg.productivity * math.exp(self.log_tfp)
        for i in range(f):
            rev = (units_sold[i] + exported[i]) * price[i]
            bill = labour[i] * wage[i]
            gross = rev - bill
            base = gross if cfg.investment_base == "income" else self.firm_budget[i]
            dk = max(cfg.investment_fraction * base, 0.0)
            prof = gross - dk
            ctax = self.corporate_tax * max(prof, 0.0)
            revenue.append(rev)
            wage_bill.append(bill)
            investment.append(dk)
            profit.append(prof)
            corp_tax_paid.append(ctax)
            firm_reward.append(prof - ctax)
            produced.append(a_eff * self.capital[i] ** (1.0 - self.alpha[i])
                            * labour[i] ** self.alpha[i])
        next_stock = [stock[i] - units_sold[i] - exported[i] + produced[i] for i in range(f)]
        next_price = [cfg.price_grid[int(a[0])] for a in firm_actions]
        next_wage = [cfg.wage_grid[int(a[1])] for a in firm_actions]

        # 7 time
        t_next = self.t + 1.0

        # 8 tax revenue back to the consumers as an equal lump sum; government welfare
        income_tax_total = sum(income_tax_paid)
        corp_tax_total = sum(corp_tax_paid)
        taxes = income_tax_total + corp_tax_total
        lump_sum = taxes / n
        welfare = sum(consumer_reward)
        if cfg.welfare == "total":
            welfare += cfg.firm_welfare_weight * sum(firm_reward)

        # 9 next tax rates
        next_income_tax = cfg.tax_grid[int(government_actions[0])]
        next_corporate_tax = cfg.tax_grid[int(government_actions[1])]

        # 10 budgets, interest, capital (and the optional TFP shock)
        r = cfg.interest_rate
        next_cb = []
        for j in range(n):
            b = (self.consumer_budget[j] + cfg.budget_epsilon - spending[j] + labour_income[j]
                 - income_tax_paid[j] + lump_sum)
            next_cb.append(b * (1.0 + r) if b > 0.0 else b)
        next_fb = []
        for i in range(f):
            b = self.firm_budget[i] + firm_reward[i]
            next_fb.append(b * (1.0 + r) if b > 0.0 else b)
        next_capital = [(1.0 - cfg.depreciation) * self.capital[i] + investment[i] for i in range(f)]
        next_log_tfp = cfg.tfp_rho * self.log_tfp + cfg.tfp_sigma * float(tfp_noise)

        self.price, self.wage, self.stock = next_price, next_wage, next_stock
        self.overdemanded = [1.0 if x else 0.0 for x in rationed]
        self.capital, self.firm_budget, self.consumer_budget = next_capital, next_fb, next_cb
        self.income_tax, self.corporate_tax = next_income_tax, next_corporate_tax
        self.t, self.log_tfp = t_next, next_log_tfp

        accounts = {
            "consumed": consumed, "consumer_spending": spending, "labour_income": labour_income,
            "hours": list(hours), "units_sold": units_sold, "exported": exported,
            "produced": produced, "labour": labour, "firm_revenue": revenue, "wage_bill": wage_bill,
            "investment": investment, "profit": profit, "income_tax": income_tax_total,
            "corporate_tax": corp_tax_total, "taxes": taxes, "lump_sum": lump_sum,
        }
        return {
            "state": self.state_dict(),
            "rewards": {"consumer": consumer_reward, "firm": firm_reward, "government": welfare},
            "accounts": accounts,
            "obs": self.observe(),
            "done": t_next >= cfg.episode_length,
        }
