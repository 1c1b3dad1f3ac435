"""The fused CPU rollouts (fused_cpu.cpp) against the torch rollouts and autograd they replace.

Same calibration, same shocks, float64: the objective, every recorded path and the final histogram
must agree to rounding, and the hand-written adjoint must give autograd's gradient. Huggett GE's
clearing price is a different floating-point sum in the kernel, so where a household sits exactly
on the borrowing-limit node the two may take different (equally valid) one-sided derivatives: there
the gradient is compared in norm, tightly enough that any missing or wrong term fails.
"""

import pytest
import torch

from rbc_ray.structural import fused
from rbc_ray.structural.api import build
from rbc_ray.structural.config import calibration

pytestmark = pytest.mark.skipif(fused.load() is None, reason=f"fused kernels unavailable: {fused.error()}")

SIZES = {"huggett-pe": dict(n_b=40, n_r=8), "huggett": dict(n_b=40, n_r=8, n_z=5),
         "ks": dict(n_b=40, n_r=8, n_w=6, n_z=5)}


def _run(model, kernel):
    cal = calibration(model, {**SIZES[model], "n_paths": 6, "e_trunc": 0.05, "dtype": "float64",
                              "kernel": kernel}, smoke=True)
    m = build(model, cal)
    assert m.fused == (kernel == "fused")
    with torch.no_grad():  # move away from the initial guess (interior shares, steeper in price)
        gen = torch.Generator().manual_seed(1)
        m.first.mul_(1 - 0.2 * torch.rand(m.first.shape, generator=gen, dtype=m.first.dtype))
        m.incr.mul_(1.3)
        m.project()
    state = m.initial_state()
    shocks = m.draw_shocks(state, torch.Generator().manual_seed(3))
    objective, final, rec = m.rollout(state, shocks, record=True)
    objective.backward()
    paths = {k: v.double() for k, v in rec.items() if torch.is_tensor(v)}
    return float(objective.detach()), torch.cat([m.first.grad.flatten(), m.incr.grad.flatten()]), paths, final["g"]


@pytest.mark.parametrize("model", ["huggett-pe", "huggett", "ks"])
def test_fused_rollout_matches_torch(model):
    obj_t, grad_t, paths_t, g_t = _run(model, "torch")
    obj_f, grad_f, paths_f, g_f = _run(model, "fused")
    assert abs(obj_f - obj_t) < 1e-12
    assert set(paths_f) == set(paths_t)
    for k in paths_t:
        assert paths_f[k].shape == paths_t[k].shape, k
        assert torch.allclose(paths_f[k], paths_t[k], atol=1e-12, rtol=1e-10), k
    assert torch.allclose(g_f, g_t, atol=1e-13)
    rel = float((grad_f - grad_t).norm() / grad_t.norm())
    assert rel < (1e-3 if model == "huggett" else 1e-10), rel
    assert float(grad_t.norm()) > 0


def test_asset_lookup_brackets_exactly():
    from rbc_ray.structural import grids
    for b_min, b_max, n in ((-1.0, 50.0, 200), (0.0, 100.0, 200), (0.0, 100.0, 37)):
        grid = grids.asset_grid(b_min, b_max, n)
        lk = fused.AssetLookup(grid)
        x = torch.cat([grid, b_min + (b_max - b_min) * torch.rand(5000, dtype=torch.float64)])
        k = ((x - lk.bmin) * lk.inv_h).clamp(0, lk.lut.numel() - 1).long()
        lo = lk.lut[k].long()
        # the kernel corrects one step either way; the table alone must already be within one step
        ref = (torch.searchsorted(grid, x, right=True) - 1).clamp(0, n - 2)
        assert ((lo - ref).abs() <= 1).all()
