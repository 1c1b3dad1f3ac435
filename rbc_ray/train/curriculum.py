"""Curricula as data: when each type trains, its entropy bonus, the action masks and theta annealing.

All schedules are pure functions of the episode counter (reference numbers, spec "Training setup"):

  training start     consumer 0, firm 30K, government 60K (a type acts before it trains: sampled from
                     its frozen initial policy under its mask)
  entropy coef       start * max(exp(-(ep - train_start) / decay), floor), restarted at train_start
  firm masks         price in [1000 - 1000 ep/30K, 1000 + 1500 ep/30K], wage in [22 -+ 22 ep/30K],
                     widening over episodes 0..30K and fully open after
  government mask    both tax rates <= cap, cap rising 0 -> 100% over episodes 30K..60K
  theta annealing    theta_factor = 1 - exp(-ep / 10K), passed to Economy.reset

`compress` divides every episode count above (starts, decays, phase lengths), so a compress of 100
runs the reference curriculum in 1/100 of the episodes. `train.total_episodes` is not divided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..economy import AGENT_TYPES, ConfigError
from ..economy.actions import additive_mask, range_mask


@dataclass(frozen=True)
class CurriculumConfig:
    """Schedules of the reference; every episode count is divided by `compress`."""

    compress: float = 1.0
    """divides all phase lengths and episode counts of the curriculum"""
    consumer_start: float = 0.0
    """episode at which consumers start training"""
    firm_start: float = 30_000.0
    """episode at which firms start training"""
    government_start: float = 60_000.0
    """episode at which the government starts training"""
    entropy_start: float = 0.5
    """entropy coefficient when a type starts training"""
    entropy_decay: float = 10_000.0
    """e-folding episodes of the entropy coefficient"""
    entropy_floor: float = 0.1
    """the coefficient never falls below entropy_start * entropy_floor"""
    masks: bool = True
    """apply the firm and government action masks (off: best response, evaluation)"""
    mask_episodes: float = 30_000.0
    """firm price/wage ranges widen linearly over episodes 0..mask_episodes"""
    price_center: float = 1000.0
    """the only allowed price at episode 0"""
    price_down: float = 1000.0
    """how far the lowest allowed price falls by mask_episodes"""
    price_up: float = 1500.0
    """how far the highest allowed price rises by mask_episodes"""
    wage_center: float = 22.0
    """the only allowed wage at episode 0"""
    wage_halfwidth: float = 22.0
    """wage range half-width at mask_episodes"""
    tax_cap_start: float = 30_000.0
    """the tax cap is 0 until this episode"""
    tax_cap_end: float = 60_000.0
    """the tax cap reaches tax_cap_max at this episode"""
    tax_cap_max: float = 1.0
    """final cap on both tax rates"""
    theta_anneal: bool = True
    """anneal labour disutility in: theta_factor = 1 - exp(-ep / theta_decay); off = full theta"""
    theta_decay: float = 10_000.0
    """e-folding episodes of theta annealing"""

    def validate(self) -> None:
        def need(ok: bool, key: str, why: str) -> None:
            if not ok:
                raise ConfigError(f"curriculum.{key}={getattr(self, key)!r}: {why}")

        need(self.compress > 0, "compress", "must be positive")
        for key in ("consumer_start", "firm_start", "government_start", "mask_episodes",
                    "tax_cap_start", "price_down", "price_up", "wage_halfwidth", "entropy_start"):
            need(getattr(self, key) >= 0, key, "must be >= 0")
        for key in ("entropy_decay", "theta_decay"):
            need(getattr(self, key) > 0, key, "must be positive")
        need(0 <= self.entropy_floor <= 1, "entropy_floor", "must lie in [0, 1]")
        need(self.tax_cap_end >= self.tax_cap_start, "tax_cap_end", "must be >= tax_cap_start")
        need(0 <= self.tax_cap_max <= 1, "tax_cap_max", "must lie in [0, 1]")


class Curriculum:
    """The schedules of a CurriculumConfig as functions of the episode counter."""

    def __init__(self, cfg: CurriculumConfig, frozen: tuple[str, ...] = ()) -> None:
        self.cfg = cfg
        self.frozen = tuple(frozen)
        c = cfg.compress
        self.starts = {"consumer": cfg.consumer_start / c, "firm": cfg.firm_start / c,
                       "government": cfg.government_start / c}
        self.entropy_decay = cfg.entropy_decay / c
        self.mask_episodes = cfg.mask_episodes / c
        self.tax_cap_start = cfg.tax_cap_start / c
        self.tax_cap_end = cfg.tax_cap_end / c
        self.theta_decay = cfg.theta_decay / c
        self._mask_cache: dict = {}

    def training(self, kind: str, episode: int) -> bool:
        """Whether `kind` updates its policy after this episode."""
        return kind not in self.frozen and episode >= self.starts[kind]

    def entropy_coef(self, kind: str, episode: int) -> float:
        """start * max(exp(-(ep - train_start)/decay), floor); the start value before training."""
        since = max(episode - self.starts[kind], 0.0)
        return self.cfg.entropy_start * max(math.exp(-since / self.entropy_decay), self.cfg.entropy_floor)

    def _widening(self, episode: int) -> float:
        if self.mask_episodes <= 0:
            return 1.0
        return min(episode / self.mask_episodes, 1.0)

    def price_range(self, episode: int) -> tuple[float, float]:
        w = self._widening(episode)
        return self.cfg.price_center - self.cfg.price_down * w, self.cfg.price_center + self.cfg.price_up * w

    def wage_range(self, episode: int) -> tuple[float, float]:
        w = self._widening(episode) * self.cfg.wage_halfwidth
        return self.cfg.wage_center - w, self.cfg.wage_center + w

    def tax_cap(self, episode: int) -> float:
        if episode >= self.tax_cap_end:
            return self.cfg.tax_cap_max
        if episode < self.tax_cap_start:
            return 0.0
        return self.cfg.tax_cap_max * (episode - self.tax_cap_start) / (self.tax_cap_end - self.tax_cap_start)

    def theta_factor(self, episode: int) -> float:
        if not self.cfg.theta_anneal:
            return 1.0
        return 1.0 - math.exp(-episode / self.theta_decay)

    def values(self, episode: int) -> dict[str, float]:
        """The schedule values reported in the metrics."""
        if self.cfg.masks:
            (pl, ph), (wl, wh), cap = self.price_range(episode), self.wage_range(episode), self.tax_cap(episode)
        else:
            pl, ph, wl, wh, cap = -math.inf, math.inf, -math.inf, math.inf, 1.0
        return {"price_low": pl, "price_high": ph, "wage_low": wl, "wage_high": wh, "tax_cap": cap,
                "theta_factor": self.theta_factor(episode)}

    def masks(self, params, episode: int) -> dict[str, list[torch.Tensor] | None]:
        """Per-head additive masks per type (None = unmasked); ActorCritic.mask fuses them.

        Masks are decided on the host from the config's grids (no device sync) and the same device
        tensor is returned while a mask does not change, so callers can cache on identity."""
        out: dict[str, list[torch.Tensor] | None] = {kind: None for kind in AGENT_TYPES}
        if not self.cfg.masks:
            return out
        cfg = params.cfg
        price = self._device_mask(params, cfg.price_grid, self.price_range(episode))
        wage = self._device_mask(params, cfg.wage_grid, self.wage_range(episode))
        tax = self._device_mask(params, cfg.tax_grid, (0.0, self.tax_cap(episode)))
        out["firm"] = [price, wage]
        out["government"] = [tax, tax]
        return out

    def _device_mask(self, params, grid: tuple[float, ...], bounds: tuple[float, float]) -> torch.Tensor:
        allowed = range_mask(torch.tensor(grid, dtype=torch.float64), *bounds)
        key = (grid, tuple(allowed.tolist()))
        if key not in self._mask_cache:
            self._mask_cache[key] = additive_mask(allowed).to(device=params.device, dtype=params.dtype)
        return self._mask_cache[key]
