"""The continuation value at the horizon (calibration key `terminal`).

The SRL objective stops after T periods; without a value for what comes after, households near the
horizon have no reason to save, and because the policy is shared by all periods the last periods'
gradient pulls every period's saving down. With `terminal="value"` each path's objective gains
beta^T d_T . V, where V(b, y) is the value of following the current policy forever at prices held
constant: the policy evaluation

    V = u(c) + beta E[V(b', y')]          (b' by Young's lottery, y' by the income chain)

solved directly as one [J, J] linear system per epoch (float64). The actions (c, b') are the current
policy's at the prices that clear on each path's starting histogram, and the transition is the
average of the paths' lottery-and-income transitions (over at most MAX_PATHS evenly spaced paths,
which keeps the cost at a few percent of an epoch): after the warm-up an epoch starts where the
previous one ended, so these are the previous epoch's terminal prices, and in the stationary economy
every path is the same economy. V is detached: the gradient reaches the policy through d_T.
"""

from __future__ import annotations

import torch

from .distribution import lottery

MAX_PATHS = 64


def paths(n: int) -> slice:
    """The evenly spaced paths (at most MAX_PATHS of n) whose transitions V averages."""
    return slice(None, None, max(1, -(-n // MAX_PATHS)))


@torch.no_grad()
def policy_value(u: torch.Tensor, b_next: torch.Tensor, b_grid: torch.Tensor, P_y: torch.Tensor,
                 beta: float, locate=None) -> torch.Tensor:
    """V [J] (float64) solving V = mean_n u_n + beta mean_n M_n V, with M_n the transition of path n.

    u, b_next [N, J] (flat states j = i_b * n_y + i_y): period utility and savings of each state on
    each path. M_n[j, (i_b', y')] = (lottery weight of b'_nj on node i_b') * P_y[y_j, y'].
    """
    u64, bn = u.double(), b_next.double()
    grid = b_grid.double()
    N, J = bn.shape
    nb, ny = grid.numel(), P_y.shape[0]
    lo, w_hi = lottery(grid, bn, locate)
    rows = torch.arange(J, device=bn.device).expand(N, J) * nb
    A = (torch.bincount((rows + lo).flatten(), weights=(1 - w_hi).flatten(), minlength=J * nb)
         + torch.bincount((rows + lo + 1).flatten(), weights=w_hi.flatten(), minlength=J * nb)).view(J, nb) / N
    y_index = torch.arange(ny, device=bn.device).repeat(nb)
    M = (A[:, :, None] * P_y.double()[y_index][:, None, :]).reshape(J, J)
    system = torch.eye(J, dtype=torch.float64, device=bn.device) - beta * M
    return torch.linalg.solve(system, u64.mean(0))
