"""The batched RBC economy of Curry et al. 2022 (the model: docs/model.md)."""

from . import fused
from .actions import AGENT_TYPES, ActionError, Actions, action_nvec, check_actions, head_names, index_dtype
from .config import (CONFIG_KEYS, PRESETS, ConfigError, EconomyConfig, closed_economy, open_economy,
                     paper_economy, preset_config)
from .economy import Economy
from .observe import Observation, obs_sizes, observe
from .state import Params, State, initial_state
from .step import Accounts, Rewards, StepResult, step

__all__ = [
    "fused", "AGENT_TYPES", "ActionError", "Actions", "action_nvec", "check_actions", "head_names",
    "CONFIG_KEYS", "PRESETS", "ConfigError", "EconomyConfig", "closed_economy", "open_economy",
    "paper_economy", "preset_config", "Economy", "Observation", "obs_sizes", "observe", "Params",
    "State", "initial_state", "Accounts", "Rewards", "StepResult", "step", "index_dtype",
]
