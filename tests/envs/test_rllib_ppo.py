"""Stock RLlib PPO (new API stack) trains one iteration on a small economy, one module per type."""

import math

from rbc_ray.bench.rllib import agent_steps_sampled
from rbc_ray.envs import RBCMultiAgentEnv, policy_mapping_fn


def test_ppo_one_iteration(local_ray):
    import torch
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    torch.set_num_threads(1)
    types = ("consumer", "firm", "government")
    config = (
        PPOConfig()
        .environment(RBCMultiAgentEnv, env_config={"preset": "open", "n_consumers": 3, "n_firms": 2,
                                                  "seed": 0})
        .multi_agent(policies=set(types), policy_mapping_fn=policy_mapping_fn)
        .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs={
            t: RLModuleSpec(model_config={"fcnet_hiddens": [32, 32]}) for t in types}))
        .env_runners(num_env_runners=0)
        .training(train_batch_size_per_learner=40, minibatch_size=20, num_epochs=2)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    learners = result["learners"]
    for t in types:
        stats = learners[t]
        for key in ("policy_loss", "vf_loss", "entropy", "total_loss"):
            assert key in stats and math.isfinite(float(stats[key])), (t, key, stats.get(key))
        assert stats["num_module_steps_trained"] > 0
    env_runners = result["env_runners"]
    assert env_runners["num_env_steps_sampled_lifetime"] == 40
    assert agent_steps_sampled(result) == 40 * 6
    assert set(env_runners["num_module_steps_sampled_lifetime"]) == set(types)
