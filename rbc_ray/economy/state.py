"""Batched economy state: every replica and every agent is a row of a torch tensor.

`Params` holds what never changes in a run (theta, alpha, grids) on the device; `State` holds what a
step changes. Both are frozen dataclasses of tensors so a step is a pure function (state -> state).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .config import EconomyConfig


@dataclass(frozen=True)
class Params:
    """Per-run constants on the device, derived once from an EconomyConfig."""

    cfg: EconomyConfig
    device: torch.device
    dtype: torch.dtype
    theta: torch.Tensor        # [N] base labour disutility per consumer
    alpha: torch.Tensor        # [F] labour share per firm
    capital0: torch.Tensor     # [F] initial capital
    demand_grid: torch.Tensor  # [n_demand]
    hours_grid: torch.Tensor   # [n_hours]
    price_grid: torch.Tensor   # [n_price]
    wage_grid: torch.Tensor    # [n_wage]
    tax_grid: torch.Tensor     # [n_tax]
    firm_onehot: torch.Tensor  # [F, F]
    digit_scale: torch.Tensor  # [n_digits] 10^-(j+1), for the digit encoding
    arithmetic: dict           # grid name -> (start, stride) when the grid is arithmetic, else None

    @classmethod
    def build(cls, cfg: EconomyConfig, device: str | torch.device = "cpu") -> "Params":
        dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
        device = resolve_device(device)

        def t(values) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=device)

        n, f = cfg.n_consumers, cfg.n_firms
        return cls(
            cfg=cfg, device=device, dtype=dtype,
            theta=t([consumer_theta(cfg, j) for j in range(n)]),
            alpha=t([firm_alpha(cfg, i) for i in range(f)]),
            capital0=t([firm_capital0(cfg, i) for i in range(f)]),
            demand_grid=t(cfg.demand_grid), hours_grid=t(cfg.hours_grid),
            price_grid=t(cfg.price_grid), wage_grid=t(cfg.wage_grid), tax_grid=t(cfg.tax_grid),
            firm_onehot=torch.eye(f, dtype=dtype, device=device),
            digit_scale=t([10.0 ** -(j + 1) for j in range(cfg.n_digits)]),
            arithmetic={name: _arithmetic(getattr(cfg, name)) for name in GRIDS},
        )

    def lookup(self, name: str, index: torch.Tensor) -> torch.Tensor:
        """Grid value of each index; arithmetic grids (all the defaults) avoid a gather."""
        arith = self.arithmetic[name]
        if arith is None:
            return getattr(self, name)[index]
        start, stride = arith
        value = index.to(self.dtype, memory_format=torch.contiguous_format)
        if stride != 1.0:
            value = value * stride
        if start != 0.0:
            value = value + start
        return value


GRIDS = ("demand_grid", "hours_grid", "price_grid", "wage_grid", "tax_grid")


def _arithmetic(grid: tuple[float, ...]) -> tuple[float, float] | None:
    """(start, stride) when grid[i] == start + stride * i exactly, else None."""
    if len(grid) < 2:
        return None
    start, stride = grid[0], grid[1] - grid[0]
    ok = all(g == start + stride * i for i, g in enumerate(grid))
    return (start, stride) if ok else None


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device, with a clear error when it is unknown or absent on this machine."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r}: not a torch device ({err})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available on this machine; use 'cpu'")
    return dev


def consumer_theta(cfg: EconomyConfig, j: int) -> float:
    """theta_j = theta_max (1 - j/N)^(1/shape): Pareto quantiles, consumer 0 dislikes work most."""
    return cfg.theta_max * (1.0 - j / cfg.n_consumers) ** (1.0 / cfg.pareto_shape)


def firm_alpha(cfg: EconomyConfig, i: int) -> float:
    """Labour share of firm i: the alpha set repeated."""
    return cfg.alpha_set[i % len(cfg.alpha_set)]


def firm_capital0(cfg: EconomyConfig, i: int) -> float:
    """Initial capital: the first F // 2 firms are small, the rest large."""
    return cfg.capital_low if i < cfg.n_firms // 2 else cfg.capital_high


@dataclass(frozen=True)
class State:
    """What a step changes. Shapes: E envs, N consumers, F firms."""

    price: torch.Tensor            # [E, F] posted price, applies this step
    wage: torch.Tensor             # [E, F] posted wage, applies this step
    stock: torch.Tensor            # [E, F] units on hand
    overdemanded: torch.Tensor     # [E, F] 1.0 if rationed last step
    capital: torch.Tensor          # [E, F]
    firm_budget: torch.Tensor      # [E, F]
    consumer_budget: torch.Tensor  # [E, N]
    income_tax: torch.Tensor       # [E]
    corporate_tax: torch.Tensor    # [E]
    t: torch.Tensor                # [E] step within the episode (float, for observations)
    log_tfp: torch.Tensor          # [E] aggregate log TFP deviation (0 without the shock)
    theta_factor: torch.Tensor     # [E] theta annealing factor in [0, 1] (curriculum knob)

    @property
    def n_envs(self) -> int:
        return self.price.shape[0]

    def replace(self, **changes: torch.Tensor) -> "State":
        return dataclasses.replace(self, **changes)

    def to(self, device: str | torch.device) -> "State":
        return State(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})

    def clone(self) -> "State":
        return State(**{f.name: getattr(self, f.name).clone() for f in dataclasses.fields(self)})


def initial_state(params: Params, n_envs: int, theta_factor: float = 1.0) -> State:
    """The spec's initial state, the same in every replica."""
    cfg, dt, dev = params.cfg, params.dtype, params.device
    if not isinstance(n_envs, int) or isinstance(n_envs, bool) or n_envs <= 0:
        raise ValueError(f"n_envs={n_envs!r}: must be a positive int")
    if not 0.0 <= float(theta_factor) <= 1.0:
        raise ValueError(f"theta_factor={theta_factor!r}: must lie in [0, 1]")
    e, n, f = n_envs, cfg.n_consumers, cfg.n_firms

    def full(shape, value) -> torch.Tensor:
        return torch.full(shape, float(value), dtype=dt, device=dev)

    return State(
        price=full((e, f), cfg.price0), wage=full((e, f), cfg.wage0), stock=full((e, f), cfg.stock0),
        overdemanded=full((e, f), 0.0), capital=params.capital0.expand(e, f).clone(),
        firm_budget=full((e, f), cfg.firm_budget0), consumer_budget=full((e, n), cfg.consumer_budget0),
        income_tax=full((e,), 0.0), corporate_tax=full((e,), 0.0), t=full((e,), 0.0),
        log_tfp=full((e,), 0.0), theta_factor=full((e,), theta_factor),
    )
