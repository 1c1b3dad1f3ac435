"""One actor-critic per agent type, shared by every agent of that type.

The first layer is split into a global part and an own part. Every agent of a type in one env sees
the same global observation, so its contribution to the first layer is computed once per env:

    h1 = relu(global_ @ W_g^T [E, 1, H] + own @ W_o^T [E, n, H] + b)

At paper scale (128 envs x 100 consumers, global width 133, own width 11) that is ~10x less
first-layer work than the naive full-observation product, with the same result.

Action heads are factorised categoricals laid out as padded blocks [.., n, width, heads] (choices
on dim -2, heads on the last dim, which vectorises the small softmax far better on CPU than a
size-11 last dim): one linear layer makes every logit, one log_softmax per block normalises its
heads. Heads of similar width share a block (head_blocks): at paper scale every head fits one block
(width 11, 12 heads), the logits are [.., n, width, n_heads] and no slicing copies appear in forward
or backward. With many firms the consumer's employer head has F choices while its F demand heads
have 11; one block would pad every head to F, F x (F + 2) logits per consumer (10,200 at 100 firms,
a consumers x firms x firms tensor), so the employer head gets its own block and the logits are
the blocks side by side, flat [.., n, cells] (12 F + 11 cells per consumer: 1,211 at 100 firms).
The PPO terms (joint log-prob and entropy) have a hand-written backward (HeadTerms) that skips
autograd's chain of log_softmax/exp/mul backward passes. Padding slots and curriculum masks are
additive logits (0 allowed, -1e9 masked) fused into one mask tensor per type and episode.
Joint log-prob = sum over heads; joint entropy = sum of head entropies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

MASKED = -1e9
"""additive logit of a masked choice (exp underflows to exactly 0, so it is never sampled)"""

BLOCK_CELLS = 16
"""what one more block costs, in logit cells (its few extra ops per pass); head_blocks minimises
cells + BLOCK_CELLS x blocks. 16 keeps every head of an economy of up to 11 firms in one block"""


@dataclass(frozen=True)
class HeadBlock:
    """Action heads laid out together as one padded [.., width, len(heads)] block of the logits."""

    heads: tuple[int, ...]
    """the heads in the block, in head order"""
    width: int
    """choices of the block's widest head (narrower heads are padded with MASKED)"""
    offset: int
    """first cell of the block in the flat logits"""

    @property
    def cells(self) -> int:
        return self.width * len(self.heads)

    @property
    def index(self) -> slice | list[int]:
        """The block's heads on a head dimension: a slice (a view) when they are consecutive."""
        h = self.heads
        if h == tuple(range(h[0], h[0] + len(h))):
            return slice(h[0], h[0] + len(h))
        return list(h)


def head_blocks(nvec: list[int], block_cells: float = BLOCK_CELLS) -> tuple[HeadBlock, ...]:
    """Group heads into padded blocks with the fewest cells + block_cells per block.

    Heads of one width always share a block; the widths, widest first, are split into runs by
    dynamic programming (a block's cells: its widest head x its heads). Blocks are ordered by their
    first head. block_cells=inf: one block, every head padded to the widest."""
    widths = sorted(set(nvec), reverse=True)
    count = [sum(1 for k in nvec if k == w) for w in widths]
    if math.isinf(block_cells):
        runs = [(0, len(widths))]
    else:  # best[j]: cheapest split of the j widest widths; cut[j]: where its last run starts
        best, cut = [0.0] + [math.inf] * len(widths), [0] * (len(widths) + 1)
        for j in range(1, len(widths) + 1):
            for i in range(j):
                cost = best[i] + widths[i] * sum(count[i:j]) + block_cells
                if cost < best[j]:
                    best[j], cut[j] = cost, i
        runs, j = [], len(widths)
        while j > 0:
            runs.append((cut[j], j))
            j = cut[j]
    groups = [sorted(h for h, k in enumerate(nvec) if k in widths[i:j]) for i, j in runs]
    blocks, offset = [], 0
    for group in sorted(groups, key=lambda g: g[0]):
        width = max(nvec[h] for h in group)
        blocks.append(HeadBlock(tuple(group), width, offset))
        offset += width * len(group)
    return tuple(blocks)


