"""Per-agent-type actor-critics with a shared global first-layer product and factorised heads."""

from .actor_critic import ActorCritic, HeadGroup, fuse_masks, head_groups

__all__ = ["ActorCritic", "HeadGroup", "fuse_masks", "head_groups"]
