"""One step of the RBC economy, for every agent of every replica at once (batched torch).

step(params, state, actions, tfp_noise) -> (next_state, StepResult) calls one pure function per event
of the model's order of events, in order:

     1 scale_demand_to_budget  consumers scale their demand down to what their budget buys
     2 sum_demand_and_hours    total demand for each good, total hours offered to each firm
     3 ration_goods            an overdemanded good is shared pro rata (flag observed next step)
     4 consume                 consumers receive goods, get utility, pay income tax
     5 export                  the export market buys leftover stock (open economy only)
     6 run_firms               revenue, wage bill, investment, corporate tax, reward, production
     7 advance_time            t += 1
     8 redistribute_taxes      all tax revenue goes back to the consumers as an equal lump sum
     9 set_taxes               the government's tax rates for the next step
    10 update_budgets          budgets, interest, capital and the TFP state

Prices, wages and tax rates chosen this step apply from the next one. Shapes: E envs, N consumers,
F firms; goods are [E, N, F] (consumer-major). No Python loop over agents or envs and no hidden
randomness: the optional TFP shock takes its noise as an argument. This is the reference of the fused
CPU kernel (fused_cpu.cpp, same function names) and the path that runs on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .actions import Actions, as_index
from .config import EconomyConfig
from .observe import Observation, observe
from .state import Params, State

Tensor = torch.Tensor


@dataclass(frozen=True)
class Accounts:
    """What happened in the step, per env (and per firm or consumer where it is theirs)."""

    consumed: Tensor           # [E, N, F] units each consumer received from each firm
    consumer_spending: Tensor  # [E, N]
    labour_income: Tensor      # [E, N] gross wage income
    hours: Tensor              # [E, N] hours each consumer worked
    units_sold: Tensor         # [E, F] units sold to consumers
    exported: Tensor           # [E, F] units sold to the export market
    produced: Tensor           # [E, F] units made this step (for sale from next step)
    labour: Tensor             # [E, F] hours worked at each firm
    firm_revenue: Tensor       # [E, F] (sold + exported) x price
    wage_bill: Tensor          # [E, F]
    investment: Tensor         # [E, F] added to capital
    profit: Tensor             # [E, F] before corporate tax
    income_tax: Tensor         # [E] income tax collected
    corporate_tax: Tensor      # [E] corporate tax collected
    taxes: Tensor              # [E] all taxes collected
    lump_sum: Tensor           # [E] transfer paid to each consumer

    def env(self, i: int) -> dict:
        """Plain-Python record of env i (lists and floats), e.g. for RLlib infos."""
        return {k: getattr(self, k)[i].tolist() for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Rewards:
    """Per-agent rewards of one step, unscaled."""

    consumer: Tensor    # [E, N] utility
    firm: Tensor        # [E, F] after-tax profit
    government: Tensor  # [E] welfare


@dataclass(frozen=True)
class StepResult:
    obs: Observation
    rewards: Rewards
    done: Tensor  # [E] bool, True when the episode ended with this step
    accounts: Accounts


def scale_demand_to_budget(demand: Tensor, price: Tensor, budget: Tensor) -> Tensor:
    """1: a consumer whose basket costs more than its budget buys the same mix scaled by B / cost."""
    cost = (demand * price.unsqueeze(1)).sum(-1)                     # [E, N]
    over_budget = (cost > 0) & (cost > budget)
    scale = torch.where(over_budget, budget.clamp(min=0) / torch.where(over_budget, cost, 1.0), 1.0)
    return demand * scale.unsqueeze(-1)                               # [E, N, F]


def sum_demand_and_hours(demand: Tensor, hours: Tensor, employer: Tensor) -> tuple[Tensor, Tensor]:
    """2: each firm's total demand, and its labour (the hours of the consumers who chose it)."""
    total_demand = demand.sum(1)                                      # [E, F]
    no_labour = torch.zeros_like(total_demand)
    labour = no_labour.scatter_add(1, employer, hours)                # [E, F]
    return total_demand, labour


