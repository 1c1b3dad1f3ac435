"""One actor-critic per agent type, shared by every agent of that type.

The first layer is split into a global part and an own part. Every agent of a type in one env sees
the same global observation, so its contribution to the first layer is computed once per env:

    h1 = relu(global_ @ W_g^T [E, 1, H] + own @ W_o^T [E, n, H] + b)

At paper scale (128 envs x 100 consumers, global width 133, own width 11) that is ~10x less
first-layer work than the naive full-observation product, with the same result.

Action heads are factorised categoricals: all head logits (and the value) come out of one fused
linear layer; heads of equal size that sit next to each other are evaluated as one [.., k, size]
block (the consumer's F demand heads are one block). Masks are additive logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class HeadGroup:
    """A run of adjacent action heads with the same number of choices."""

    start: int
    """offset of the group's first logit in the flat logit vector"""
    n_heads: int
    """how many heads the group holds"""
    size: int
    """choices per head"""


def head_groups(nvec: list[int]) -> tuple[HeadGroup, ...]:
    """Split the heads into runs of equal size (e.g. [11]*10 + [5, 10] -> 3 groups)."""
    groups: list[HeadGroup] = []
    start = 0
    for size in nvec:
        last = groups[-1] if groups else None
        if last is not None and last.size == size:
            groups[-1] = HeadGroup(last.start, last.n_heads + 1, size)
        else:
            groups.append(HeadGroup(start, 1, size))
        start += size
    return tuple(groups)


def fuse_masks(nvec: list[int], masks: list[torch.Tensor | None]) -> torch.Tensor | None:
    """Per-head additive masks (each broadcastable to [E, n, n_choices]) -> one flat additive mask
    broadcastable to [E, n, sum(nvec)]; None when no head is masked."""
    if len(masks) != len(nvec):
        raise ValueError(f"need one mask (or None) per head: {len(nvec)} heads, got {len(masks)}")
    if all(m is None for m in masks):
        return None
    ref = next(m for m in masks if m is not None)
    lead = torch.broadcast_shapes(*(m.shape[:-1] for m in masks if m is not None))
    parts = []
    for size, m in zip(nvec, masks):
        if m is None:
            m = ref.new_zeros(size)
        if m.shape[-1] != size:
            raise ValueError(f"mask has {m.shape[-1]} choices, head has {size}")
        parts.append(m.expand(*lead, size))
    return torch.cat(parts, dim=-1)


class ActorCritic(nn.Module):
    """Shared-trunk actor-critic for one agent type: factorised categorical heads + value head."""

    def __init__(self, global_dim: int, own_dim: int, nvec: list[int],
                 hidden: tuple[int, ...] = (128, 128)) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("hidden must name at least one layer width")
        self.nvec = list(nvec)
        self.groups = head_groups(self.nvec)
        self.n_logits = sum(self.nvec)
        h0 = hidden[0]
        self.first_global = nn.Linear(global_dim, h0)
        self.first_own = nn.Linear(own_dim, h0, bias=False) if own_dim > 0 else None
        layers: list[nn.Module] = []
        for a, b in zip(hidden[:-1], hidden[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.out = nn.Linear(hidden[-1], self.n_logits + 1)  # all logits + value, one matmul
        with torch.no_grad():  # small initial logits: the initial policy is near uniform
            self.out.weight[: self.n_logits].mul_(0.01)
            self.out.bias.zero_()

    # ------------------------------------------------------------------ forward
    def forward(self, global_: torch.Tensor, own: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """global_ [B, G], own [B, n, d] -> flat logits [B, n, sum(nvec)], value [B, n]."""
        h = self.first_global(global_).unsqueeze(-2)           # [B, 1, H]: once per env
        if self.first_own is not None:
            h = h + self.first_own(own)                         # [B, n, H]
        else:
            h = h.expand(*own.shape[:-1], h.shape[-1])
        h = self.trunk(torch.relu(h))
        out = self.out(h)
        return out[..., : self.n_logits], out[..., self.n_logits]

    def forward_naive(self, full_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same network on the concatenated observation [B, n, G + d] (reference for tests)."""
        w = self.first_global.weight
        if self.first_own is not None:
            w = torch.cat([w, self.first_own.weight], dim=1)
        h = torch.relu(full_obs @ w.T + self.first_global.bias)
        h = self.trunk(h)
        out = self.out(h)
        return out[..., : self.n_logits], out[..., self.n_logits]

    # ------------------------------------------------------------------ distributions
    def _group_logp(self, logits: torch.Tensor, mask: torch.Tensor | None):
        """Yield (group, normalised log-probs [.., n, k, size]) per head group."""
        if mask is not None:
            logits = logits + mask
        for g in self.groups:
            block = logits[..., g.start: g.start + g.n_heads * g.size]
            block = block.unflatten(-1, (g.n_heads, g.size))
            yield g, torch.log_softmax(block, dim=-1)

    def sample(self, logits: torch.Tensor, mask: torch.Tensor | None,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample every head by inverse CDF: actions [.., n, heads] long and joint log-prob [.., n].

        Masked choices (additive -1e9) have weight exactly 0, so their CDF step is empty and they
        are never drawn; u is kept strictly below the total weight."""
        if mask is not None:
            logits = logits + mask
        actions, logp = [], 0.0
        for g in self.groups:
            block = logits[..., g.start: g.start + g.n_heads * g.size].unflatten(-1, (g.n_heads, g.size))
            top = block.amax(-1, keepdim=True)
            shifted = block - top
            cdf = shifted.exp().cumsum_(-1)                      # unnormalised CDF
            total = cdf[..., -1:]
            u = torch.rand(total.shape, generator=generator, device=total.device, dtype=total.dtype)
            u = u * (total * 0.999999)                           # strictly below the total
            a = (cdf <= u).sum(-1, keepdim=True)                 # [.., n, k, 1]
            chosen = shifted.gather(-1, a) - total.log()
            logp = logp + chosen.squeeze(-1).sum(-1)
            actions.append(a.squeeze(-1))
        return torch.cat(actions, dim=-1), logp

    def entropy(self, logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Joint entropy (sum of head entropies) [.., n]."""
        out = 0.0
        for _, lp in self._group_logp(logits, mask):
            out = out - (lp.exp() * lp).sum((-1, -2))
        return out

    def log_prob_entropy(self, logits: torch.Tensor, mask: torch.Tensor | None,
                         actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint log-prob (sum over heads) of `actions` [.., n, heads] and joint entropy (sum of head
        entropies), both [.., n]."""
        logp, entropy, h = 0.0, 0.0, 0
        for g, lp in self._group_logp(logits, mask):
            a = actions[..., h: h + g.n_heads]
            logp = logp + lp.gather(-1, a.unsqueeze(-1)).squeeze(-1).sum(-1)
            entropy = entropy - (lp.exp() * lp).sum((-1, -2))
            h += g.n_heads
        return logp, entropy

    def head_log_probs(self, logits: torch.Tensor, mask: torch.Tensor | None) -> list[torch.Tensor]:
        """Normalised log-probs of every head separately, [.., n, size] each (tests, analysis)."""
        out = []
        for g, lp in self._group_logp(logits, mask):
            out += [lp[..., k, :] for k in range(g.n_heads)]
        return out
