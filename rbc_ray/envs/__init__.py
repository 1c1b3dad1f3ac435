"""Per-agent environment views of the batched RBC economy (RLlib MultiAgentEnv, PettingZoo).

`RBCParallelEnv` is imported lazily from `rbc_ray.envs.pettingzoo` so pettingzoo stays optional.
"""

from .rllib import RBCMultiAgentEnv, agent_ids, parse_env_config, policy_mapping_fn

__all__ = ["RBCMultiAgentEnv", "agent_ids", "parse_env_config", "policy_mapping_fn"]
