"""The continuation value at the horizon (terminal='value') is what it says.

Partial-equilibrium Huggett with the rate chain held at one node is an economy at constant prices:
every period has the same transition matrix M (lottery x income chain) and utility row u, and a
rollout starts from the uniform d_0. Built here by hand, state by state, from the policy table:

    terminal='none':   objective = (1 - beta) sum_{t<T} beta^t d_0 M^t u       (the spec's truncation)
    terminal='value':  objective = (1 - beta) d_0 (I - beta M)^{-1} u          (for every T)

since V = (I - beta M)^{-1} u telescopes the tail: sum_{t<T} beta^t d_t . u + beta^T d_T . V = d_0 . V.
"""

import pytest
import torch

from rbc_ray.structural.api import build
from rbc_ray.structural.config import ConfigError, calibration
from rbc_ray.structural.core import grids, terminal
from rbc_ray.structural.kernels import fused

KERNELS = ["torch"] + (["fused"] if fused.load() is not None else [])


def _constant_rate_model(kernel, terminal_key, e_trunc):
    r_grid = torch.linspace(0.01, 0.06, 8, dtype=torch.float64)
    # the rate chain never leaves the start node (n_r // 2): r_bar on that node, no persistence, no noise
    cal = calibration("huggett-pe", {"n_b": 12, "n_r": 8, "r_bar": float(r_grid[4]), "rho_r": 0.0, "sd_r": 0.0,
                                     "n_paths": 3, "e_trunc": e_trunc, "dtype": "float64", "kernel": kernel,
                                     "terminal": terminal_key}, smoke=True)
    m = build("huggett-pe", cal)
    with torch.no_grad():  # interior shares, so that the lottery splits mass between nodes
        m.first.mul_(0.7)
        m.project()
    return m


def _by_hand(m):
    """(M [J, J], u [J]) at the start node, from the savings table with explicit loops."""
    cal = m.cal
    _, b_tab = m.tables()
    b_next = b_tab.detach()[0, 4]
    r = float(m.r_grid[4])
    grid, P = m.b_grid.tolist(), m.P_y.tolist()
    ny, J = len(P), b_next.numel()
    M = torch.zeros(J, J, dtype=torch.float64)
    u = torch.zeros(J, dtype=torch.float64)
    for j in range(J):
        b, y = float(m.b_j[j]), j % ny
        c = max(b + float(m.y_j[j]) - float(b_next[j]) / (1 + r), cal.c_min)
        u[j] = c ** (1 - cal.crra) / (1 - cal.crra)
        bn = min(max(float(b_next[j]), grid[0]), grid[-1])
        i = max(k for k in range(len(grid) - 1) if grid[k] <= bn)
        w = (bn - grid[i]) / (grid[i + 1] - grid[i])
        for y2 in range(ny):
            M[j, i * ny + y2] += (1 - w) * P[y][y2]
            M[j, (i + 1) * ny + y2] += w * P[y][y2]
    return M, u


@pytest.mark.parametrize("kernel", KERNELS)
def test_terminal_value_closes_the_horizon(kernel):
    beta = calibration("huggett-pe").beta
    values = []
    for e_trunc in (0.3, 0.05):
        for key in ("none", "value"):
            m = _constant_rate_model(kernel, key, e_trunc)
            state = m.initial_state()
            shocks = m.draw_shocks(state, torch.Generator().manual_seed(0))
            assert bool((shocks["s"] == 4).all())
            objective, _, _ = m.rollout(state, shocks)
            M, u = _by_hand(m)
            d0 = torch.full((m.J,), 1.0 / m.J, dtype=torch.float64)
            if key == "none":
                want, d = 0.0, d0
                for t in range(m.T):
                    want += beta ** t * float(d @ u)
                    d = d @ M
            else:
                want = float(d0 @ torch.linalg.solve(torch.eye(m.J, dtype=torch.float64) - beta * M, u))
            assert float(objective.detach()) == pytest.approx((1 - beta) * want, rel=1e-11), (e_trunc, key)
            values.append(float(objective.detach()))
    none_short, value_short, none_long, value_long = values
    assert value_short == pytest.approx(value_long, rel=1e-11)  # the horizon no longer matters
    assert abs(none_short - value_short) > 2 * abs(none_long - value_long) > 0  # beta^T d_T . V


def test_policy_value_solves_the_bellman_equation_and_averages_paths():
    """V = mean u + beta mean M V for two paths with different savings (hand-built M_n as above)."""
    b_grid = grids.asset_grid(0.0, 10.0, 6)
    _, P = grids.tauchen(0.6, 0.2, 2)
    gen = torch.Generator().manual_seed(2)
    b_next = 12.0 * torch.rand(2, 12, generator=gen, dtype=torch.float64) - 1.0  # some off the grid
    u = torch.randn(2, 12, generator=gen, dtype=torch.float64)
    V = terminal.policy_value(u, b_next, b_grid, P, 0.9)
    grid = b_grid.tolist()
    Ms = []
    for n in range(2):
        M = torch.zeros(12, 12, dtype=torch.float64)
        for j in range(12):
            bn = min(max(float(b_next[n, j]), grid[0]), grid[-1])
            i = min(max(k for k in range(6) if grid[k] <= bn), 4)
            w = (bn - grid[i]) / (grid[i + 1] - grid[i])
            for y2 in range(2):
                M[j, i * 2 + y2] += (1 - w) * P[j % 2, y2]
                M[j, (i + 1) * 2 + y2] += w * P[j % 2, y2]
        Ms.append(M)
    M_bar = (Ms[0] + Ms[1]) / 2
    assert torch.allclose(V, u.mean(0) + 0.9 * M_bar @ V, atol=1e-12)


def test_terminal_key_is_validated():
    assert calibration("ks").terminal == "value"
    assert calibration("ks", {"terminal": "none"}).terminal == "none"
    with pytest.raises(ConfigError, match="terminal"):
        calibration("ks", {"terminal": "bellman"})
