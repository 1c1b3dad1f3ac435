"""train.chunk_mb: pieces cover a batch exactly, and a chunked update is the unchunked one."""

import pytest
import torch

from rbc_ray.train import Trainer, load_experiment
from rbc_ray.train.chunks import mask_piece, pieces


@pytest.mark.parametrize("rows,agents,limit", [(7, 5, None), (7, 5, 35), (7, 5, 11), (7, 5, 3), (1, 9, 1)])
def test_pieces_cover_every_agent_step_once_within_the_limit(rows, agents, limit):
    seen = torch.zeros(rows, agents, dtype=torch.long)
    for r, a in pieces(rows, agents, limit):
        seen[r, a] += 1
        assert limit is None or seen[r, a].numel() <= limit
    assert (seen == 1).all()
    assert len(pieces(rows, agents, limit)) == (1 if limit is None or limit >= rows * agents else
                                                -(-rows // (limit // agents)) if limit >= agents else
                                                rows * -(-agents // limit))


def test_mask_piece_slices_only_dimensions_that_do_not_broadcast():
    head = torch.zeros(11, 3)
    assert mask_piece(head, slice(0, 2), slice(1, 3), 2) is head
    per_agent = torch.zeros(5, 11, 3)
    assert mask_piece(per_agent, slice(0, 2), slice(1, 3), 2).shape == (2, 11, 3)
    per_env = torch.zeros(4, 1, 33)
    assert mask_piece(per_env, slice(1, 3), slice(0, 2), 1).shape == (2, 1, 33)


def _trainer(chunk_mb):
    cfg, _ = load_experiment({
        "economy": {"preset": "open", "n_consumers": 6, "n_firms": 14, "episode_length": 3},
        "train": {"n_envs": 2, "episodes_per_iteration": 1, "torch_threads": 1, "dtype": "float64",
                  "chunk_mb": chunk_mb},
        "policies": {"firm": {"minibatches": 2, "hidden": [8]}, "consumer": {"hidden": [16, 16]},
                     "government": {"hidden": [8]}},
        "curriculum": {"firm_start": 0, "government_start": 0, "tax_cap_start": 0, "tax_cap_end": 0}})
    return Trainer(cfg)


def test_a_chunked_update_is_the_one_piece_update():
    whole, chunked = _trainer(0), _trainer(0.03)  # consumers: 3 agents of one (step, env) row per piece
    assert not chunked._one_piece("consumer") and whole._one_piece("consumer")
    for _ in range(2):
        m1, m2 = whole.train_iteration(), chunked.train_iteration()
    assert m1["reward_consumer"] == m2["reward_consumer"]  # same actions: the sampler's uniforms come in order
    for kind in ("consumer", "firm", "government"):
        for p, q in zip(whole.policies[kind].parameters(), chunked.policies[kind].parameters()):
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)
    assert whole.evaluate(1) == chunked.evaluate(1)
