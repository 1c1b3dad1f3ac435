"""Per-agent-type actor-critics with a shared global first-layer product and factorised heads."""

from .actor_critic import MASKED, ActorCritic

__all__ = ["MASKED", "ActorCritic"]
