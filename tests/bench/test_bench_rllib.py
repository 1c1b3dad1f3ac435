"""The stock-RLlib speed figures run and return sane numbers (tiny sizes)."""

import math

from rbc_ray.bench.rllib import (random_action_pool, rllib_env_agent_steps_per_s,
                                 rllib_ppo_agent_steps_per_s)
from rbc_ray.envs import RBCMultiAgentEnv


def test_action_pool_is_valid():
    env = RBCMultiAgentEnv({"n_consumers": 4, "n_firms": 3})
    for actions in random_action_pool(env, 5, seed=0):
        assert set(actions) == set(env.possible_agents)
        assert all(env.action_spaces[a].contains(v) for a, v in actions.items())


def test_env_agent_steps_per_s():
    rate = rllib_env_agent_steps_per_s({"preset": "closed", "n_consumers": 3, "n_firms": 2}, 50, seed=0)
    assert math.isfinite(rate) and rate > 0


def test_ppo_agent_steps_per_s(local_ray):
    out = rllib_ppo_agent_steps_per_s({"n_consumers": 3, "n_firms": 2}, n_agent_steps=100,
                                      train_batch_env_steps=20, hidden=(16, 16))
    assert out["iterations"] == 1 and out["env_steps"] == 20 and out["agent_steps"] == 120
    assert out["agent_steps_per_s"] > 0 and out["wall_s"] > 0
    assert set(out["learner_stats"]) == {"consumer", "firm", "government"}
    for stats in out["learner_stats"].values():  # 2 epochs, each one full-batch minibatch
        assert stats["num_module_steps_trained"] == 2 * 120
