"""RBCMultiAgentEnv: ids, spaces, agreement with the batched economy, RLlib's checker, errors."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.utils.pre_checks.env import check_multiagent_environments

from rbc_ray.economy import ActionError, Actions, ConfigError, Economy, EconomyConfig
from rbc_ray.envs import RBCMultiAgentEnv, policy_mapping_fn

SMALL = {"preset": "open", "n_consumers": 3, "n_firms": 2, "seed": 0}


def test_ids_and_default_spaces():
    env = RBCMultiAgentEnv({"preset": "open"})
    assert env.possible_agents[:2] == ["consumer_0", "consumer_1"]
    assert env.possible_agents[99:102] == ["consumer_99", "firm_0", "firm_1"]
    assert env.possible_agents[-1] == "government" and len(env.possible_agents) == 111
    assert env.agents == env.possible_agents
    assert env.action_spaces["consumer_7"] == gym.spaces.MultiDiscrete([11] * 10 + [5, 10])
    assert env.action_spaces["firm_3"] == gym.spaces.MultiDiscrete([6, 5])
    assert env.action_spaces["government"] == gym.spaces.MultiDiscrete([6, 6])
    widths = {a: env.observation_spaces[a].shape for a in ("consumer_0", "firm_0", "government")}
    assert widths == {"consumer_0": (144,), "firm_0": (155,), "government": (133,)}
    assert all(s.dtype == np.float32 for s in env.observation_spaces.values())
    assert env.get_action_space("firm_9") is env.action_spaces["firm_9"]


def test_policy_mapping_fn():
    assert policy_mapping_fn("consumer_12") == "consumer"
    assert policy_mapping_fn("firm_0", None) == "firm"
    assert policy_mapping_fn("government", episode=None, worker=None) == "government"
    with pytest.raises(ValueError, match="'bank_0'"):
        policy_mapping_fn("bank_0")


def _to_dict(env, actions: Actions) -> dict:
    out = {f"consumer_{j}": actions.consumer[0, j].numpy() for j in range(env.cfg.n_consumers)}
    out.update({f"firm_{i}": actions.firm[0, i].numpy() for i in range(env.cfg.n_firms)})
    out["government"] = actions.government[0].numpy()
    return out


@pytest.mark.parametrize("extra", [{}, {"preset": "closed", "tfp_sigma": 0.05, "tfp_rho": 0.9, "seed": 7},
                                   {"digit_encoding": False, "dtype": "float64", "episode_length": 4}])
def test_obs_and_rewards_match_batched_economy(extra):
    config = {**SMALL, **extra}
    env = RBCMultiAgentEnv(config)
    cfg = EconomyConfig.from_dict({k: v for k, v in config.items() if k != "seed"})
    econ = Economy(cfg, n_envs=1, seed=config["seed"])
    ref_obs = econ.reset(seed=config["seed"])
    obs, infos = env.reset()
    gen = torch.Generator().manual_seed(1)
    for t in range(cfg.episode_length):
        for kind, ids in env.ids.items():
            want = ref_obs.full(kind)[0].to(torch.float32).numpy()
            got = np.stack([obs[a] for a in ids])
            np.testing.assert_array_equal(got, want)
            assert all(env.observation_spaces[a].contains(obs[a]) for a in ids)
        actions = econ.random_actions(gen)
        result = econ.step(actions)
        obs, rewards, terms, truncs, infos = env.step(_to_dict(env, actions))
        ref_obs = result.obs
        np.testing.assert_allclose([rewards[f"consumer_{j}"] for j in range(3)],
                                   result.rewards.consumer[0].numpy(), rtol=0, atol=0)
        np.testing.assert_allclose([rewards[f"firm_{i}"] for i in range(2)],
                                   result.rewards.firm[0].numpy(), rtol=0, atol=0)
        assert rewards["government"] == float(result.rewards.government[0])
        assert infos["government"]["accounts"] == result.accounts.env(0)
        last = t == cfg.episode_length - 1
        assert terms["__all__"] is last and terms["firm_1"] is last and truncs["__all__"] is False
    with pytest.raises(RuntimeError, match="reset"):
        env.step(_to_dict(env, econ.random_actions(gen)))


def test_truncated_episode_end_and_reset_seed():
    env = RBCMultiAgentEnv({**SMALL, "episode_end": "truncated", "episode_length": 2})
    env.reset(seed=3)
    space = env.action_spaces
    for t in range(2):
        _, _, terms, truncs, _ = env.step({a: space[a].sample() for a in env.agents})
    assert truncs["__all__"] is True and terms["__all__"] is False
    obs, _ = env.reset(options={"theta_factor": 0.5})
    assert obs["consumer_0"][-1] == pytest.approx(0.5)  # own theta / 0.01, annealed


def test_rllib_env_checker_passes():
    check_multiagent_environments(RBCMultiAgentEnv(SMALL))
    check_multiagent_environments(RBCMultiAgentEnv({"preset": "closed", "n_consumers": 20, "n_firms": 5}))


@pytest.mark.parametrize("config, match", [
    ({"n_consumers": 3, "bogus_key": 1}, "bogus_key"),
    ({"preset": "nope"}, "preset"),
    ({"n_firms": 0}, "n_firms"),
    ({"n_consumers": 2.5}, "n_consumers"),
    ({"seed": "x"}, "seed"),
    ({"episode_end": "never"}, "episode_end"),
    ({"welfare": "utilitarian"}, "welfare"),
])
def test_bad_env_config_raises_naming_the_key(config, match):
    with pytest.raises(ConfigError, match=match):
        RBCMultiAgentEnv(config)


def test_bad_actions_name_the_agent():
    env = RBCMultiAgentEnv(SMALL)
    env.reset()
    good = {a: env.action_spaces[a].sample() for a in env.agents}
    with pytest.raises(ActionError, match="firm_1"):
        env.step({a: v for a, v in good.items() if a != "firm_1"})
    with pytest.raises(ActionError, match="spy"):
        env.step({**good, "spy": np.zeros(2, dtype=np.int64)})
    with pytest.raises(ActionError, match="consumer_2.*hours.*allowed 0..4"):
        env.step({**good, "consumer_2": np.array([0, 0, 5, 0])})
    with pytest.raises(ActionError, match="government.*income_tax"):
        env.step({**good, "government": np.array([-1, 0])})
    with pytest.raises(ActionError, match=r"firm_0.*shape"):
        env.step({**good, "firm_0": np.array([1, 2, 3])})
    with pytest.raises(ActionError, match="consumer_1.*integer"):
        env.step({**good, "consumer_1": np.array([0.0, 1.0, 2.0, 1.0])})
    env.step(good)  # a failed step leaves the env usable
