"""Exact best responses of tiny economies, by enumeration (a known answer for the analyser).

With every other type playing a fixed deterministic action plan and no TFP shock, the economy is
deterministic, so type k's payoff is a function of k's own action sequence alone. Enumerating every
sequence, one replica of one batched `Economy` per sequence, gives the exact best payoff U*_k, and
U*_k - U_k(profile) is the exact epsilon of type k that a learned best response can only approach
from below.

Plans. A plan of a type is an integer tensor of action indices [T, n, heads] (T = episode_length,
n the type's agents, 1 for the government); `fixed` may give a type's plan as [heads] (every agent,
every step), [n, heads] (per agent, every step) or [T, n, heads] (per step and agent).

Open loop is closed loop here. The state path of a deterministic economy with deterministic other
types is determined by the deviator's own actions, so any closed-loop deterministic policy plays
some open-loop sequence, and a stochastic one a mixture of sequences; the best open-loop sequence
is therefore the best closed-loop policy too.

Types with several agents. Their shared policy conditions on each agent's own observation (budget,
theta; a firm's id), so its agents may act differently; yet every agent's action comes from the same
network. `per_agent=True` enumerates the agents' sequences jointly: its best value bounds any shared
policy's payoff U_k (the mean over the type's agents) from above, but a shared policy attains it only
when the agents' observations tell them apart at every step. `per_agent=False` (the default)
enumerates one sequence played by every agent of the type: a value a shared policy always attains
(a constant policy plays it), which is the exact optimum when the two agree. For a type with one
agent (the government; the firms of a one-firm economy) the two coincide and the value is both
exact and attainable, which is where the tests use it.

Actions at the last step of prices, wages and taxes act only after the episode ends, so many
sequences tie; ties go to the first sequence in enumeration order (lexicographic in
(step, agent, head), the last head fastest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch

from ..economy import AGENT_TYPES, Actions, Economy, EconomyConfig, action_nvec

MAX_SEQUENCES = 1 << 20
"""the largest enumeration exact_best_response runs (one economy replica per sequence)"""


@dataclass(frozen=True)
class ExactBestResponse:
    """Type `kind`'s exact best response to fixed plans of the other types."""

    kind: str
    payoff: float
    """U*_k: the best payoff over every enumerated sequence"""
    plan: torch.Tensor
    """the best sequence [T, n, heads] (the first of ties)"""
    payoffs: torch.Tensor
    """U_k of every sequence [S] float64, in enumeration order"""
    plans: torch.Tensor
    """every sequence [S, T, n, heads], in enumeration order"""


def agent_counts(cfg: EconomyConfig) -> dict[str, int]:
    """Agents per type (the government is one agent)."""
    return {"consumer": cfg.n_consumers, "firm": cfg.n_firms, "government": 1}


def full_plan(cfg: EconomyConfig, kind: str, plan) -> torch.Tensor:
    """A type's plan as int64 [T, n, heads], from [heads], [n, heads] or [T, n, heads]."""
    if kind not in AGENT_TYPES:
        raise ValueError(f"type {kind!r}: one of {AGENT_TYPES}")
    p = torch.as_tensor(plan, dtype=torch.int64)
    t, n, nvec = cfg.episode_length, agent_counts(cfg)[kind], action_nvec(cfg)[kind]
    if p.ndim < 1 or p.ndim > 3 or p.shape[-1] != len(nvec):
        raise ValueError(f"{kind} plan of shape {tuple(p.shape)}: [heads], [n, heads] or [T, n, heads] "
                         f"with {len(nvec)} heads")
    shape = (t, n, len(nvec))
    try:
        p = p.view((1,) * (3 - p.ndim) + tuple(p.shape)).expand(shape)
    except RuntimeError:
        raise ValueError(f"{kind} plan of shape {tuple(p.shape)} does not fit [T, n, heads] = {shape}") from None
    high = torch.tensor(nvec)
    if bool(((p < 0) | (p >= high)).any()):
        raise ValueError(f"{kind} plan has an index outside its heads' ranges 0..{[k - 1 for k in nvec]}")
    return p.contiguous()


