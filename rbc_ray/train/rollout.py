"""Preallocated rollout storage on the device and the episode collector.

Layout per episode (T steps, E envs): the global observation [T, E, G] is stored once per env and
shared by all types; each type stores its own observation [T, E, n, d], actions [T, E, n, heads]
(in the economy's compact index dtype, uint8 for every economy of up to 256 firms), log-probs,
values and unscaled rewards [T, E, n]. These per-agent buffers are the batch PPO learns from, so
they are legitimately agents x (own width + heads): nothing global is repeated per agent (the own
width is 11 for a consumer whatever the firm count). Evaluation keeps one step of them
(`per_agent_steps=1`) and the rewards of every step. Economy statistics for the metrics are summed
on the device ([T, K]) so the hot loop never syncs with the host.

The policy runs on `chunks.pieces` of each step's [E, n] batch, so its logits never exceed
train.chunk_mb however many agents there are.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..economy import AGENT_TYPES, Actions, Economy, action_nvec, index_dtype, obs_sizes
from ..policies import ActorCritic
from .chunks import DEFAULT_CHUNK_MB, agent_steps_per_piece, mask_piece, pieces

ECONOMY_STATS = ("mean_price", "mean_wage", "mean_hours", "mean_consumption", "mean_stock",
                 "mean_exports", "income_tax", "corporate_tax", "welfare", "firm_profit")
"""Per-step economy statistics summed during a rollout (means per agent of the relevant type)."""


@dataclass(frozen=True)
class TypeBuffer:
    """One agent type's part of an episode."""

    own: torch.Tensor      # [T, E, n, d]
    actions: torch.Tensor  # [T, E, n, heads] index_dtype (uint8 up to 256 choices per head)
    logp: torch.Tensor     # [T, E, n]
    value: torch.Tensor    # [T, E, n]
    reward: torch.Tensor   # [T, E, n] unscaled (always every step)
    entropy: torch.Tensor  # [T, E, n] (filled only when entropy is requested)


@dataclass(frozen=True)
class RolloutStorage:
    """Every tensor of one episode, allocated once and overwritten every episode."""

    global_: torch.Tensor              # [T, E, G]
    types: dict[str, TypeBuffer]
    stats: torch.Tensor                # [T, len(ECONOMY_STATS)]

    @classmethod
    def allocate(cls, economy: Economy, dtype: torch.dtype, per_agent_steps: int | None = None
                 ) -> "RolloutStorage":
        """Buffers for one episode. per_agent_steps=1 keeps only the current step of the per-agent
        buffers (own, actions, logp, value, entropy): enough to evaluate, with every step's rewards,
        global observations and statistics; None keeps every step (training)."""
        cfg, dev = economy.cfg, economy.device
        t, e = cfg.episode_length, economy.n_envs
        kept = t if per_agent_steps is None else per_agent_steps
        sizes, nvec = obs_sizes(cfg), action_nvec(cfg)
        counts = {"consumer": cfg.n_consumers, "firm": cfg.n_firms, "government": 1}
        types = {}
        for kind in AGENT_TYPES:
            n, d = counts[kind], sizes[kind] - sizes["global"]
            z = lambda *shape: torch.zeros(*shape, device=dev, dtype=dtype)  # noqa: E731
            types[kind] = TypeBuffer(
                own=z(kept, e, n, d), actions=torch.zeros(kept, e, n, len(nvec[kind]), device=dev,
                                                          dtype=index_dtype(cfg)),
                logp=z(kept, e, n), value=z(kept, e, n), reward=z(t, e, n), entropy=z(kept, e, n))
        return cls(global_=torch.zeros(t, e, sizes["global"], device=dev, dtype=dtype), types=types,
                   stats=torch.zeros(t, len(ECONOMY_STATS), device=dev, dtype=torch.float64))

    def slot(self, t: int) -> int:
        """Where step t goes in the per-agent buffers (0 when they keep one step)."""
        return t % self.types["government"].own.shape[0]


class Timer:
    """Accumulates wall time of the policy and of the economy when profiling (else does nothing)."""

    def __init__(self, enabled: bool, device: torch.device) -> None:
        self.enabled = enabled
        self.sync = enabled and device.type == "cuda"
        self.policy_s = 0.0
        self.env_s = 0.0
        self._t = 0.0

    def start(self) -> None:
        if self.enabled:
            if self.sync:
                torch.cuda.synchronize()
            self._t = time.perf_counter()

    def stop(self, what: str) -> None:
        if self.enabled:
            if self.sync:
                torch.cuda.synchronize()
            dt = time.perf_counter() - self._t
            if what == "policy":
                self.policy_s += dt
            else:
                self.env_s += dt


