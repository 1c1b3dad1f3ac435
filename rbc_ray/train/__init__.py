"""Multi-agent PPO on the batched economy: config, curricula, rollout, PPO, the Trainer, policy
snapshots and torch.distributed data-parallel training. No Ray: rbc_ray.launch wraps it for Tune
and Ray Train."""

from .config import (AgentConfig, ExperimentConfig, PoliciesConfig, TrainConfig, apply_override,
                     load_experiment)
from .curriculum import Curriculum, CurriculumConfig
from .ppo import gae, ppo_loss, returns_to_go
from .trainer import METRIC_KEYS, PROFILE_KEYS, Trainer, TrainingDivergedError

__all__ = [
    "AgentConfig", "ExperimentConfig", "PoliciesConfig", "TrainConfig", "apply_override",
    "load_experiment", "Curriculum", "CurriculumConfig", "gae", "ppo_loss", "returns_to_go",
    "METRIC_KEYS", "PROFILE_KEYS", "Trainer", "TrainingDivergedError",
]
