"""Returns, advantages and the PPO loss against hand calculations."""

import math

import torch
import torch.nn.functional as F

from rbc_ray.train import AgentConfig, gae, ppo_loss, returns_to_go
from rbc_ray.train.ppo import advantages_and_returns


def test_returns_to_go_standard_compounding():
    r = torch.tensor([[1.0], [2.0], [3.0]])
    g = returns_to_go(r, gamma=0.5)
    # G2 = 3, G1 = 2 + 0.5*3 = 3.5, G0 = 1 + 0.5*3.5 = 2.75
    torch.testing.assert_close(g, torch.tensor([[2.75], [3.5], [3.0]]))


def test_returns_to_go_discount_once_quirk():
    r = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    g = returns_to_go(r, gamma=0.5, discount_once=True)
    # G_t = r_t + 0.5 * sum_{k>t} r_k
    torch.testing.assert_close(g, torch.tensor([[1 + 0.5 * 9], [2 + 0.5 * 7], [3 + 0.5 * 4], [4.0]]))


def test_gae_with_lambda_one_is_returns_minus_values():
    torch.manual_seed(0)
    r, v = torch.randn(10, 4), torch.randn(10, 4)
    adv, ret = gae(r, v, gamma=0.9, lam=1.0)
    torch.testing.assert_close(ret, returns_to_go(r, 0.9), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(adv, returns_to_go(r, 0.9) - v, atol=1e-5, rtol=1e-5)
    adv0, _ = gae(r, v, gamma=0.9, lam=0.0)
    delta_last = r[-1] - v[-1]
    torch.testing.assert_close(adv0[-1], delta_last)
    torch.testing.assert_close(adv0[0], r[0] + 0.9 * v[1] - v[0])


def test_advantages_are_standardised():
    torch.manual_seed(0)
    adv, ret = advantages_and_returns(torch.randn(10, 8, 3) * 7 + 2, torch.randn(10, 8, 3), AgentConfig())
    assert abs(float(adv.mean())) < 1e-5 and abs(float(adv.std(unbiased=False)) - 1) < 1e-4


def test_ppo_loss_hand_case():
    old = torch.zeros(2)
    logp = torch.tensor([math.log(1.5), math.log(0.5)])
    adv = torch.tensor([1.0, -1.0])
    value, old_value, ret = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]), torch.tensor([3.0, 0.2])
    entropy = torch.tensor([2.0, 4.0])
    parts = ppo_loss(logp, old, adv, entropy, value, old_value, ret, clip=0.1, value_clip=1.0,
                     value_coef=0.5, entropy_coef=0.1)
    # surrogate: min(1.5*1, 1.1*1) = 1.1 ; min(0.5*-1, 0.9*-1) = -0.9 -> loss -(1.1 - 0.9)/2 = -0.1
    assert abs(float(parts.policy) - (-0.1)) < 1e-6
    # value: agent 0 unclipped smoothL1(2,3) = 0.5, clipped value 1 -> smoothL1(1,3) = 1.5, max 1.5;
    #        agent 1 smoothL1(0, 0.2) = 0.02
    assert abs(float(parts.value) - (1.5 + 0.02) / 2) < 1e-6
    assert abs(float(parts.entropy) - 3.0) < 1e-6
    assert abs(float(parts.total) - (-0.1 + 0.5 * 0.76 - 0.1 * 3.0)) < 1e-6
    no_clip = ppo_loss(logp, old, adv, entropy, value, old_value, ret, 0.1, 0.0, 0.5, 0.1)
    want = F.smooth_l1_loss(value, ret)
    assert abs(float(no_clip.value) - float(want)) < 1e-6


def test_the_loss_train_compile_compiles_is_the_eager_loss():
    """train.compile compiles ppo._loss_terms; run eagerly it is log_prob_entropy + ppo_loss."""
    from rbc_ray.economy import EconomyConfig, action_nvec, obs_sizes
    from rbc_ray.policies import ActorCritic
    from rbc_ray.train.ppo import _loss_terms

    cfg, agent = EconomyConfig(n_consumers=4, n_firms=14), AgentConfig()
    sizes, nvec = obs_sizes(cfg), action_nvec(cfg)
    torch.manual_seed(0)
    net = ActorCritic(sizes["global"], sizes["consumer"] - sizes["global"], nvec["consumer"], (8,))
    logits, value = net(torch.randn(3, sizes["global"]), torch.randn(3, 4, sizes["consumer"] - sizes["global"]))
    actions, logp0 = net.sample(logits.detach(), None)
    adv, ret, v0 = torch.randn(3, 4), torch.randn(3, 4), value.detach() + 0.3
    logp, ent = net.log_prob_entropy(logits, None, actions)
    want = ppo_loss(logp, logp0 - 0.1, adv, ent, value, v0, ret, agent.clip, agent.value_clip,
                    agent.value_coef, 0.05, 0.5)
    got = _loss_terms(net, agent, logits, None, actions, logp0 - 0.1, adv, value, v0, ret,
                      torch.tensor(0.05), torch.tensor(0.5))
    for g, w in zip(got, (want.total, want.policy, want.value, want.entropy)):
        torch.testing.assert_close(g, w)
