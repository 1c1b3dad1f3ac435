"""The fused CPU step: step.py's maths as one C++ pass per env (fused_cpu.cpp), built on first use.

On a 2-core CPU the torch step is dispatch- and memory-bound (about a hundred small ops); the fused
kernel does the same arithmetic in cache, envs in parallel on torch's threads. It needs a C++
compiler and ninja (torch.utils.cpp_extension); without them `available()` is False and the
economy uses the torch step. Same signature as `step.step`, CPU tensors only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..native import NativeExtension, cpu_flags
from .actions import Actions
from .config import EconomyConfig
from .observe import Observation
from .state import Params, State
from .step import Accounts, Rewards, StepResult

_EXTENSION = NativeExtension(
    name="rbc_ray_fused_step", source=Path(__file__).with_name("fused_cpu.cpp"), switch="RBC_RAY_FUSED",
    what="fused CPU step", cflags=cpu_flags("-fopenmp-simd"))


def load() -> Any:
    """The compiled extension (cached under torch's extensions dir), or None with `error()` set."""
    return _EXTENSION.load()


def available() -> bool:
    """True when the fused kernel is built (building it on first call)."""
    return load() is not None


def error() -> str | None:
    """Why the kernel is unavailable (None when it loaded or was not tried)."""
    return _EXTENSION.error


_SCALARS: dict[int, tuple[EconomyConfig, list[float], list[int]]] = {}


def _scalars(cfg: EconomyConfig) -> tuple[list[float], list[int]]:
    """The config's constants and switches in the order fused_cpu.cpp reads them, cached by identity
    (hashing the frozen config costs more than a small economy's step)."""
    hit = _SCALARS.get(id(cfg))
    if hit is not None and hit[0] is cfg:
        return hit[1], hit[2]
    scalars = [cfg.eta, cfg.p_export, cfg.q_export, cfg.investment_fraction, cfg.firm_welfare_weight,
               cfg.budget_epsilon, cfg.interest_rate, cfg.depreciation, cfg.productivity, cfg.tfp_rho,
               cfg.tfp_sigma, cfg.n_consumers, cfg.episode_length, cfg.price_scale, cfg.wage_scale,
               cfg.theta_scale, cfg.capital_scale]
    flags = [cfg.open_economy, cfg.export_strict, cfg.investment_base == "income",
             cfg.labour_disutility == "quadratic", cfg.welfare == "total", cfg.digit_encoding,
             cfg.tfp_sigma > 0.0 or cfg.tfp_rho != 0.0]
    if len(_SCALARS) > 256:  # sweeps over many configs: keep the cache small
        _SCALARS.clear()
    entry = (cfg, [float(v) for v in scalars], [int(f) for f in flags])
    _SCALARS[id(cfg)] = entry
    return entry[1], entry[2]


_NO_NOISE: dict[torch.dtype, torch.Tensor] = {}


def _no_noise(dtype: torch.dtype) -> torch.Tensor:
    """The empty tensor that tells the kernel there is no TFP shock (made once per dtype: a fresh one
    cost 2 us, a tenth of the wrapper)."""
    empty = _NO_NOISE.get(dtype)
    if empty is None:
        empty = _NO_NOISE[dtype] = torch.empty(0, dtype=dtype)
    return empty


_new = object.__new__


def output_pool() -> Any:
    """A pool for one economy's step outputs (see `fused_step`); raises RuntimeError when the kernel
    is unavailable."""
    module = _EXTENSION.module or load()
    if module is None:
        raise RuntimeError(f"the fused CPU step is unavailable: {error()}")
    return module.OutputPool()


def fused_step(params: Params, state: State, actions: Actions, tfp_noise: torch.Tensor | None = None,
               pool: Any = None) -> tuple[State, StepResult]:
    """step.step computed by the fused kernel; raises RuntimeError when it is unavailable.

    pool (from `output_pool()`, one per economy): the outputs are carved from a buffer recycled once
    every tensor of an earlier step has died, instead of a fresh allocation per step."""
    module = _EXTENSION.module or load()
    if module is None:
        raise RuntimeError(f"the fused CPU step is unavailable: {error()}")
    if params.device.type != "cpu":
        raise ValueError(f"the fused step runs on CPU only, the economy is on {params.device}")
    scalars, flags = _scalars(params.cfg)
    noise = _no_noise(params.dtype) if tfp_noise is None else tfp_noise.to(params.dtype).contiguous()
    s = state
    inputs = [s.price, s.wage, s.stock, s.capital, s.firm_budget, s.consumer_budget, s.income_tax,
              s.corporate_tax, s.t, s.log_tfp, s.theta_factor, params.theta, params.alpha,
              params.demand_grid, params.hours_grid, params.price_grid, params.wage_grid,
              params.tax_grid, params.digit_scale,
              actions.consumer, actions.firm, actions.government, noise]
    out = module.step(inputs, scalars, flags, pool)
    (price, wage, stock, over, capital, fb, cb, itax, ctax, t, log_tfp,
     consumed, spending, labour_income, hours, sold, exported, produced, labour, revenue, wage_bill,
     investment, profit, itax_total, ctax_total, taxes, lump, c_reward, f_reward, welfare, done,
     obs_g, obs_c, obs_f) = out
    # The records are frozen dataclasses filled without running their __init__: the kernel's outputs
    # need no checks, and a frozen __init__ costs about a microsecond per field (a fifth of a small
    # step); their __dict__ is filled in place, inline (a helper's call and **kwargs cost 0.3 us each).
    next_state = _new(State)
    next_state.__dict__.update(
        price=price, wage=wage, stock=stock, overdemanded=over, capital=capital, firm_budget=fb,
        consumer_budget=cb, income_tax=itax, corporate_tax=ctax, t=t, log_tfp=log_tfp,
        theta_factor=s.theta_factor)
    accounts = _new(Accounts)
    accounts.__dict__.update(
        consumed=consumed, consumer_spending=spending, labour_income=labour_income, hours=hours,
        units_sold=sold, exported=exported, produced=produced, labour=labour, firm_revenue=revenue,
        wage_bill=wage_bill, investment=investment, profit=profit, income_tax=itax_total,
        corporate_tax=ctax_total, taxes=taxes, lump_sum=lump)
    obs = _new(Observation)
    obs.__dict__.update(global_=obs_g, consumer=obs_c, firm=obs_f)
    rewards = _new(Rewards)
    rewards.__dict__.update(consumer=c_reward, firm=f_reward, government=welfare)
    result = _new(StepResult)
    result.__dict__.update(obs=obs, rewards=rewards, done=done, accounts=accounts)
    return next_state, result
