"""PPO for one agent type: returns, advantages, the clipped loss and the update.

Returns (time is the leading axis, episodes end after T steps, nothing is bootstrapped):
  standard       G_t = r_t + gamma * G_{t+1}                     (default)
  discount-once  G_t = r_t + gamma * sum_{k>t} r_k               (the reference code's quirk: the
                 whole future is discounted by one factor gamma instead of gamma^(k-t))
  gae            A_t = sum_k (gamma lambda)^k delta_{t+k}, delta_t = r_t + gamma V_{t+1} - V_t
Advantages are standardised over the type's whole batch.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..policies import ActorCritic
from .chunks import DEFAULT_CHUNK_MB, agent_steps_per_piece, mask_piece, pieces
from .config import AgentConfig

GradSync = Callable[[str, nn.Module], None]
"""grad_sync(kind, module): called after backward, before clipping and the optimiser step. The
default does nothing. For data-parallel training (Ray Train), pass a function that all-reduces
(averages) every p.grad of `module` across workers, e.g. with torch.distributed.all_reduce; each
worker then runs its own envs and the networks stay identical."""


def returns_to_go(rewards: torch.Tensor, gamma: float, discount_once: bool = False) -> torch.Tensor:
    """rewards [T, ...] -> returns [T, ...]; see the module docstring for the two definitions."""
    out = torch.empty_like(rewards)
    future = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        out[t] = rewards[t] + gamma * future
        future = out[t] if not discount_once else future + rewards[t]
    return out


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a finished episode -> (advantages, returns)."""
    adv = torch.empty_like(rewards)
    last = torch.zeros_like(rewards[0])
    next_value = torch.zeros_like(values[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        delta = rewards[t] + gamma * next_value - values[t]
        last = delta + gamma * lam * last
        adv[t] = last
        next_value = values[t]
    return adv, adv + values


def advantages_and_returns(rewards: torch.Tensor, values: torch.Tensor, cfg: AgentConfig
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled rewards and rollout values [T, ...] -> (standardised advantages, value targets)."""
    if cfg.returns == "gae":
        adv, ret = gae(rewards, values, cfg.gamma, cfg.gae_lambda)
    else:
        ret = returns_to_go(rewards, cfg.gamma, cfg.discount_once)
        adv = ret - values
    adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
    return adv, ret


@dataclass(frozen=True)
class LossParts:
    """The scalar pieces of one PPO loss evaluation."""

    total: torch.Tensor
    """policy + value_coef * value - entropy_coef * entropy"""
    policy: torch.Tensor
    """clipped surrogate (to minimise)"""
    value: torch.Tensor
    """clipped smooth-L1 value loss"""
    entropy: torch.Tensor
    """mean joint entropy per agent"""


def ppo_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, entropy: torch.Tensor,
             value: torch.Tensor, old_value: torch.Tensor, ret: torch.Tensor, clip: float,
             value_clip: float, value_coef: float, entropy_coef: float | torch.Tensor,
             share: float | torch.Tensor = 1.0) -> LossParts:
    """Clipped PPO objective; all inputs have the same shape (one entry per agent-step). `share`:
    this piece's fraction of the batch's agent-steps, so that the pieces' losses (means times
    shares) add up to the batch's. entropy_coef and share may be 0-d tensors (compiled updates)."""
    ratio = torch.exp(logp - old_logp)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)
    policy_loss = -surrogate.mean()
    value_loss = F.smooth_l1_loss(value, ret, reduction="none")
    if value_clip > 0:
        clipped = old_value + (value - old_value).clamp(-value_clip, value_clip)
        value_loss = torch.maximum(value_loss, F.smooth_l1_loss(clipped, ret, reduction="none"))
    value_loss = value_loss.mean()
    ent = entropy.mean()
    if isinstance(share, torch.Tensor) or share != 1.0:
        policy_loss, value_loss, ent = policy_loss * share, value_loss * share, ent * share
    total = policy_loss + value_coef * value_loss - entropy_coef * ent
    return LossParts(total, policy_loss, value_loss, ent)


def _loss_terms(policy: ActorCritic, cfg: AgentConfig, logits: torch.Tensor, mask: torch.Tensor | None,
                actions: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, value: torch.Tensor,
                old_value: torch.Tensor, ret: torch.Tensor, entropy_coef: torch.Tensor, share: torch.Tensor
                ) -> tuple[torch.Tensor, ...]:
    """log_prob_entropy + ppo_loss, the coefficients as tensors (no recompiling as the entropy
    schedule moves): what train.compile compiles, once per policy."""
    logp, ent = policy.log_prob_entropy(logits, mask, actions)
    parts = ppo_loss(logp, old_logp, adv, ent, value, old_value, ret, cfg.clip, cfg.value_clip, cfg.value_coef,
                     entropy_coef, share)
    return parts.total, parts.policy, parts.value, parts.entropy


_COMPILED: "weakref.WeakKeyDictionary[ActorCritic, tuple[AgentConfig, Callable]]" = weakref.WeakKeyDictionary()


def _compiled_terms(policy: ActorCritic, cfg: AgentConfig) -> Callable:
    hit = _COMPILED.get(policy)
    if hit is None or hit[0] != cfg:
        hit = _COMPILED[policy] = (cfg, torch.compile(functools.partial(_loss_terms, policy, cfg)))
    return hit[1]


def ppo_update(kind: str, policy: ActorCritic, optimizer: torch.optim.Optimizer, cfg: AgentConfig,
               global_: torch.Tensor, own: torch.Tensor, actions: torch.Tensor,
               old_logp: torch.Tensor, old_value: torch.Tensor, rewards: torch.Tensor,
               mask: torch.Tensor | None, entropy_coef: float, generator: torch.Generator,
               grad_sync: GradSync | None = None,
               rollout_forward: tuple[torch.Tensor, torch.Tensor] | None = None,
               chunk_mb: float = DEFAULT_CHUNK_MB, compile: bool = False) -> torch.Tensor:
    """One PPO update of one type from one episode's rollout.

    global_ [T, E, G]; own [T, E, n, d]; actions [T, E, n, heads]; old_logp, old_value, rewards
    (unscaled) [T, E, n]. `rollout_forward`: the rollout's (logits, value) with their autograd graph
    (collect_episode(keep_graph=...)); the first full-batch epoch then backpropagates through it
    instead of running the same forward again (used only when the batch is one piece). Each
    (mini)batch runs in pieces of at most chunk_mb of activations (chunks.py), their gradients
    accumulated before the one optimiser step: the same update as one pass, to float rounding.
    Returns the stacked means [policy_loss, value_loss, entropy] of the last epoch as a tensor (no
    host sync)."""
    scaled = rewards / cfg.reward_scale
    adv, ret = advantages_and_returns(scaled, old_value, cfg)
    rows = global_.shape[0] * global_.shape[1]              # (step, env) rows; agents stay together
    n = own.shape[2]
    g_all, *per_agent = [x.reshape(rows, *x.shape[2:]) for x in (global_, own, actions, old_logp, old_value, adv, ret)]
    limit = agent_steps_per_piece(policy, chunk_mb)
    stats = torch.zeros(3, device=global_.device)
    for epoch in range(cfg.epochs):
        if cfg.minibatches > 1:
            order = torch.randperm(rows, generator=generator, device=generator.device).to(global_.device)
            batches = order.chunk(cfg.minibatches)
        else:
            batches = (None,)
        sums = torch.zeros(3, device=global_.device)
        for idx in batches:
            size = rows if idx is None else idx.numel()
            parts_of_batch = pieces(size, n, limit)
            optimizer.zero_grad(set_to_none=True)
            for r, a in parts_of_batch:
                sel = r if idx is None else idx[r]
                g = g_all[sel]
                o, act, lp0, v0, ad, rt = [x[sel][:, a] for x in per_agent]
                if epoch == 0 and idx is None and rollout_forward is not None and len(parts_of_batch) == 1:
                    logits, value = rollout_forward  # same parameters and inputs: the same forward
                else:
                    logits, value = policy(g, o)
                piece_mask = mask_piece(mask, slice(None), a, policy.pad_mask.dim())
                share = 1.0 if len(parts_of_batch) == 1 else lp0.numel() / (size * n)
                if compile:
                    parts = LossParts(*_compiled_terms(policy, cfg)(
                        logits, piece_mask, act, lp0, ad, value, v0, rt,
                        torch.tensor(entropy_coef, device=g.device), torch.tensor(share, device=g.device)))
                else:
                    logp, ent = policy.log_prob_entropy(logits, piece_mask, act)
                    parts = ppo_loss(logp, lp0, ad, ent, value, v0, rt, cfg.clip, cfg.value_clip,
                                     cfg.value_coef, entropy_coef, share)
                parts.total.backward()
                sums += torch.stack([parts.policy, parts.value, parts.entropy]).detach()
            if grad_sync is not None:
                grad_sync(kind, policy)
            nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            optimizer.step()
        stats = sums / len(batches)
    return stats
