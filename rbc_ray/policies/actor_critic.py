"""One actor-critic per agent type, shared by every agent of that type.

The first layer is split into a global part and an own part. Every agent of a type in one env sees
the same global observation, so its contribution to the first layer is computed once per env:

    h1 = relu(global_ @ W_g^T [E, 1, H] + own @ W_o^T [E, n, H] + b)

At paper scale (128 envs x 100 consumers, global width 133, own width 11) that is ~10x less
first-layer work than the naive full-observation product, with the same result.

Action heads are factorised categoricals laid out as one padded block [.., n, width, n_heads]
(width = the largest head; choices on dim -2, heads on the last dim, which vectorises the small
softmax far better on CPU than a size-11 last dim): one linear layer makes every logit, one
log_softmax normalises every head, and no slicing copies appear in forward or backward. The PPO
terms (joint log-prob and entropy) have a hand-written backward (HeadTerms) that skips autograd's
chain of log_softmax/exp/mul backward passes. Padding slots and curriculum masks are
additive logits (0 allowed, -1e9 masked) fused into one mask tensor per type and episode.
Joint log-prob = sum over heads; joint entropy = sum of head entropies.
"""

from __future__ import annotations

import torch
from torch import nn

MASKED = -1e9
"""additive logit of a masked choice (exp underflows to exactly 0, so it is never sampled)"""


