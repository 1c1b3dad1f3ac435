"""The batched step runs on CUDA and matches the CPU run to 1e-5 (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch
from economy_helpers import sample_actions

from rbc_ray.economy import Actions, EconomyConfig, Params, initial_state, step
from rbc_ray.economy.reference import STATE_FIELDS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _to(actions: Actions, device: str) -> Actions:
    return Actions(consumer=actions.consumer.to(device), firm=actions.firm.to(device),
                   government=actions.government.to(device))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("overrides", [{}, {"open_economy": False, "interest_rate": 0.1,
                                            "tfp_rho": 0.9, "tfp_sigma": 0.1,
                                            "labour_disutility": "quadratic",
                                            "price_grid": (0.0, 300.0, 900.0, 2500.0)}],
                         ids=["open", "closed_switches"])
def test_cuda_matches_cpu(dtype: str, overrides: dict) -> None:
    cfg = EconomyConfig(n_consumers=20, n_firms=4, dtype=dtype, episode_length=30, **overrides)
    cpu, gpu = Params.build(cfg, "cpu"), Params.build(cfg, "cuda")
    assert gpu.theta.device.type == "cuda"
    s_cpu, s_gpu = initial_state(cpu, 8), initial_state(gpu, 8)
    assert s_gpu.price.device.type == "cuda"
    gen = torch.Generator().manual_seed(0)
    for k in range(25):
        actions = sample_actions(cfg, 8, gen)
        noise = torch.randn(8, generator=gen, dtype=cpu.dtype)
        s_cpu, r_cpu = step(cpu, s_cpu, actions, noise)
        s_gpu, r_gpu = step(gpu, s_gpu, _to(actions, "cuda"), noise.to("cuda"))
        pairs = {f"state.{n}": (getattr(s_cpu, n), getattr(s_gpu, n)) for n in STATE_FIELDS}
        pairs.update({f"reward.{n}": (getattr(r_cpu.rewards, n), getattr(r_gpu.rewards, n))
                      for n in ("consumer", "firm", "government")})
        pairs.update({f"accounts.{n}": (getattr(r_cpu.accounts, n), getattr(r_gpu.accounts, n))
                      for n in vars(r_cpu.accounts)})
        if dtype == "float64":  # digit features of float32 budgets are rounding noise
            pairs.update({f"obs.{n}": (r_cpu.obs.full(n), r_gpu.obs.full(n))
                          for n in ("consumer", "firm", "government")})
        for name, (a, b) in pairs.items():
            assert b.device.type == "cuda", name
            b = b.cpu()
            if dtype == "float64":
                torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7, msg=f"step {k} {name}")
            else:
                # float32: CPU and CUDA kernels round differently, and a budget-binding consumer's
                # budget B - spending + 0.01 cancels to ~0.01 +- ulp(B); compare normwise
                scale = a.abs().max().clamp(min=1.0)
                gap = (b.double() - a.double()).abs().max()
                assert gap <= 1e-5 * scale, f"step {k} {name}: max gap {gap} vs scale {scale}"
        assert torch.equal(r_cpu.done, r_gpu.done.cpu())
