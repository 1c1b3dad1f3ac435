"""Lagged prices in the policy state (`price_lags`): the lag grid, its interpolation corners, the shift.

The primitives the models need; rbc_ray/structural/lags.py compares solutions by lag count.
"""

from __future__ import annotations

from typing import Any

import torch


def lag_step(cal: Any) -> float:
    """Spacing of the lag grid (uniform on [r_min, r_max], n_lag nodes)."""
    return (cal.r_max - cal.r_min) / (cal.n_lag - 1)


def lag_corners(lags: torch.Tensor, r_min: float, step: float, n_lag: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(m [N, 2^L] long, weight [N, 2^L]) of the lag-grid corners around lags [N, L].

    Corner c has bits (b_1, ..., b_L), b_1 the most significant; its node is i_l + b_l on axis l
    (i_l the bracket of lag l, clamped to the grid) and its flat index m = sum_l node_l n_lag^(L-l)
    (r_{t-1} major); its weight is prod_l (1 - a_l or a_l), multiplied left to right."""
    lags = lags.detach()
    N, L = lags.shape
    pos = ((lags - r_min) / step).clamp(0.0, n_lag - 1.0)
    lo = pos.long().clamp(max=n_lag - 2)
    a = pos - lo
    ms, ws = [], []
    for c in range(1 << L):
        m = torch.zeros(N, dtype=torch.long, device=lags.device)
        w = None
        for axis in range(L):
            bit = (c >> (L - 1 - axis)) & 1
            m = m * n_lag + lo[:, axis] + bit
            wa = a[:, axis] if bit else 1 - a[:, axis]
            w = wa if w is None else w * wa
        ms.append(m)
        ws.append(w)
    return torch.stack(ms, 1), torch.stack(ws, 1)


def shift(lags: torch.Tensor, price: torch.Tensor) -> torch.Tensor:
    """Next period's lags: today's price becomes r_{-1}, r_{-1} becomes r_{-2}."""
    return torch.cat([price.detach()[:, None].to(lags.dtype), lags[:, :-1]], 1)
