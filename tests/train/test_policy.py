"""ActorCritic: shapes, masks, factorised log-probs, and the shared global first-layer product."""

import pytest
import torch

from rbc_ray.economy import Economy, EconomyConfig, action_nvec, obs_sizes
from rbc_ray.policies import ActorCritic


def _net(kind="consumer", n_firms=3, hidden=(16, 16), seed=0):
    cfg = EconomyConfig(n_consumers=5, n_firms=n_firms)
    sizes, nvec = obs_sizes(cfg), action_nvec(cfg)
    torch.manual_seed(seed)
    return cfg, ActorCritic(sizes["global"], sizes[kind] - sizes["global"], nvec[kind], hidden)


@pytest.mark.parametrize("kind", ["consumer", "firm", "government"])
def test_global_sharing_equals_naive_full_observation(kind):
    cfg, net = _net(kind, hidden=(32, 32))
    with torch.no_grad():  # make the logits non-trivial
        net.logits.weight.normal_()
    econ = Economy(cfg, n_envs=4, seed=0)
    obs = econ.reset()
    for _ in range(3):
        obs = econ.step(econ.random_actions()).obs
    logits, value = net(obs.global_, obs.own(kind))
    logits_n, value_n = net.forward_naive(obs.full(kind))
    n = obs.own(kind).shape[1]
    assert logits.shape == (4, n, max(action_nvec(cfg)[kind]), len(action_nvec(cfg)[kind]))
    assert value.shape == (4, n)
    torch.testing.assert_close(logits, logits_n, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(value, value_n, atol=1e-5, rtol=1e-5)


def test_log_prob_is_sum_of_head_log_probs_and_entropy_sum_of_head_entropies():
    cfg, net = _net("consumer")
    nvec = net.nvec
    with torch.no_grad():
        net.logits.weight.normal_()
    g, own = torch.randn(3, obs_sizes(cfg)["global"]), torch.randn(3, 5, net.first_own.in_features)
    logits, _ = net(g, own)
    actions, logp_sample = net.sample(logits, net.mask())
    assert actions.shape == (3, 5, len(nvec))
    logp, ent = net.log_prob_entropy(logits, net.mask(), actions)
    torch.testing.assert_close(logp, logp_sample, atol=1e-5, rtol=1e-5)
    want_lp, want_ent = 0.0, 0.0
    for h, k in enumerate(nvec):
        dist = torch.distributions.Categorical(logits=logits[..., :k, h])
        want_lp = want_lp + dist.log_prob(actions[..., h])
        want_ent = want_ent + dist.entropy()
    torch.testing.assert_close(logp, want_lp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, want_ent, atol=1e-4, rtol=1e-5)


def test_actions_stay_in_range_and_masked_choices_are_never_sampled():
    cfg, net = _net("firm")
    with torch.no_grad():
        net.logits.bias.copy_(torch.linspace(-3, 3, net.logits.bias.numel()))
    allowed_price = torch.tensor([False, True, False, True, False, False])
    head_masks = [torch.where(allowed_price, 0.0, -1e9), None]
    mask = net.mask(head_masks)
    g = torch.randn(64, obs_sizes(cfg)["global"])
    own = torch.randn(64, 3, net.first_own.in_features)
    gen = torch.Generator().manual_seed(0)
    seen = torch.zeros(6, dtype=torch.long)
    for _ in range(20):
        a, _ = net.sample(net(g, own)[0], mask, gen)
        assert int(a[..., 1].max()) < net.nvec[1]  # wage head: 5 choices, the padding slot is never drawn
        seen += torch.bincount(a[..., 0].flatten(), minlength=6)
    assert seen[~allowed_price].sum() == 0
    assert (seen[allowed_price] > 0).all()


def test_sampling_frequencies_match_probabilities():
    _, net = _net("government", hidden=(4,))
    logits = torch.tensor([0.0, 1.0, -1.0, 2.0, 0.5, -2.0])[:, None].expand(20000, 1, 6, 2)
    gen = torch.Generator().manual_seed(1)
    a, _ = net.sample(logits, None, gen)
    freq = torch.bincount(a[..., 0].flatten(), minlength=6).double() / 20000
    torch.testing.assert_close(freq, torch.softmax(logits[0, 0, :, 0].double(), -1), atol=0.015, rtol=0)


def test_mask_shapes_broadcast_per_env():
    _, net = _net("firm")
    per_env = torch.zeros(4, 1, 6)
    per_env[0, 0, 0] = -1e9
    m = net.mask([per_env, None])
    assert m.shape == (4, 1, 6, 2)
    assert m[0, 0, 0, 0] == -1e9 and m[1, 0, 0, 0] == 0 and m[2, 0, 5, 1] == -1e9
    with pytest.raises(ValueError):
        net.mask([torch.zeros(5), None])


def test_hand_written_backward_matches_autograd():
    _, net = _net("consumer")
    torch.manual_seed(3)
    logits = torch.randn(4, 5, net.width, net.n_heads, dtype=torch.float64, requires_grad=True)
    actions = torch.stack([torch.randint(0, k, (4, 5)) for k in net.nvec], dim=-1)
    mask = net.pad_mask.double()
    w1, w2 = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    logp, ent = net.log_prob_entropy(logits, mask, actions)
    (logp * w1 + ent * w2).sum().backward()
    fast = logits.grad.clone()
    logits.grad = None
    lp = torch.log_softmax(logits + mask, -2)
    ref_logp = lp.gather(-2, actions.unsqueeze(-2)).squeeze(-2).sum(-1)
    ref_ent = -(lp.exp() * lp).sum((-1, -2))
    torch.testing.assert_close(logp, ref_logp)
    torch.testing.assert_close(ent, ref_ent)
    (ref_logp * w1 + ref_ent * w2).sum().backward()
    torch.testing.assert_close(fast, logits.grad)
    small = logits.detach()[:1, :2].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: net.log_prob_entropy(x, mask, actions[:1, :2]), (small,))


