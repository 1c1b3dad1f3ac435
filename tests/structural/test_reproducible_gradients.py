"""Training is reproducible: a rollout's gradient has the same bits on any CPU thread count.

torch's CPU backward of advanced indexing (`table[rows, cols]`) adds float gradients with parallel
atomics once 32768 or more of them meet, so the sum's order, and training's last bits, changed from
run to run: full-size HANK runs of one seed ended after 409 and 322 epochs. The torch rollouts (the
GPU path, `kernel=torch` on CPU) pick table rows with `policy.rows` and HANK's firm gradient sums in
index order (`policy.gather`); the fused kernels' adjoints sum in fixed blocks of paths. The paths
here put N x J and HANK's 2 T N above that size.
"""

import pytest
import torch

from rbc_ray.structural.kernels import fused
from rbc_ray.structural.api import build
from rbc_ray.structural.config import calibration

SMALL = {"huggett-pe": dict(n_b=40, n_r=8), "huggett": dict(n_b=40, n_r=8, n_z=5),
         "ks": dict(n_b=40, n_r=8, n_w=6, n_z=5), "hank": dict(n_b=40, n_r=6, n_w=8, n_z=5)}
CASES = [(m, "torch") for m in sorted(SMALL)] + [("hank", "fused")]


def _gradient(model: str, kernel: str, threads: int) -> list[torch.Tensor]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sizes = {**SMALL[model], "e_trunc": 0.3, "kernel": kernel}
        T = build(model, calibration(model, sizes, smoke=True)).T
        n_paths = max(32768 // (sizes["n_b"] * 3), 32768 // (2 * T)) + 8  # J = n_b x 3 income states
        m = build(model, calibration(model, {**sizes, "n_paths": n_paths}, smoke=True))
        assert m.fused == (kernel == "fused")
        state = m.initial_state()
        shocks = m.draw_shocks(state, torch.Generator().manual_seed(5))
        objective, _, _ = m.rollout(state, shocks, record=False)
        objective.backward()
        return [p.grad.clone() for p in m.params]
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("model,kernel", CASES)
def test_rollout_gradient_same_bits_on_any_thread_count(model, kernel):
    if kernel == "fused" and fused.load() is None:
        pytest.skip(f"fused kernels unavailable: {fused.error()}")
    one, two, again = _gradient(model, kernel, 1), _gradient(model, kernel, 2), _gradient(model, kernel, 2)
    assert all(float(g.abs().max()) > 0 for g in one)
    for a, b, c in zip(one, two, again):
        assert torch.equal(a, b) and torch.equal(b, c)