class HeadTerms(torch.autograd.Function):
    """(logits [.., W, H] masked, actions [.., H]) -> (joint log-prob [..], joint entropy [..]).

    Backward: d logp / dx = onehot(a) - p;  d H_h / dx = -p (log p + H_h)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, actions: torch.Tensor):
        lp = torch.log_softmax(x, -2)
        p = lp.exp()
        plp = p * lp
        head_entropy = -plp.sum(-2, keepdim=True)              # [.., 1, H]
        logp = lp.gather(-2, actions.unsqueeze(-2)).squeeze(-2).sum(-1)
        ctx.save_for_backward(p, plp, head_entropy, actions)
        return logp, head_entropy.squeeze(-2).sum(-1)

    @staticmethod
    def backward(ctx, g_logp: torch.Tensor, g_ent: torch.Tensor):
        p, plp, head_entropy, actions = ctx.saved_tensors
        gl, ge = g_logp[..., None, None], g_ent[..., None, None]
        grad = torch.addcmul(plp, p, head_entropy).mul_(-ge).sub_(p * gl)
        grad.scatter_add_(-2, actions.unsqueeze(-2), gl.expand(*actions.shape[:-1], 1, actions.shape[-1]))
        return grad, None


class OwnProjection(torch.autograd.Function):
    """own [B, n, d] @ W^T [d, H] with a weight gradient computed as (own^T @ grad)^T.

    Autograd's default, grad^T @ own ([H, B*n] @ [B*n, d] with d ~ 11), hits a slow BLAS path on
    CPU (~5x slower than the transposed product at paper scale)."""

    @staticmethod
    def forward(ctx, own: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(own, weight)
        return own @ weight.T

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        own, weight = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])
        grad_weight = (own.reshape(-1, own.shape[-1]).T @ g2).T
        grad_own = grad @ weight if ctx.needs_input_grad[0] else None
        return grad_own, grad_weight


class ActorCritic(nn.Module):
    """Shared-trunk actor-critic for one agent type: factorised categorical heads + value head."""

    def __init__(self, global_dim: int, own_dim: int, nvec: list[int],
                 hidden: tuple[int, ...] = (128, 128)) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("hidden must name at least one layer width")
        self.nvec = [int(k) for k in nvec]
        self.n_heads, self.width = len(self.nvec), max(self.nvec)
        h0 = hidden[0]
        self.first_global = nn.Linear(global_dim, h0)
        self.first_own = nn.Linear(own_dim, h0, bias=False) if own_dim > 0 else None
        layers: list[nn.Module] = []
        for a, b in zip(hidden[:-1], hidden[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]  # not inplace: Linear's 3-D output is a view
        self.trunk = nn.Sequential(*layers)
        self.logits = nn.Linear(hidden[-1], self.n_heads * self.width)
        self.value = nn.Linear(hidden[-1], 1)
        pad = torch.zeros(self.width, self.n_heads)
        for h, k in enumerate(self.nvec):
            pad[k:, h] = MASKED
        self.register_buffer("pad_mask", pad, persistent=False)
        with torch.no_grad():  # small initial logits: the initial policy is near uniform
            self.logits.weight.mul_(0.01)
            # padding slots are baked into the output layer (zero weights, bias -1e9): their
            # probability is exactly 0, so their gradient is exactly 0 and they never move; no
            # mask add is needed for types without curriculum masks
            self.logits.weight[pad.flatten() < 0] = 0.0
            self.logits.bias.copy_(pad.flatten())

    # ------------------------------------------------------------------ forward
    def _heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(torch.relu_(h))
        logits = self.logits(h).unflatten(-1, (self.width, self.n_heads))
        return logits, self.value(h).squeeze(-1)

    def forward(self, global_: torch.Tensor, own: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """global_ [B, G], own [B, n, d] -> logits [B, n, width, n_heads], value [B, n]."""
        h = self.first_global(global_).unsqueeze(-2)           # [B, 1, H]: once per env
        if self.first_own is not None:
            h = h + OwnProjection.apply(own, self.first_own.weight)  # [B, n, H]
        else:
            h = h.expand(*own.shape[:-1], h.shape[-1]).contiguous()
        return self._heads(h)

    def forward_naive(self, full_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same network on the concatenated observation [B, n, G + d] (reference for tests)."""
        w = self.first_global.weight
        if self.first_own is not None:
            w = torch.cat([w, self.first_own.weight], dim=1)
        return self._heads(full_obs @ w.T + self.first_global.bias)

    # ------------------------------------------------------------------ masks and distributions
    def mask(self, head_masks: list[torch.Tensor | None] | None = None) -> torch.Tensor | None:
        """Per-head additive masks (each broadcastable to [E, n, n_choices], None = open) fused with
        the padding into one additive mask broadcastable to [E, n, width, n_heads]."""
        if head_masks is None or all(m is None for m in head_masks):
            return None  # the padding lives in the output bias
        if len(head_masks) != self.n_heads:
            raise ValueError(f"need one mask (or None) per head: {self.n_heads} heads, got {len(head_masks)}")
        lead = torch.broadcast_shapes(*(m.shape[:-1] for m in head_masks if m is not None))
        pad = self.pad_mask
        cols = []
        for h, (k, m) in enumerate(zip(self.nvec, head_masks)):
            if m is not None and m.shape[-1] != k:
                raise ValueError(f"mask of head {h} has {m.shape[-1]} choices, the head has {k}")
            col = pad[:, h].expand(*lead, self.width)
            if m is not None:
                col = torch.cat([m.to(pad).expand(*lead, k), col[..., k:]], dim=-1)
            cols.append(col)
        return torch.stack(cols, dim=-1)

    def sample(self, logits: torch.Tensor, mask: torch.Tensor | None,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample every head by inverse CDF: actions [.., n, heads] long and joint log-prob [.., n].

        Masked choices (additive -1e9) have weight exactly 0, so their CDF step is empty and they
        are never drawn; u is kept strictly below the total weight."""
        if mask is not None:
            logits = logits + mask
        shifted = logits - logits.amax(-2, keepdim=True)
        cdf = shifted.exp().cumsum_(-2)                         # unnormalised CDF per head
        total = cdf[..., -1:, :]                                # [.., n, 1, heads]
        u = torch.rand(total.shape, generator=generator, device=total.device, dtype=total.dtype)
        u = u * (total * 0.999999)                              # strictly below the total
        actions = (cdf <= u).sum(-2, keepdim=True)              # [.., n, 1, heads]
        logp = (shifted.gather(-2, actions) - total.log()).squeeze(-2).sum(-1)
        return actions.squeeze(-2), logp

    def log_prob_entropy(self, logits: torch.Tensor, mask: torch.Tensor | None,
                         actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint log-prob (sum over heads) of `actions` [.., n, heads] and joint entropy (sum of head
        entropies), both [.., n]."""
        if mask is not None:
            logits = logits + mask
        return HeadTerms.apply(logits, actions)

    def entropy(self, logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Joint entropy (sum of head entropies) [.., n]."""
        lp = self.head_log_probs(logits, mask)
        return -(lp.exp() * lp).sum((-1, -2))

    def head_log_probs(self, logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Normalised log-probs of every head [.., n, width, n_heads] (padding at ~-1e9)."""
        if mask is not None:
            logits = logits + mask
        return torch.log_softmax(logits, dim=-2)
