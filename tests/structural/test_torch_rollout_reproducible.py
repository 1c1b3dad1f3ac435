"""The torch rollouts (the GPU path, and `kernel=torch` on CPU) give the same gradient bits on any
CPU thread count.

torch's CPU backward of advanced indexing (`table[rows, cols]`) adds float gradients with parallel
atomics once 32768 or more of them meet, so the sum's order, and training's last bits, changed from
run to run. The paths here put N x J above that size for every model.
"""

import pytest
import torch

from rbc_ray.structural.api import build
from rbc_ray.structural.config import calibration

SMALL = {"huggett-pe": dict(n_b=40, n_r=8), "huggett": dict(n_b=40, n_r=8, n_z=5),
         "ks": dict(n_b=40, n_r=8, n_w=6, n_z=5), "hank": dict(n_b=40, n_r=6, n_w=8, n_z=5)}


def _gradient(model: str, threads: int) -> list[torch.Tensor]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sizes = SMALL[model]
        n_paths = 32768 // (sizes["n_b"] * 3) + 8  # J = n_b x 3 income states
        cal = calibration(model, {**sizes, "n_paths": n_paths, "e_trunc": 0.3, "kernel": "torch"}, smoke=True)
        m = build(model, cal)
        assert not m.fused
        state = m.initial_state()
        shocks = m.draw_shocks(state, torch.Generator().manual_seed(5))
        objective, _, _ = m.rollout(state, shocks, record=False)
        objective.backward()
        return [p.grad.clone() for p in m.params]
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("model", sorted(SMALL))
def test_torch_rollout_gradient_same_bits_on_any_thread_count(model):
    one, two, again = _gradient(model, 1), _gradient(model, 2), _gradient(model, 2)
    assert any(float(g.abs().max()) > 0 for g in one)
    for a, b, c in zip(one, two, again):
        assert torch.equal(a, b) and torch.equal(b, c)