def _block_terms(x: torch.Tensor, actions: torch.Tensor):
    """One block [.., W, H] and its actions [.., H] -> (p, p log p, head entropies [.., 1, H], joint
    log-prob [..], joint entropy [..])."""
    lp = torch.log_softmax(x, -2)
    p = lp.exp()
    plp = p * lp
    head_entropy = -plp.sum(-2, keepdim=True)              # [.., 1, H]
    logp = lp.gather(-2, actions.unsqueeze(-2)).squeeze(-2).sum(-1)
    return p, plp, head_entropy, logp, head_entropy.squeeze(-2).sum(-1)


def _block_grad(p, plp, head_entropy, actions, gl, ge, out: torch.Tensor | None = None) -> torch.Tensor:
    """The gradient of one block (written into `out`, a view of the flat gradient, when given)."""
    grad = torch.addcmul(plp, p, head_entropy) if out is None else torch.addcmul(plp, p, head_entropy, out=out)
    grad.mul_(-ge).sub_(p * gl)
    grad.scatter_add_(-2, actions.unsqueeze(-2), gl.expand(*actions.shape[:-1], 1, actions.shape[-1]))
    return grad


class HeadTerms(torch.autograd.Function):
    """(logits masked, actions [.., H]) -> (joint log-prob [..], joint entropy [..]).

    Logits are one padded block [.., W, H] (blocks=None) or the flat blocks [.., cells].
    Backward: d logp / dx = onehot(a) - p;  d H_h / dx = -p (log p + H_h)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, actions: torch.Tensor, blocks: tuple[HeadBlock, ...] | None = None):
        if actions.dtype != torch.int64:  # compact rollout storage (uint8): gather needs int64
            actions = actions.long()
        ctx.blocks = blocks
        if blocks is None:
            p, plp, head_entropy, logp, entropy = _block_terms(x, actions)
            ctx.save_for_backward(p, plp, head_entropy, actions)
            return logp, entropy
        saved, logp, entropy = [], 0, 0
        for b in blocks:
            xb = x[..., b.offset:b.offset + b.cells].unflatten(-1, (b.width, len(b.heads)))
            ab = actions[..., b.index]
            p, plp, head_entropy, lp_b, ent_b = _block_terms(xb, ab)
            saved += [p, plp, head_entropy, ab]
            logp, entropy = logp + lp_b, entropy + ent_b
        ctx.save_for_backward(*saved)
        return logp, entropy

    @staticmethod
    def backward(ctx, g_logp: torch.Tensor, g_ent: torch.Tensor):
        saved = ctx.saved_tensors
        gl, ge = g_logp[..., None, None], g_ent[..., None, None]
        if ctx.blocks is None:
            return _block_grad(*saved, gl, ge), None, None
        grad = saved[0].new_empty(*saved[0].shape[:-2], sum(b.cells for b in ctx.blocks))
        for i, b in enumerate(ctx.blocks):  # each block straight into its columns: no concatenation
            view = grad[..., b.offset:b.offset + b.cells].unflatten(-1, (b.width, len(b.heads)))
            _block_grad(*saved[4 * i:4 * i + 4], gl, ge, out=view)
        return grad, None, None


def _from_one_padded_block(net: "ActorCritic", state_dict, prefix: str, *_args) -> None:
    """Load hook: pick the real rows of an output layer saved as one padded block (width x n_heads
    rows) when the network has several blocks."""
    if net.padded:
        return
    rows = torch.tensor([c * net.n_heads + h for b in net.blocks for c in range(b.width) for h in b.heads])
    for name in ("weight", "bias"):
        key = f"{prefix}logits.{name}"
        saved = state_dict.get(key)
        if saved is not None and saved.shape[0] == net.width * net.n_heads != rows.numel():
            state_dict[key] = saved.index_select(0, rows.to(saved.device))


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
    """Shared-trunk actor-critic for one agent type: factorised categorical heads + value head.

    block_cells groups the heads into blocks (head_blocks); `float('inf')` keeps one padded block
    whatever the widths. A state dict saved with one padded block loads into a blocked network (the
    real rows of the output layer are picked), so checkpoints of many-firm economies made before
    the blocks existed still load."""

    def __init__(self, global_dim: int, own_dim: int, nvec: list[int],
                 hidden: tuple[int, ...] = (128, 128), block_cells: float = BLOCK_CELLS) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("hidden must name at least one layer width")
        self.nvec = [int(k) for k in nvec]
        self.n_heads, self.width = len(self.nvec), max(self.nvec)
        self.blocks = head_blocks(self.nvec, block_cells)
        self.padded = len(self.blocks) == 1  # one block: logits [.., n, width, n_heads]
        order = [h for b in self.blocks for h in b.heads]
        self._head_order = None if order == list(range(self.n_heads)) else [order.index(h) for h in range(self.n_heads)]
        h0 = hidden[0]
        self.first_global = nn.Linear(global_dim, h0)
        self.first_own = nn.Linear(own_dim, h0, bias=False) if own_dim > 0 else None
        layers: list[nn.Module] = []
        for a, b in zip(hidden[:-1], hidden[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]  # not inplace: Linear's 3-D output is a view
        self.trunk = nn.Sequential(*layers)
        self.logits = nn.Linear(hidden[-1], sum(b.cells for b in self.blocks))
        self.value = nn.Linear(hidden[-1], 1)
        pads = []
        for b in self.blocks:
            pad = torch.zeros(b.width, len(b.heads))
            for j, h in enumerate(b.heads):
                pad[self.nvec[h]:, j] = MASKED
            pads.append(pad)
        pad = pads[0] if self.padded else torch.cat([p.flatten() for p in pads])
        self.register_buffer("pad_mask", pad, persistent=False)  # the shape of one agent's logits
        with torch.no_grad():  # small initial logits: the initial policy is near uniform
            self.logits.weight.mul_(0.01)
            # padding slots are baked into the output layer (zero weights, bias -1e9): their
            # probability is exactly 0, so their gradient is exactly 0 and they never move; no
            # mask add is needed for types without curriculum masks
            self.logits.weight[pad.flatten() < 0] = 0.0
            self.logits.bias.copy_(pad.flatten())
        self.register_load_state_dict_pre_hook(_from_one_padded_block)

    def activation_bytes_per_agent(self) -> int:
        """A generous estimate of the memory one agent-step takes in a PPO forward and backward (its
        activations, logits, probabilities and their gradients): what train.chunk_mb divides."""
        hidden = self.first_global.out_features + sum(m.out_features for m in self.trunk if isinstance(m, nn.Linear))
        own = self.first_own.in_features if self.first_own is not None else 0
        return self.value.weight.element_size() * (6 * self.logits.out_features + 4 * hidden + own) + 16 * self.n_heads

    # ------------------------------------------------------------------ forward
    def _heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(torch.relu_(h))
        logits = self.logits(h)
        if self.padded:
            logits = logits.unflatten(-1, (self.width, self.n_heads))
        return logits, self.value(h).squeeze(-1)

    def forward(self, global_: torch.Tensor, own: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """global_ [B, G], own [B, n, d] -> logits, value [B, n]. Logits are [B, n, width, n_heads]
        with one block (self.padded), else the blocks flat [B, n, cells] (see blocks_of)."""
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

    def blocks_of(self, logits: torch.Tensor) -> list[torch.Tensor]:
        """The logits (or anything shaped like them: masks, pad_mask) as one [.., width, heads] view
        per block of self.blocks."""
        if self.padded:
            return [logits]
        return [logits[..., b.offset:b.offset + b.cells].unflatten(-1, (b.width, len(b.heads)))
                for b in self.blocks]

    def head_logits(self, logits: torch.Tensor, head: int) -> torch.Tensor:
        """The logits of one head's real choices [.., n, nvec[head]]."""
        for b, x in zip(self.blocks, self.blocks_of(logits)):
            if head in b.heads:
                return x[..., :self.nvec[head], b.heads.index(head)]
        raise IndexError(f"head {head} out of range: the network has {self.n_heads} heads")

    # ------------------------------------------------------------------ masks and distributions
    def mask(self, head_masks: list[torch.Tensor | None] | None = None) -> torch.Tensor | None:
        """Per-head additive masks (each broadcastable to [E, n, n_choices], None = open) fused with
        the padding into one additive mask broadcastable to the logits ([E, n, width, n_heads] with
        one block, [E, n, cells] with several)."""
        if head_masks is None or all(m is None for m in head_masks):
            return None  # the padding lives in the output bias
        if len(head_masks) != self.n_heads:
            raise ValueError(f"need one mask (or None) per head: {self.n_heads} heads, got {len(head_masks)}")
        for h, (k, m) in enumerate(zip(self.nvec, head_masks)):
            if m is not None and m.shape[-1] != k:
                raise ValueError(f"mask of head {h} has {m.shape[-1]} choices, the head has {k}")
        lead = torch.broadcast_shapes(*(m.shape[:-1] for m in head_masks if m is not None))
        fused = []
        for b, pad in zip(self.blocks, self.blocks_of(self.pad_mask)):
            cols = []
            for j, h in enumerate(b.heads):
                k, m = self.nvec[h], head_masks[h]
                col = pad[:, j].expand(*lead, b.width)
                if m is not None:
                    col = torch.cat([m.to(pad).expand(*lead, k), col[..., k:]], dim=-1)
                cols.append(col)
            fused.append(torch.stack(cols, dim=-1))
        return fused[0] if self.padded else torch.cat([m.flatten(-2) for m in fused], dim=-1)

    def sample(self, logits: torch.Tensor, mask: torch.Tensor | None,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample every head by inverse CDF: actions [.., n, heads] long and joint log-prob [.., n].

        Masked choices (additive -1e9) have weight exactly 0, so their CDF step is empty and they
        are never drawn; u is kept strictly below the total weight. One uniform per head, drawn in
        head order whatever the blocks."""
        if mask is not None:
            logits = logits + mask
        lead = logits.shape[:-2] if self.padded else logits.shape[:-1]
        u = torch.rand((*lead, 1, self.n_heads), generator=generator, device=logits.device, dtype=logits.dtype)
        actions, logp = [], 0
        for b, x in zip(self.blocks, self.blocks_of(logits)):
            shifted = x - x.amax(-2, keepdim=True)
            cdf = shifted.exp().cumsum_(-2)                     # unnormalised CDF per head
            total = cdf[..., -1:, :]                            # [.., n, 1, heads]
            ub = u if self.padded else u[..., b.index]
            ub = ub * (total * 0.999999)                        # strictly below the total
            a = (cdf <= ub).sum(-2, keepdim=True)               # [.., n, 1, heads]
            logp = logp + (shifted.gather(-2, a) - total.log()).squeeze(-2).sum(-1)
            actions.append(a.squeeze(-2))
        out = actions[0] if self.padded else torch.cat(actions, dim=-1)
        if self._head_order is not None:
            out = out[..., self._head_order]
        return out, logp

    def log_prob_entropy(self, logits: torch.Tensor, mask: torch.Tensor | None,
                         actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint log-prob (sum over heads) of `actions` [.., n, heads] (any integer dtype) and joint
        entropy (sum of head entropies), both [.., n]."""
        if mask is not None:
            logits = logits + mask
        return HeadTerms.apply(logits, actions, None if self.padded else self.blocks)

    def entropy(self, logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Joint entropy (sum of head entropies) [.., n]."""
        if mask is not None:
            logits = logits + mask
        total = 0
        for x in self.blocks_of(logits):
            lp = torch.log_softmax(x, dim=-2)
            total = total + -(lp.exp() * lp).sum((-1, -2))
        return total
