"""The PettingZoo ParallelEnv view passes PettingZoo's own API test."""

import pytest

pytest.importorskip("pettingzoo")

from pettingzoo.test import parallel_api_test  # noqa: E402

from rbc_ray.envs.pettingzoo import RBCParallelEnv  # noqa: E402


@pytest.mark.parametrize("config", [{"n_consumers": 3, "n_firms": 2},
                                    {"preset": "closed", "n_consumers": 5, "n_firms": 3,
                                     "episode_end": "truncated"}])
def test_parallel_api(config):
    parallel_api_test(RBCParallelEnv(config), num_cycles=25)


def test_episode_runs_to_the_end():
    env = RBCParallelEnv({"n_consumers": 3, "n_firms": 2, "episode_length": 3})
    obs, infos = env.reset(seed=0)
    assert set(obs) == set(env.possible_agents)
    steps = 0
    while env.agents:
        obs, rewards, terms, truncs, infos = env.step({a: env.action_space(a).sample() for a in env.agents})
        steps += 1
        assert "__all__" not in terms and set(rewards) == set(env.possible_agents)
    assert steps == 3 and all(terms.values())
