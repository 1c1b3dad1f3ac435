"""EconomyConfig: every constant of the RBC model (docs/model.md), validated.

A config is a frozen dataclass; presets give the closed and open economies of Curry et al. 2022 with
the reference code's behaviour, and any field can be overridden by name (`EconomyConfig.from_dict`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, fields
from typing import Any, Mapping

from ..config import ConfigError, coerce, unknown_key

_LABOUR_DISUTILITY = ("linear", "quadratic")
_INVESTMENT_BASE = ("income", "budget")
_WELFARE = ("total", "consumer")
_DTYPES = ("float32", "float64")


def _grid(start: float, step: float, n: int) -> tuple[float, ...]:
    return tuple(start + step * i for i in range(n))


@dataclass(frozen=True)
class EconomyConfig:
    """The RBC economy of the spec. Defaults are the reference code's open economy (100/10/1)."""

    # --- agents and episode
    n_consumers: int = 100
    """number of consumer-workers N"""
    n_firms: int = 10
    """number of firms F (any positive count)"""
    episode_length: int = 10
    """T, steps (quarters) per episode"""

    # --- action grids (the action encoding is a public contract: indices into these grids)
    demand_grid: tuple[float, ...] = _grid(0.0, 1.0, 11)
    """units a consumer can demand from each firm"""
    hours_grid: tuple[float, ...] = _grid(0.0, 260.0, 5)
    """hours a consumer can supply"""
    price_grid: tuple[float, ...] = _grid(0.0, 500.0, 6)
    """prices a firm can post"""
    wage_grid: tuple[float, ...] = _grid(0.0, 11.0, 5)
    """wages a firm can post"""
    tax_grid: tuple[float, ...] = _grid(0.0, 0.2, 6)
    """income and corporate tax rates the government can set"""

    # --- consumers
    eta: float = 0.1
    """CRRA parameter of consumption utility ((c+1)^(1-eta) - 1)/(1-eta)"""
    theta_max: float = 0.01
    """labour disutility of consumer 0; theta_j = theta_max (1 - j/N)^(1/pareto_shape)"""
    pareto_shape: float = 4.0
    """shape of the Pareto quantiles that spread theta across consumers"""
    labour_disutility: str = "linear"
    """'linear' (code: theta/2 h) or 'quadratic' (paper: theta/2 h^2)"""
    consumer_budget0: float = 2000.0
    """initial consumer budget"""
    budget_epsilon: float = 0.01
    """money added to every consumer budget each step (reference code keeps budgets off zero)"""

    # --- firms
    productivity: float = 0.01
    """A in Y = A K^(1-alpha) L^alpha"""
    alpha_set: tuple[float, ...] = (0.2, 0.3, 0.4, 0.6, 0.8)
    """labour shares, firm i gets alpha_set[i mod len]; paper uses (0.2, 0.4, 0.6, 0.8)"""
    capital_low: float = 5000.0
    """initial capital of firms i < F // 2"""
    capital_high: float = 10000.0
    """initial capital of firms i >= F // 2"""
    firm_budget0_per_consumer: float = 22000.0
    """initial firm budget is this times n_consumers"""
    price0: float = 1000.0
    """initial price of every firm"""
    wage0: float = 0.0
    """initial wage of every firm"""
    stock0: float = 0.0
    """initial stock of every firm"""
    investment_fraction: float = 0.1
    """share invested in capital each step"""
    investment_base: str = "income"
    """'income' (code: of positive step operating income) or 'budget' (paper: of positive budget)"""
    interest_rate: float = 0.0
    """r paid on positive budgets after each step"""

    # --- open economy
    open_economy: bool = True
    """exports on (open) or off (closed)"""
    p_export: float = 500.0
    """the export market buys only from firms whose price reaches this floor"""
    q_export: float = 100.0
    """units the export market buys at most from each firm per step"""
    export_strict: bool = False
    """False: export when price >= p_export (code); True: price > p_export (paper)"""

    # --- government
    welfare: str = "total"
    """'consumer': sum of consumer utilities; 'total': plus firm_welfare_weight x sum of firm rewards"""
    firm_welfare_weight: float = 0.0025
    """weight of firm rewards in 'total' welfare"""

    # --- RBC extensions (off by default)
    tfp_rho: float = 0.0
    """persistence of the aggregate log-AR(1) TFP shock"""
    tfp_sigma: float = 0.0
    """innovation sd of the log TFP shock (0 = no shock)"""
    depreciation: float = 0.0
    """capital depreciation rate per step"""

    # --- observations
    digit_encoding: bool = True
    """expand stocks and own budget into 10 digit features, as the reference does"""
    n_digits: int = 10
    """digit features per expanded value"""
    price_scale: float = 2500.0
    """prices are observed divided by this"""
    wage_scale: float = 44.0
    """wages are observed divided by this"""
    theta_scale: float = 0.01
    """own theta is observed divided by this"""
    capital_scale: float = 10000.0
    """own capital is observed divided by this"""

    # --- numerics
    dtype: str = "float32"
    """'float32' or 'float64' for the state"""

    def __post_init__(self) -> None:
        for f in fields(self):  # type-check every field, also on direct construction
            object.__setattr__(self, f.name, coerce(f.name, _hints()[f.name], getattr(self, f.name)))
        _validate(self)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None = None, **kwargs: Any) -> "EconomyConfig":
        """Build from a mapping; unknown keys and wrong types raise ConfigError naming the key."""
        merged = {**dict(values or {}), **kwargs}
        preset = merged.pop("preset", None)
        base = preset_config(preset) if preset is not None else cls()
        return base.replace(**merged)

    def replace(self, **changes: Any) -> "EconomyConfig":
        """A copy with some fields changed; every change is type-checked and validated."""
        hints = _hints()
        coerced = {}
        for key, value in changes.items():
            if key not in hints:
                raise ConfigError(unknown_key(key, key, hints, "EconomyConfig fields"))
            coerced[key] = coerce(key, hints[key], value)
        return dataclasses.replace(self, **coerced)

    # ------------------------------------------------------------------ derived sizes
    @property
    def n_agents(self) -> int:
        """consumers + firms + one government"""
        return self.n_consumers + self.n_firms + 1

    @property
    def firm_budget0(self) -> float:
        return self.firm_budget0_per_consumer * self.n_consumers

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (tuples as lists) for YAML and checkpoints."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@functools.cache
def _hints() -> dict[str, Any]:
    """Each field's type (the annotations are strings under `from __future__ import annotations`)."""
    return typing.get_type_hints(EconomyConfig)


