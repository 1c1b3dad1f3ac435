"""Shared helpers of the economy tests: action and state samplers, batched-vs-reference comparison.

Imported by the test files of this folder as `economy_helpers` (pytest puts the folder on sys.path).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from rbc_ray.economy import Actions, Params, State, action_nvec, initial_state
from rbc_ray.economy.reference import STATE_FIELDS

RTOL = 1e-5
ATOL = 1e-7


def sample_actions(cfg, n_envs: int, gen: torch.Generator, p_zero: float = 0.4) -> Actions:
    """Random valid actions; each head is 0 with probability p_zero, else uniform.

    The extra zeros give non-binding budgets, idle workers and unrationed goods next to the
    uniformly random choices (which nearly always bind the budget).
    """
    nvec = action_nvec(cfg)

    def draw(kind: str, shape: tuple[int, ...]) -> torch.Tensor:
        high = torch.tensor(nvec[kind], dtype=torch.float64)
        u = torch.rand(*shape, len(nvec[kind]), generator=gen, dtype=torch.float64)
        idx = (u * high).long().clamp(max=high.long() - 1)
        zero = torch.rand(*shape, len(nvec[kind]), generator=gen, dtype=torch.float64) < p_zero
        return torch.where(zero, torch.zeros_like(idx), idx)

    e, n, f = n_envs, cfg.n_consumers, cfg.n_firms
    return Actions(consumer=draw("consumer", (e, n)), firm=draw("firm", (e, f)),
                   government=draw("government", (e,)))


def random_state(params: Params, n_envs: int, gen: torch.Generator, t_random: bool = True) -> State:
    """A random but valid state: grid prices/wages/taxes, stocks and capital >= 0, budgets > 0."""
    cfg, dt = params.cfg, params.dtype
    e, n, f = n_envs, cfg.n_consumers, cfg.n_firms

    def u(*shape) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, dtype=torch.float64)

    def pick(grid: tuple[float, ...], *shape) -> torch.Tensor:
        idx = torch.randint(len(grid), shape, generator=gen)
        return torch.tensor(grid, dtype=torch.float64)[idx]

    whole = u(e, f) < 0.3  # some integer stocks (including 0), some fractional
    stock = torch.where(whole, torch.floor(u(e, f) * 20), u(e, f) * 300)
    t = torch.randint(cfg.episode_length, (e,), generator=gen).double() if t_random \
        else torch.zeros(e, dtype=torch.float64)
    s = State(
        price=pick(cfg.price_grid, e, f), wage=pick(cfg.wage_grid, e, f), stock=stock,
        overdemanded=(u(e, f) < 0.5).double(), capital=1000 + u(e, f) * 20000,
        firm_budget=(u(e, f) * 2 - 0.2) * cfg.firm_budget0 + 1.0,
        consumer_budget=0.01 + u(e, n) * 10 * cfg.consumer_budget0,
        income_tax=pick(cfg.tax_grid, e), corporate_tax=pick(cfg.tax_grid, e), t=t,
        log_tfp=(u(e) - 0.5) * 0.4 if (cfg.tfp_sigma > 0 or cfg.tfp_rho != 0) else torch.zeros(e, dtype=torch.float64),
        theta_factor=u(e),
    )
    return State(**{k: getattr(s, k).to(dt) for k in STATE_FIELDS})


def reset_done(params: Params, state: State, done: torch.Tensor) -> State:
    """Envs whose episode ended go back to the initial state; the others keep theirs."""
    init = initial_state(params, state.n_envs)
    changes = {}
    for name in STATE_FIELDS:
        old, new = getattr(state, name), getattr(init, name)
        mask = done.view(-1, *([1] * (old.dim() - 1)))
        changes[name] = torch.where(mask, new, old)
    return State(**changes)


def env_actions(actions: Actions, e: int) -> tuple[list, list, list]:
    """Actions of env e as plain lists (for the reference economy)."""
    return actions.consumer[e].tolist(), actions.firm[e].tolist(), actions.government[e].tolist()


def batched_record(next_state: State, result: Any, e: int) -> dict[str, Any]:
    """What the batched step produced for env e, in the reference's dict layout."""
    acc = result.accounts
    return {
        "state": {k: getattr(next_state, k)[e].tolist() for k in STATE_FIELDS},
        "rewards": {"consumer": result.rewards.consumer[e].tolist(),
                    "firm": result.rewards.firm[e].tolist(),
                    "government": result.rewards.government[e].item()},
        "accounts": {f.name: getattr(acc, f.name)[e].tolist() for f in dataclasses.fields(acc)},
        "obs": {kind: result.obs.full(kind)[e].tolist() for kind in ("consumer", "firm", "government")},
        "done": bool(result.done[e]),
    }