def ration_goods(total_demand: Tensor, stock: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """3: demand above stock is scaled by stock / demand for everyone, so the whole stock is sold."""
    overdemanded = (total_demand > 0) & (total_demand > stock)
    ration = torch.where(overdemanded, stock / torch.where(overdemanded, total_demand, 1.0), 1.0)
    sold = torch.where(overdemanded, stock, total_demand)
    return ration, sold, overdemanded


def consume(cfg: EconomyConfig, demand: Tensor, ration: Tensor, price: Tensor, hours: Tensor,
            wage_earned: Tensor, theta: Tensor, income_tax_rate: Tensor) -> tuple[Tensor, ...]:
    """4: consumers receive rationed goods, enjoy them less the disutility of work, pay income tax."""
    consumed = demand * ration.unsqueeze(1)                           # [E, N, F]
    spending = (consumed * price.unsqueeze(1)).sum(-1)                # [E, N]
    one_minus_eta = 1.0 - cfg.eta
    utility = ((torch.pow(consumed + 1.0, one_minus_eta) - 1.0) / one_minus_eta).sum(-1)
    effort = hours if cfg.labour_disutility == "linear" else hours * hours
    consumer_reward = utility - theta / 2.0 * effort
    labour_income = wage_earned * hours
    income_tax_paid = income_tax_rate.unsqueeze(1) * labour_income
    return consumed, spending, consumer_reward, labour_income, income_tax_paid


def export(cfg: EconomyConfig, price: Tensor, stock: Tensor, sold: Tensor) -> Tensor:
    """5: the export market buys min(q_export, leftover stock) from firms whose price reaches p_export."""
    if not cfg.open_economy:
        return torch.zeros_like(stock)
    eligible = price > cfg.p_export if cfg.export_strict else price >= cfg.p_export
    leftover = (stock - sold).clamp(min=0.0)
    return torch.where(eligible, leftover.clamp(max=cfg.q_export), torch.zeros_like(stock))


def run_firms(cfg: EconomyConfig, price: Tensor, wage: Tensor, sold: Tensor, exported: Tensor,
              labour: Tensor, capital: Tensor, alpha: Tensor, firm_budget: Tensor,
              corporate_tax_rate: Tensor, log_tfp: Tensor) -> tuple[Tensor, ...]:
    """6: firms sell, pay wages, invest, pay corporate tax on profit, and produce Y = A K^(1-a) L^a."""
    revenue = (sold + exported) * price
    wage_bill = labour * wage
    gross = revenue - wage_bill
    base = gross if cfg.investment_base == "income" else firm_budget
    investment = (cfg.investment_fraction * base).clamp(min=0.0)
    profit = gross - investment
    corporate_tax_paid = corporate_tax_rate.unsqueeze(1) * profit.clamp(min=0.0)
    firm_reward = profit - corporate_tax_paid
    tfp = cfg.productivity * torch.exp(log_tfp).unsqueeze(1)
    produced = tfp * torch.pow(capital, 1.0 - alpha) * torch.pow(labour, alpha)
    return revenue, wage_bill, investment, profit, corporate_tax_paid, firm_reward, produced


def advance_time(t: Tensor) -> Tensor:
    """7: one quarter passes."""
    return t + 1.0


def redistribute_taxes(cfg: EconomyConfig, income_tax_paid: Tensor,
                       corporate_tax_paid: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """8: the government keeps no budget: all tax revenue goes back as an equal lump sum per consumer."""
    income_tax = income_tax_paid.sum(1)
    corporate_tax = corporate_tax_paid.sum(1)
    taxes = income_tax + corporate_tax
    return income_tax, corporate_tax, taxes, taxes / cfg.n_consumers


def set_taxes(params: Params, government_action: Tensor) -> tuple[Tensor, Tensor]:
    """9: the income and corporate tax rates the government chose, applied from the next step."""
    rates = params.lookup("tax_grid", as_index(government_action))   # [E, 2]
    return rates[:, 0], rates[:, 1]


def update_budgets(cfg: EconomyConfig, consumer_budget: Tensor, spending: Tensor, labour_income: Tensor,
                   income_tax_paid: Tensor, lump_sum: Tensor, firm_budget: Tensor, firm_reward: Tensor,
                   capital: Tensor, investment: Tensor, log_tfp: Tensor,
                   tfp_noise: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """10: the step's flows go into the budgets (positive ones earn interest), investment into capital."""
    growth = 1.0 + cfg.interest_rate
    net_income = cfg.budget_epsilon - spending + labour_income - income_tax_paid
    consumer_budget = consumer_budget + net_income + lump_sum.unsqueeze(1)
    consumer_budget = torch.where(consumer_budget > 0, consumer_budget * growth, consumer_budget)
    firm_budget = firm_budget + firm_reward
    firm_budget = torch.where(firm_budget > 0, firm_budget * growth, firm_budget)
    capital = (1.0 - cfg.depreciation) * capital + investment
    if cfg.tfp_sigma > 0.0 or cfg.tfp_rho != 0.0:  # without the shock log TFP stays where it is
        noise = torch.zeros_like(log_tfp) if tfp_noise is None else tfp_noise.to(log_tfp)
        log_tfp = cfg.tfp_rho * log_tfp + cfg.tfp_sigma * noise
    return consumer_budget, firm_budget, capital, log_tfp


def step(params: Params, state: State, actions: Actions,
         tfp_noise: Tensor | None = None) -> tuple[State, StepResult]:
    """Advance all replicas one step, in the model's order of events. Actions are grid indices."""
    cfg, n_firms = params.cfg, params.cfg.n_firms
    price, wage, stock = state.price, state.wage, state.stock
    consumer_action = as_index(actions.consumer)                     # [E, N, F + 2]
    demand = params.lookup("demand_grid", consumer_action[..., :n_firms])
    hours = params.lookup("hours_grid", consumer_action[..., n_firms])
    employer = consumer_action[..., n_firms + 1]
    theta = params.theta.unsqueeze(0) * state.theta_factor.unsqueeze(1)  # annealed, [E, N]

    demand = scale_demand_to_budget(demand, price, state.consumer_budget)
    total_demand, labour = sum_demand_and_hours(demand, hours, employer)
    ration, sold, overdemanded = ration_goods(total_demand, stock)
    consumed, spending, consumer_reward, labour_income, income_tax_paid = consume(
        cfg, demand, ration, price, hours, wage.gather(1, employer), theta, state.income_tax)
    exported = export(cfg, price, stock, sold)
    revenue, wage_bill, investment, profit, corporate_tax_paid, firm_reward, produced = run_firms(
        cfg, price, wage, sold, exported, labour, state.capital, params.alpha, state.firm_budget,
        state.corporate_tax, state.log_tfp)
    t = advance_time(state.t)
    income_tax, corporate_tax, taxes, lump_sum = redistribute_taxes(cfg, income_tax_paid, corporate_tax_paid)
    next_income_tax, next_corporate_tax = set_taxes(params, actions.government)
    consumer_budget, firm_budget, capital, log_tfp = update_budgets(
        cfg, state.consumer_budget, spending, labour_income, income_tax_paid, lump_sum,
        state.firm_budget, firm_reward, state.capital, investment, state.log_tfp, tfp_noise)

    welfare = consumer_reward.sum(1)
    if cfg.welfare == "total":
        welfare = welfare + cfg.firm_welfare_weight * firm_reward.sum(1)
    next_state = State(
        price=params.lookup("price_grid", as_index(actions.firm[..., 0])),
        wage=params.lookup("wage_grid", as_index(actions.firm[..., 1])),
        stock=stock - sold - exported + produced, overdemanded=overdemanded.to(price.dtype),
        capital=capital, firm_budget=firm_budget, consumer_budget=consumer_budget,
        income_tax=next_income_tax, corporate_tax=next_corporate_tax, t=t, log_tfp=log_tfp,
        theta_factor=state.theta_factor,
    )
    accounts = Accounts(
        consumed=consumed, consumer_spending=spending, labour_income=labour_income, hours=hours,
        units_sold=sold, exported=exported, produced=produced, labour=labour, firm_revenue=revenue,
        wage_bill=wage_bill, investment=investment, profit=profit, income_tax=income_tax,
        corporate_tax=corporate_tax, taxes=taxes, lump_sum=lump_sum,
    )
    result = StepResult(
        obs=observe(params, next_state),
        rewards=Rewards(consumer=consumer_reward, firm=firm_reward, government=welfare),
        done=t >= cfg.episode_length,
        accounts=accounts,
    )
    return next_state, result