def _validate(cfg: EconomyConfig) -> None:
    def need(ok: bool, key: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"{key}={getattr(cfg, key)!r}: {why}")

    for key in ("n_consumers", "n_firms", "episode_length", "n_digits"):
        value = getattr(cfg, key)
        need(isinstance(value, int) and not isinstance(value, bool), key, "must be an int")
        need(value > 0, key, "must be positive")
    for key in ("demand_grid", "hours_grid", "price_grid", "wage_grid", "tax_grid", "alpha_set"):
        grid = getattr(cfg, key)
        need(isinstance(grid, tuple) and len(grid) > 0, key, "must be a non-empty list of numbers")
        need(all(math.isfinite(v) and v >= 0 for v in grid), key, "values must be finite and >= 0")
    need(all(0.0 <= t <= 1.0 for t in cfg.tax_grid), "tax_grid", "tax rates must lie in [0, 1]")
    need(all(0.0 < a < 1.0 for a in cfg.alpha_set), "alpha_set", "labour shares must lie in (0, 1)")
    for key in ("price_scale", "wage_scale", "theta_scale", "capital_scale", "productivity"):
        need(math.isfinite(getattr(cfg, key)) and getattr(cfg, key) > 0, key, "must be positive")
    for key in ("theta_max", "consumer_budget0", "capital_low", "capital_high", "q_export",
                "p_export", "investment_fraction", "firm_budget0_per_consumer", "budget_epsilon",
                "price0", "wage0", "stock0", "firm_welfare_weight", "tfp_sigma", "depreciation"):
        need(math.isfinite(getattr(cfg, key)) and getattr(cfg, key) >= 0, key, "must be finite and >= 0")
    need(cfg.eta > 0 and cfg.eta != 1.0 and math.isfinite(cfg.eta), "eta", "must be positive and != 1")
    need(cfg.pareto_shape > 0, "pareto_shape", "must be positive")
    need(cfg.investment_fraction <= 1.0, "investment_fraction", "must be <= 1")
    need(cfg.depreciation <= 1.0, "depreciation", "must be <= 1")
    need(-1.0 < cfg.interest_rate < 10.0, "interest_rate", "must lie in (-1, 10)")
    need(-1.0 < cfg.tfp_rho < 1.0, "tfp_rho", "must lie in (-1, 1)")
    need(cfg.labour_disutility in _LABOUR_DISUTILITY, "labour_disutility", f"one of {_LABOUR_DISUTILITY}")
    need(cfg.investment_base in _INVESTMENT_BASE, "investment_base", f"one of {_INVESTMENT_BASE}")
    need(cfg.welfare in _WELFARE, "welfare", f"one of {_WELFARE}")
    need(cfg.dtype in _DTYPES, "dtype", f"one of {_DTYPES}")


def closed_economy(**overrides: Any) -> EconomyConfig:
    """The closed RBC economy: no export market."""
    return EconomyConfig().replace(**{"open_economy": False, **overrides})


def open_economy(**overrides: Any) -> EconomyConfig:
    """The open RBC economy: exports at p_export 500, q_export 100."""
    return EconomyConfig().replace(**{"open_economy": True, **overrides})


def paper_economy(**overrides: Any) -> EconomyConfig:
    """The paper's equations instead of the code's (every paper-vs-code switch flipped)."""
    return EconomyConfig().replace(**{
        "labour_disutility": "quadratic", "alpha_set": (0.2, 0.4, 0.6, 0.8),
        "investment_base": "budget", "export_strict": True, **overrides})


PRESETS = {"open": open_economy, "closed": closed_economy, "paper": paper_economy}


def preset_config(name: str, **overrides: Any) -> EconomyConfig:
    """A preset by name: 'open', 'closed' or 'paper'."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError(f"preset={name!r}: unknown preset; choose one of {sorted(PRESETS)}")
    return PRESETS[name](**overrides)


CONFIG_KEYS = frozenset(f.name for f in fields(EconomyConfig))
