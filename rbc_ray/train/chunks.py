"""Chunks of a [rows, agents] batch, so that the policy's activations stay under a memory budget.

A policy pass over B (step, env) rows of n agents makes activations, logits and probabilities for
every one of the B x n agent-steps. At paper scale one episode's update (1,280 rows x 100
consumers) needs about 1 GB and runs as one piece. With 100,000 consumers one row alone is over
3 GB, so the rollout's forward and the PPO update go through `pieces`: runs of whole rows while a
row fits the budget, else pieces of one row's agents. Every agent-step is in exactly one piece; a
single piece is the whole batch (the same ops as an unchunked pass, bit for bit).
"""

from __future__ import annotations

import torch

from ..policies import ActorCritic

DEFAULT_CHUNK_MB = 2048.0
"""train.chunk_mb's default: paper scale (128 envs x 10 steps x 100 consumers) fits in one piece"""


def agent_steps_per_piece(net: ActorCritic, chunk_mb: float) -> int | None:
    """How many agent-steps of `net` fit in chunk_mb (at least 1); None when chunk_mb is 0 (no limit)."""
    if chunk_mb <= 0:
        return None
    return max(1, int(chunk_mb * 2**20) // net.activation_bytes_per_agent())


def pieces(rows: int, agents: int, limit: int | None) -> list[tuple[slice, slice]]:
    """(row slice, agent slice) pieces covering a [rows, agents] batch, each at most `limit`
    agent-steps (a piece of one agent when limit < 1 is impossible): whole rows while one row fits."""
    if limit is None or rows * agents <= limit:
        return [(slice(0, rows), slice(0, agents))]
    if agents <= limit:
        step = limit // agents
        return [(slice(r, min(r + step, rows)), slice(0, agents)) for r in range(0, rows, step)]
    return [(slice(r, r + 1), slice(a, min(a + limit, agents)))
            for r in range(rows) for a in range(0, agents, limit)]


def mask_piece(mask: torch.Tensor | None, rows: slice, agents: slice, logit_dims: int) -> torch.Tensor | None:
    """The part of an additive mask (broadcastable to logits [rows, agents, *cells], `logit_dims` =
    len(cells)) that applies to one piece: leading dims of size 1 broadcast, others are sliced."""
    if mask is None or mask.dim() <= logit_dims:
        return mask
    lead = mask.dim() - logit_dims
    if lead == 2 and mask.shape[1] > 1:
        mask = mask[:, agents]
    if lead == 1 and mask.shape[0] > 1:
        return mask[agents]
    if lead == 2 and mask.shape[0] > 1:
        mask = mask[rows]
    return mask