def plan_payoffs(cfg: EconomyConfig, plans: Mapping[str, torch.Tensor],
                 backend: str = "auto") -> dict[str, torch.Tensor]:
    """{type: U [S] float64}: each type's payoff (mean over its agents of the summed episode reward)
    when replica s plays plans[kind][s] ([S, T, n, heads]; a [T, n, heads] plan, or any shape
    `full_plan` takes, is played in every replica). One batched Economy of S replicas, theta at full
    strength, no TFP shock: deterministic."""
    if cfg.tfp_sigma > 0.0:
        raise ValueError(f"tfp_sigma={cfg.tfp_sigma}: a TFP shock makes payoffs random, not exact")
    batched = {k: torch.as_tensor(v, dtype=torch.int64) for k, v in plans.items()}
    missing = [k for k in AGENT_TYPES if k not in batched]
    if missing:
        raise ValueError(f"no plan for {missing}")
    sizes = {v.shape[0] for v in batched.values() if v.ndim == 4}
    if len(sizes) > 1:
        raise ValueError(f"batched plans disagree on the number of replicas: {sorted(sizes)}")
    s = sizes.pop() if sizes else 1
    full = {k: _check_batched(cfg, k, v) if v.ndim == 4 else full_plan(cfg, k, v).expand(s, -1, -1, -1)
            for k, v in batched.items()}
    economy = Economy(cfg, s, seed=0, backend=backend)
    economy.reset(theta_factor=1.0)
    total = {k: torch.zeros(s, dtype=torch.float64) for k in AGENT_TYPES}
    for t in range(cfg.episode_length):
        result = economy.step(Actions(consumer=full["consumer"][:, t].contiguous(),
                                      firm=full["firm"][:, t].contiguous(),
                                      government=full["government"][:, t, 0].contiguous()))
        r = result.rewards
        total["consumer"] += r.consumer.to(torch.float64).mean(-1)
        total["firm"] += r.firm.to(torch.float64).mean(-1)
        total["government"] += r.government.to(torch.float64)
    return total


def _check_batched(cfg: EconomyConfig, kind: str, v: torch.Tensor) -> torch.Tensor:
    t, n, nvec = cfg.episode_length, agent_counts(cfg)[kind], action_nvec(cfg)[kind]
    if tuple(v.shape[1:]) != (t, n, len(nvec)):
        raise ValueError(f"batched {kind} plans of shape {tuple(v.shape)}: need [S, {t}, {n}, {len(nvec)}]")
    if bool(((v < 0) | (v >= torch.tensor(nvec))).any()):
        raise ValueError(f"{kind} plans have an index outside its heads' ranges 0..{[k - 1 for k in nvec]}")
    return v.contiguous()


def enumerate_plans(cfg: EconomyConfig, kind: str, per_agent: bool = False,
                    max_sequences: int = MAX_SEQUENCES) -> torch.Tensor:
    """Every open-loop sequence of `kind` as [S, T, n, heads] int64, in lexicographic order (the last
    head fastest). per_agent=False: one sequence played by every agent of the type."""
    t, n, nvec = cfg.episode_length, agent_counts(cfg)[kind], action_nvec(cfg)[kind]
    movers = n if per_agent else 1
    radices = nvec * (t * movers)
    count = math.prod(radices)
    if count > max_sequences:
        raise ValueError(f"{kind}: {count} sequences ({t} steps x {movers} agent(s) x heads {nvec}) exceed "
                         f"max_sequences={max_sequences}")
    rest = torch.arange(count, dtype=torch.int64)
    digits = torch.empty(count, len(radices), dtype=torch.int64)
    for i in reversed(range(len(radices))):
        digits[:, i] = rest % radices[i]
        rest = rest // radices[i]
    plans = digits.view(count, t, movers, len(nvec))
    return plans if per_agent else plans.expand(count, t, n, len(nvec)).contiguous()


def exact_best_response(cfg: EconomyConfig, kind: str, fixed: Mapping[str, torch.Tensor],
                        per_agent: bool = False, max_sequences: int = MAX_SEQUENCES,
                        backend: str = "auto") -> ExactBestResponse:
    """Type `kind`'s best open-loop sequence against the other types' fixed plans (`fixed` holds a
    plan for every other type; see the module docstring for shapes), found by evaluating every
    sequence as one replica of one batched Economy. A pure function of the config and the plans; use
    a float64 config (`dtype='float64'`) for payoffs exact to rounding."""
    others = {k: fixed[k] for k in AGENT_TYPES if k != kind and k in fixed}
    missing = [k for k in AGENT_TYPES if k != kind and k not in others]
    if missing:
        raise ValueError(f"no fixed plan for {missing}")
    plans = enumerate_plans(cfg, kind, per_agent, max_sequences)
    values = plan_payoffs(cfg, {**others, kind: plans}, backend=backend)[kind]
    best = int(torch.argmax(values))  # the first maximum
    return ExactBestResponse(kind=kind, payoff=float(values[best]), plan=plans[best].clone(),
                             payoffs=values, plans=plans)


def exact_epsilon(cfg: EconomyConfig, kind: str, profile: Mapping[str, torch.Tensor],
                  per_agent: bool = False, max_sequences: int = MAX_SEQUENCES) -> tuple[float, ExactBestResponse]:
    """(U*_k - U_k(profile), the exact best response) for a deterministic profile of plans."""
    before = float(plan_payoffs(cfg, profile)[kind][0])
    best = exact_best_response(cfg, kind, profile, per_agent, max_sequences)
    return best.payoff - before, best