def test_padding_slots_are_never_sampled_and_never_learn():
    cfg, net = _net("consumer")  # heads of 11, 5 (hours) and 3 (employer) choices, width 11
    g = torch.randn(32, obs_sizes(cfg)["global"])
    own = torch.randn(32, 5, net.first_own.in_features)
    gen = torch.Generator().manual_seed(0)
    high = torch.tensor(net.nvec)
    for _ in range(10):
        a, _ = net.sample(net(g, own)[0], net.mask(), gen)
        assert (a < high).all() and (a >= 0).all()
    logits, value = net(g, own)
    logp, ent = net.log_prob_entropy(logits, net.mask(), a)
    (logp.sum() + ent.sum() + value.sum()).backward()
    padded = net.pad_mask.flatten() < 0
    assert padded.any()
    assert (net.logits.bias.grad[padded] == 0).all() and (net.logits.weight.grad[padded] == 0).all()


def test_many_firms_split_the_heads_into_blocks_and_one_firm_count_up_to_eleven_keeps_one():
    from rbc_ray.policies.actor_critic import head_blocks

    for f in (1, 2, 10, 11):  # every head padded to 11 choices: one block, the layout of the paper
        (block,) = head_blocks([11] * f + [5, f])
        assert block.heads == tuple(range(f + 2)) and block.width == 11
    demand_and_hours, employer = head_blocks([11] * 100 + [5, 100])  # 100 firms
    assert demand_and_hours.heads == tuple(range(101)) and demand_and_hours.width == 11
    assert employer.heads == (101,) and employer.width == 100
    assert demand_and_hours.cells + employer.cells == 1211  # not 102 x 100 = 10,200 per consumer


def _blocked_and_padded(n_firms=14, hidden=(16,)):
    cfg = EconomyConfig(n_consumers=5, n_firms=n_firms)
    sizes, nvec = obs_sizes(cfg), action_nvec(cfg)
    torch.manual_seed(0)
    padded = ActorCritic(sizes["global"], sizes["consumer"] - sizes["global"], nvec["consumer"], hidden,
                         block_cells=float("inf"))
    with torch.no_grad():
        padded.logits.weight.normal_()
        padded.logits.weight[padded.pad_mask.flatten() < 0] = 0.0
    blocked = ActorCritic(sizes["global"], sizes["consumer"] - sizes["global"], nvec["consumer"], hidden)
    blocked.load_state_dict(padded.state_dict())  # picks the real rows of the padded output layer
    assert padded.padded and not blocked.padded and len(blocked.blocks) == 2
    g, own = torch.randn(6, sizes["global"]), torch.randn(6, 5, sizes["consumer"] - sizes["global"])
    return padded, blocked, g, own


def test_blocked_heads_are_the_same_policy_as_one_padded_block():
    padded, blocked, g, own = _blocked_and_padded()
    lp_pad, v_pad = padded(g, own)
    lp_blk, v_blk = blocked(g, own)
    assert lp_blk.shape == (6, 5, blocked.logits.out_features) and lp_blk.shape[-1] < lp_pad[0, 0].numel()
    torch.testing.assert_close(v_blk, v_pad)
    for h, k in enumerate(padded.nvec):
        torch.testing.assert_close(blocked.head_logits(lp_blk, h), lp_pad[..., :k, h])
    a_pad, logp_pad = padded.sample(lp_pad, None, torch.Generator().manual_seed(5))
    a_blk, logp_blk = blocked.sample(lp_blk, None, torch.Generator().manual_seed(5))
    assert torch.equal(a_pad, a_blk)  # one uniform per head, in head order, whatever the layout
    torch.testing.assert_close(logp_blk, logp_pad)
    lp1, ent1 = padded.log_prob_entropy(lp_pad, None, a_pad)
    lp2, ent2 = blocked.log_prob_entropy(lp_blk, None, a_pad.to(torch.uint8))  # compact storage dtype
    torch.testing.assert_close(lp2, lp1)
    torch.testing.assert_close(ent2, ent1)
    torch.testing.assert_close(blocked.entropy(lp_blk, None), padded.entropy(lp_pad, None))


def test_blocked_backward_matches_autograd_and_masks_apply_per_block():
    _, net, _, _ = _blocked_and_padded(n_firms=14, hidden=(4,))
    torch.manual_seed(3)
    x = torch.randn(2, 3, net.logits.out_features, dtype=torch.float64, requires_grad=True)
    actions = torch.stack([torch.randint(0, k, (2, 3)) for k in net.nvec], dim=-1)
    mask = net.pad_mask.double()
    assert torch.autograd.gradcheck(lambda z: net.log_prob_entropy(z, mask, actions), (x,))
    head_masks = [None] * net.n_heads
    head_masks[-1] = torch.where(torch.arange(14) == 3, 0.0, -1e9)  # the employer head: firm 3 only
    a, _ = net.sample(torch.zeros(50, 3, net.logits.out_features), net.mask(head_masks))
    assert (a[..., -1] == 3).all() and (a[..., :14] < 11).all() and (a[..., 14] < 5).all()