def collect_episode(economy: Economy, policies: dict[str, ActorCritic],
                    masks: dict[str, torch.Tensor | None], storage: RolloutStorage, theta_factor: float,
                    generator: torch.Generator, timer: Timer, with_entropy: dict[str, bool],
                    random_types: tuple[str, ...] = (), keep_graph: tuple[str, ...] = (),
                    chunk_mb: float = DEFAULT_CHUNK_MB) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Reset every env, play one episode with the given policies, fill `storage` in place.

    Types in `random_types` act uniformly at random (under their masks) instead of by policy. For
    types in `keep_graph` the policy forward runs with autograd and the episode's (logits, value),
    [T * E, n, ...] in ppo_update's row order, are returned for the first PPO epoch to reuse (the
    caller keeps that for batches that fit one piece of chunk_mb). Other types' forward passes run
    in pieces of at most chunk_mb of activations (chunks.py)."""
    cfg = economy.cfg
    kept: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {k: [] for k in keep_graph}
    limits = {k: agent_steps_per_piece(policies[k], chunk_mb) for k in AGENT_TYPES}
    timer.start()
    obs = economy.reset(theta_factor=theta_factor)
    timer.stop("env")
    with torch.inference_mode():
        for t in range(cfg.episode_length):
            state = economy.state
            slot = storage.slot(t)
            storage.global_[t].copy_(obs.global_)
            acts = {}
            timer.start()
            for kind in AGENT_TYPES:
                buf, net = storage.types[kind], policies[kind]
                own = obs.own(kind)
                buf.own[slot].copy_(own)
                if kind in kept:  # outside inference mode, on copies the next steps cannot overwrite
                    with torch.inference_mode(False):
                        out = net(storage.global_[t].clone(), buf.own[slot].clone())
                    kept[kind].append(out)
                    _act(net, buf, slot, (slice(None), slice(None)), out[0].detach(), out[1].detach(),
                         masks[kind], generator, kind in random_types, with_entropy[kind])
                else:
                    for rows, agents in pieces(economy.n_envs, own.shape[1], limits[kind]):
                        logits, value = net(storage.global_[t][rows], buf.own[slot][rows, agents])
                        _act(net, buf, slot, (rows, agents), logits, value, masks[kind], generator,
                             kind in random_types, with_entropy[kind])
                acts[kind] = buf.actions[slot]
            timer.stop("policy")
            timer.start()
            result = economy.step(Actions(consumer=acts["consumer"], firm=acts["firm"],
                                          government=acts["government"][:, 0]), validate=False)
            obs = result.obs
            r, acc = result.rewards, result.accounts
            storage.types["consumer"].reward[t].copy_(r.consumer)
            storage.types["firm"].reward[t].copy_(r.firm)
            storage.types["government"].reward[t].copy_(r.government.unsqueeze(-1))
            storage.stats[t].copy_(torch.stack([
                state.price.mean(), state.wage.mean(), acc.hours.mean(),
                acc.consumed.sum(-1).mean(), state.stock.mean(), acc.exported.mean(),
                state.income_tax.mean(), state.corporate_tax.mean(), r.government.mean(),
                acc.profit.mean()]).to(torch.float64))
            timer.stop("env")
    return {kind: (torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs]))
            for kind, outs in kept.items()}


def _act(net: ActorCritic, buf: TypeBuffer, slot: int, piece: tuple[slice, slice],
         logits: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, generator: torch.Generator,
         random: bool, with_entropy: bool) -> None:
    """Sample one piece of one type's agents and store its actions, log-probs, values (and entropy)."""
    rows, agents = piece
    if random:  # uniform over every real choice (padding stays out)
        logits = net.pad_mask.expand_as(logits)
    mask = mask_piece(mask, rows, agents, net.pad_mask.dim())
    a, logp = net.sample(logits, mask, generator)
    buf.actions[slot][rows, agents].copy_(a)
    buf.logp[slot][rows, agents].copy_(logp)
    buf.value[slot][rows, agents].copy_(value)
    if with_entropy:
        buf.entropy[slot][rows, agents].copy_(net.entropy(logits, mask))