def digit_positions(cfg) -> dict[str, set[int]]:
    """Columns of each agent type's full observation that hold digit features (spec layout)."""
    if not cfg.digit_encoding:
        return {"consumer": set(), "firm": set(), "government": set()}
    f, d = cfg.n_firms, cfg.n_digits
    stock = set(range(2 * f, 2 * f + f * d))
    glob = 3 * f + f * d + 3
    own = stock | set(range(glob, glob + d))
    return {"consumer": own, "firm": own, "government": stock}


def assert_record_close(actual: dict, expected: dict, cfg, path: str = "") -> None:
    """Compare a batched record with the reference's; digit features are compared modulo 1.

    A digit feature frac(x / 10^(j+1)) jumps from ~1 to 0 when x crosses a multiple of 10^(j+1);
    budgets and stocks often sit within a rounding error of such a multiple (integer prices and
    wages), so two correct implementations may land on either side. The values themselves are
    compared tightly in the state.
    """
    rest = {k: v for k, v in expected.items() if k != "obs"}
    assert_tree_close({k: actual[k] for k in rest}, rest, path)
    positions = digit_positions(cfg)
    for kind, rows in expected["obs"].items():
        got = actual["obs"][kind]
        assert len(got) == len(rows), f"{path}.obs.{kind}: {len(got)} agents != {len(rows)}"
        for i, (a_row, b_row) in enumerate(zip(got, rows)):
            assert len(a_row) == len(b_row), f"{path}.obs.{kind}[{i}]: width {len(a_row)} != {len(b_row)}"
            for col, (a, b) in enumerate(zip(a_row, b_row)):
                where = f"{path}.obs.{kind}[{i}][{col}]"
                if col in positions[kind]:
                    assert 0.0 <= a <= 1.0, f"{where}: digit feature {a!r} outside [0, 1]"
                    gap = abs(a - b)
                    gap = min(gap, 1.0 - gap)
                    assert gap <= RTOL * abs(b) + 1e-9, f"{where}: digit {a!r} != {b!r} (reference)"
                else:
                    assert_tree_close(a, b, where)


def assert_tree_close(actual: Any, expected: Any, path: str = "", rtol: float = RTOL,
                      atol: float = ATOL) -> None:
    """Recursive comparison of dicts / lists / numbers; the failure message names the path."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected a dict"
        assert set(actual) == set(expected), f"{path}: keys {sorted(actual)} != {sorted(expected)}"
        for k in expected:
            assert_tree_close(actual[k], expected[k], f"{path}.{k}", rtol, atol)
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)), f"{path}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, (a, b) in enumerate(zip(actual, expected)):
            assert_tree_close(a, b, f"{path}[{i}]", rtol, atol)
    elif isinstance(expected, bool):
        assert bool(actual) == expected, f"{path}: {actual} != {expected}"
    else:
        a, b = float(actual), float(expected)
        assert math.isfinite(a), f"{path}: not finite: {a}"
        assert math.isclose(a, b, rel_tol=rtol, abs_tol=atol), f"{path}: {a!r} != {b!r} (reference)"
