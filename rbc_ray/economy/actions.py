"""The action encoding (a public contract, shared with the RLlib environment), checks and masks.

consumer: MultiDiscrete([n_demand]*F + [n_hours, F]) = units demanded from each firm, hours, employer
firm:     MultiDiscrete([n_price, n_wage])           = price index, wage index
government: MultiDiscrete([n_tax, n_tax])            = income-tax index, corporate-tax index
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import EconomyConfig

AGENT_TYPES = ("consumer", "firm", "government")


class ActionError(ValueError):
    """Raised for actions of the wrong shape or out of range; names the agent and the head."""


def action_nvec(cfg: EconomyConfig) -> dict[str, list[int]]:
    """Number of choices of each action head, per agent type."""
    f = cfg.n_firms
    return {
        "consumer": [len(cfg.demand_grid)] * f + [len(cfg.hours_grid), f],
        "firm": [len(cfg.price_grid), len(cfg.wage_grid)],
        "government": [len(cfg.tax_grid), len(cfg.tax_grid)],
    }


def head_names(cfg: EconomyConfig) -> dict[str, list[str]]:
    """Human names of the heads, for error messages and metrics."""
    return {
        "consumer": [f"demand_firm_{i}" for i in range(cfg.n_firms)] + ["hours", "employer"],
        "firm": ["price", "wage"],
        "government": ["income_tax", "corporate_tax"],
    }


@dataclass(frozen=True)
class Actions:
    """Batched integer action indices. consumer [E, N, F+2], firm [E, F, 2], government [E, 2].

    Any integer dtype; `index_dtype(cfg)` is the compact one `Economy.random_actions` uses."""

    consumer: torch.Tensor
    firm: torch.Tensor
    government: torch.Tensor


def index_dtype(cfg: EconomyConfig) -> torch.dtype:
    """The smallest index dtype holding every action: uint8 unless a head has over 256 choices
    (e.g. more than 256 firms). The fused CPU step reads uint8 as it is, an eighth of int64's bytes."""
    largest = max(max(v) for v in action_nvec(cfg).values())
    return torch.uint8 if largest <= 256 else torch.int32 if largest <= 2**31 else torch.int64


def as_index(a: torch.Tensor) -> torch.Tensor:
    """Indices torch can gather and scatter with: int32 and int64 as they are, others as int64 (a
    uint8 tensor used as an index would be read as a boolean mask)."""
    return a if a.dtype in (torch.int64, torch.int32) else a.long()


def _agent_id(kind: str, index: int) -> str:
    return "government" if kind == "government" else f"{kind}_{index}"


def check_actions(cfg: EconomyConfig, actions: Actions, n_envs: int) -> None:
    """Raise ActionError naming the first bad agent and head; silent when everything is valid."""
    nvec = action_nvec(cfg)
    names = head_names(cfg)
    shapes = {
        "consumer": (n_envs, cfg.n_consumers, cfg.n_firms + 2),
        "firm": (n_envs, cfg.n_firms, 2),
        "government": (n_envs, 2),
    }
    for kind in AGENT_TYPES:
        a = getattr(actions, kind)
        if not isinstance(a, torch.Tensor):
            raise ActionError(f"{kind} actions must be a torch tensor, got {type(a).__name__}")
        if a.dtype.is_floating_point or a.dtype == torch.bool or a.dtype.is_complex:
            raise ActionError(f"{kind} actions must be integer indices, got dtype {a.dtype}")
        if tuple(a.shape) != shapes[kind]:
            raise ActionError(f"{kind} actions must have shape {shapes[kind]}, got {tuple(a.shape)}")
        high = torch.tensor(nvec[kind], device=a.device)
        bad = (a < 0) | (a >= high)
        if bool(bad.any()):
            idx = bad.nonzero()[0].tolist()
            env, head = idx[0], idx[-1]
            agent = 0 if kind == "government" else idx[1]
            value = int(a[tuple(idx)])
            raise ActionError(
                f"{_agent_id(kind, agent)} in env {env}: action head {names[kind][head]!r} got {value},"
                f" allowed 0..{nvec[kind][head] - 1}")


def range_mask(grid: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Boolean mask of grid values inside [low, high] (at least the nearest value stays allowed)."""
    mask = (grid >= low - 1e-6) & (grid <= high + 1e-6)
    if not bool(mask.any()):
        nearest = torch.argmin((grid - 0.5 * (low + high)).abs())
        mask = torch.zeros_like(mask)
        mask[nearest] = True
    return mask


def additive_mask(mask: torch.Tensor, penalty: float = -1e9) -> torch.Tensor:
    """Turn a boolean allow-mask into additive logits (0 allowed, large negative masked)."""
    return torch.where(mask, torch.zeros((), device=mask.device), torch.full((), penalty, device=mask.device))
