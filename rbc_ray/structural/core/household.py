"""What every SRL model shares: device and dtype, horizon T, asset grid and income chain."""

from __future__ import annotations

from typing import Any

import torch

from . import grids
from .maths import horizon


class HouseholdModel:
    """Base of the model objects: the household side's grids on the calibration's device."""

    def __init__(self, cal: Any) -> None:
        self.cal = cal
        self.device, self.dtype = torch.device(cal.device), getattr(torch, cal.dtype)
        dev, dt = self.device, self.dtype
        self.T = horizon(cal.beta, cal.e_trunc)
        self.b_grid = grids.asset_grid(cal.borrowing_limit, cal.b_max, cal.n_b).to(dev, dt)
        self.locate = grids.asset_locator(cal.borrowing_limit, cal.b_max, cal.n_b)
        y, self.P_y64 = grids.tauchen(cal.rho_y, cal.sd_y, cal.n_y)
        self.y_grid, self.P_y = y.to(dev, dt), self.P_y64.to(dev, dt)
        self.y_dist = grids.stationary(self.P_y64).to(dev, dt)

    def price_grid(self, low: float, high: float, n: int) -> torch.Tensor:
        """An evenly spaced price grid (r or w), built in float64 then cast."""
        return torch.linspace(low, high, n, dtype=torch.float64).to(self.device, self.dtype)
