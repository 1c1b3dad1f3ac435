"""One step of the RBC economy for every agent of every replica, in the spec's order of events.

step(params, state, actions) -> (next_state, StepResult). Pure: no Python loop over agents or envs,
no hidden randomness (the optional TFP shock takes its noise as an argument).
Order (spec): 1 budget-scale demand; 2 total demand and hours per firm; 3 rationing; 4 consumption,
utility, income tax; 5 exports; 6 firms; 7 t += 1; 8 lump-sum transfer; 9 next taxes; 10 budgets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .actions import Actions, as_index
from .observe import Observation, observe
from .state import Params, State


@dataclass(frozen=True)
class Accounts:
    """What happened in the step, per env (and per firm or consumer where it is theirs)."""

    consumed: torch.Tensor           # [E, N, F] units each consumer received from each firm
    consumer_spending: torch.Tensor  # [E, N]
    labour_income: torch.Tensor      # [E, N] gross wage income
    hours: torch.Tensor              # [E, N] hours each consumer worked
    units_sold: torch.Tensor         # [E, F] units sold to consumers
    exported: torch.Tensor           # [E, F] units sold to the export market
    produced: torch.Tensor           # [E, F] units made this step (for sale from next step)
    labour: torch.Tensor             # [E, F] hours worked at each firm
    firm_revenue: torch.Tensor       # [E, F] (sold + exported) x price
    wage_bill: torch.Tensor          # [E, F]
    investment: torch.Tensor         # [E, F] added to capital
    profit: torch.Tensor             # [E, F] before corporate tax
    income_tax: torch.Tensor         # [E] income tax collected
    corporate_tax: torch.Tensor      # [E] corporate tax collected
    taxes: torch.Tensor              # [E] all taxes collected
    lump_sum: torch.Tensor           # [E] transfer paid to each consumer

    def env(self, i: int) -> dict:
        """Plain-Python record of env i (lists and floats), e.g. for RLlib infos."""
        return {k: getattr(self, k)[i].tolist() for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Rewards:
    """Per-agent rewards of one step, unscaled."""

    consumer: torch.Tensor    # [E, N] utility
    firm: torch.Tensor        # [E, F] after-tax profit
    government: torch.Tensor  # [E] welfare


@dataclass(frozen=True)
class StepResult:
    obs: Observation
    rewards: Rewards
    done: torch.Tensor  # [E] bool, True when the episode ended with this step
    accounts: Accounts


def step(params: Params, state: State, actions: Actions,
         tfp_noise: torch.Tensor | None = None) -> tuple[State, StepResult]:
    """Advance all replicas one step. Actions are grid indices (see actions.py)."""
    cfg = params.cfg
    n_firms = cfg.n_firms
    price, wage, stock = state.price, state.wage, state.stock
    # Goods are laid out firm-major, [E, F, N]: sums over firms then run over whole rows of consumers
    # (vectorised), and in-place ops reuse one buffer; both matter on CPU, where this block dominates.
    consumer = as_index(actions.consumer)
    demand = params.lookup("demand_grid", consumer[..., :n_firms].transpose(1, 2))  # [E, F, N]
    hours = params.lookup("hours_grid", consumer[..., n_firms])     # [E, N]
    employer = consumer[..., n_firms + 1]                          # [E, N]

    # 1 consumers scale demand to their budget
    cost = (demand * price.unsqueeze(-1)).sum(1)                   # [E, N]
    budget = state.consumer_budget
    over = (cost > 0) & (cost > budget)
    scale = torch.where(over, budget.clamp(min=0) / torch.where(over, cost, 1.0), 1.0)
    # 2 total demand and hours per firm
    wanted = demand.mul_(scale.unsqueeze(1))                       # [E, F, N], budget-feasible
    total_demand = wanted.sum(-1)                                  # [E, F]
    labour = torch.zeros_like(price).scatter_add_(1, employer, hours)
    # 3 rationing: an overdemanded good is shared pro rata, and the whole stock is sold
    rationed = (total_demand > 0) & (total_demand > stock)
    ration = torch.where(rationed, stock / torch.where(rationed, total_demand, 1.0), 1.0)
    sold = torch.where(rationed, stock, total_demand)
    # 4 consumers receive goods, utility, income tax
    consumed = wanted.mul_(ration.unsqueeze(-1))                   # [E, F, N]
    spending = (consumed * price.unsqueeze(-1)).sum(1)
    one_minus_eta = 1.0 - cfg.eta
    # (c + 1)^(1 - eta) as exp((1 - eta) log(c + 1)): same value, about 3x faster than pow on CPU
    utility = ((consumed + 1.0).log_().mul_(one_minus_eta).exp_().sum(1) - n_firms) / one_minus_eta
    theta_eff = params.theta.unsqueeze(0) * state.theta_factor.unsqueeze(1)
    effort = hours if cfg.labour_disutility == "linear" else hours * hours
    consumer_reward = utility - 0.5 * theta_eff * effort
    labour_income = wage.gather(1, employer) * hours
    income_tax_paid = state.income_tax.unsqueeze(1) * labour_income
    # 5 exports
    if cfg.open_economy:
        eligible = price > cfg.p_export if cfg.export_strict else price >= cfg.p_export
        leftover = (stock - sold).clamp(min=0.0)
        exported = torch.where(eligible, leftover.clamp(max=cfg.q_export), torch.zeros_like(stock))
    else:
        exported = torch.zeros_like(stock)
    # 6 firms: revenue, wages, investment, corporate tax, reward, production
    revenue = (sold + exported) * price
    wage_bill = labour * wage
    gross = revenue - wage_bill
    base = gross if cfg.investment_base == "income" else state.firm_budget
    investment = (cfg.investment_fraction * base).clamp(min=0.0)
    profit = gross - investment
    corp_tax_paid = state.corporate_tax.unsqueeze(1) * profit.clamp(min=0.0)
    firm_reward = profit - corp_tax_paid
    tfp = cfg.productivity * torch.exp(state.log_tfp).unsqueeze(1)
    produced = tfp * state.capital.pow(1.0 - params.alpha) * labour.pow(params.alpha)
    # 7 time
    t_next = state.t + 1.0
    # 8 tax revenue back as an equal lump sum
    income_tax_total = income_tax_paid.sum(1)
    corp_tax_total = corp_tax_paid.sum(1)
    taxes = income_tax_total + corp_tax_total
    lump_sum = taxes / cfg.n_consumers
    welfare = consumer_reward.sum(1)
    if cfg.welfare == "total":
        welfare = welfare + cfg.firm_welfare_weight * firm_reward.sum(1)
    # 9 next tax rates; 10 budgets, interest, capital
    gov = params.lookup("tax_grid", as_index(actions.government))
    growth = 1.0 + cfg.interest_rate
    cb = budget + (cfg.budget_epsilon - spending + labour_income - income_tax_paid) + lump_sum.unsqueeze(1)
    fb = state.firm_budget + firm_reward
    if cfg.interest_rate != 0.0:
        cb = torch.where(cb > 0, cb * growth, cb)
        fb = torch.where(fb > 0, fb * growth, fb)
    capital = state.capital + investment if cfg.depreciation == 0.0 else \
        (1.0 - cfg.depreciation) * state.capital + investment
    log_tfp = state.log_tfp
    if cfg.tfp_sigma > 0.0 or cfg.tfp_rho != 0.0:
        noise = torch.zeros_like(log_tfp) if tfp_noise is None else tfp_noise.to(log_tfp)
        log_tfp = cfg.tfp_rho * log_tfp + cfg.tfp_sigma * noise

    next_state = State(
        price=params.lookup("price_grid", as_index(actions.firm[..., 0])),
        wage=params.lookup("wage_grid", as_index(actions.firm[..., 1])),
        stock=stock - sold - exported + produced, overdemanded=rationed.to(price.dtype),
        capital=capital, firm_budget=fb, consumer_budget=cb,
        income_tax=gov[:, 0], corporate_tax=gov[:, 1], t=t_next, log_tfp=log_tfp,
        theta_factor=state.theta_factor,
    )
    accounts = Accounts(
        consumed=consumed.transpose(1, 2), consumer_spending=spending, labour_income=labour_income, hours=hours,
        units_sold=sold, exported=exported, produced=produced, labour=labour, firm_revenue=revenue,
        wage_bill=wage_bill, investment=investment, profit=profit, income_tax=income_tax_total,
        corporate_tax=corp_tax_total, taxes=taxes, lump_sum=lump_sum,
    )
    result = StepResult(
        obs=observe(params, next_state),
        rewards=Rewards(consumer=consumer_reward, firm=firm_reward, government=welfare),
        done=t_next >= cfg.episode_length,
        accounts=accounts,
    )
    return next_state, result
