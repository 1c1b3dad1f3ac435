"""The fused CPU rollouts (fused_cpu.cpp) against the torch rollouts and autograd they replace.

Same calibration, same shocks, float64: the objective, every recorded path and the final histogram
must agree to rounding, and the hand-written adjoint must give autograd's gradient. Huggett GE's
clearing price is a different floating-point sum in the kernel, so where a household sits exactly
on the borrowing-limit node the two may take different (equally valid) one-sided derivatives: there
the gradient is compared in norm, tightly enough that any missing or wrong term fails.
"""

import pytest
import torch

from rbc_ray.structural.kernels import fused
from rbc_ray.structural.api import build
from rbc_ray.structural.config import calibration

pytestmark = pytest.mark.skipif(fused.load() is None, reason=f"fused kernels unavailable: {fused.error()}")

SIZES = {"huggett-pe": dict(n_b=40, n_r=8), "huggett": dict(n_b=40, n_r=8, n_z=5),
         "ks": dict(n_b=40, n_r=8, n_w=6, n_z=5)}


def _run(model, kernel, record=True, terminal="value"):
    cal = calibration(model, {**SIZES[model], "n_paths": 6, "e_trunc": 0.05, "dtype": "float64",
                              "kernel": kernel, "terminal": terminal}, smoke=True)
    m = build(model, cal)
    assert m.fused == (kernel == "fused")
    with torch.no_grad():  # move away from the initial guess (interior shares, steeper in price)
        gen = torch.Generator().manual_seed(1)
        m.first.mul_(1 - 0.2 * torch.rand(m.first.shape, generator=gen, dtype=m.first.dtype))
        m.incr.mul_(1.3)
        m.project()
    state = m.initial_state()
    shocks = m.draw_shocks(state, torch.Generator().manual_seed(3))
    objective, final, rec = m.rollout(state, shocks, record=record)
    objective.backward()
    paths = {k: v.double() for k, v in rec.items() if torch.is_tensor(v)}
    return float(objective.detach()), torch.cat([m.first.grad.flatten(), m.incr.grad.flatten()]), paths, final["g"]


@pytest.mark.parametrize("terminal", ["value", "none"])
@pytest.mark.parametrize("model", ["huggett-pe", "huggett", "ks"])
def test_fused_rollout_matches_torch(model, terminal):
    """With and without the continuation value at the horizon (terminal='value': beta^T d_T . V in
    the objective, the adjoint starting from beta^T V instead of 0)."""
    obj_t, grad_t, paths_t, g_t = _run(model, "torch", terminal=terminal)
    obj_f, grad_f, paths_f, g_f = _run(model, "fused", terminal=terminal)
    assert abs(obj_f - obj_t) < 1e-12
    assert set(paths_f) == set(paths_t)
    for k in paths_t:
        assert paths_f[k].shape == paths_t[k].shape, k
        assert torch.allclose(paths_f[k], paths_t[k], atol=1e-12, rtol=1e-10), k
    assert torch.allclose(g_f, g_t, atol=1e-13)
    rel = float((grad_f - grad_t).norm() / grad_t.norm())
    assert rel < (1e-3 if model == "huggett" else 1e-10), rel
    assert float(grad_t.norm()) > 0


@pytest.mark.parametrize("terminal", ["value", "none"])
def test_partial_equilibrium_training_rollout_matches_torch(terminal):
    """Training rollouts (no recording) of partial-equilibrium Huggett take the kernel's node-row
    tables (utility and lottery once per rate node, not per path and period): same objective and
    gradient as torch autograd. (The kernel leaves the population histogram where it was: in
    partial equilibrium it clears nothing.)"""
    obj_t, grad_t, _, _ = _run("huggett-pe", "torch", record=False, terminal=terminal)
    obj_f, grad_f, _, _ = _run("huggett-pe", "fused", record=False, terminal=terminal)
    assert abs(obj_f - obj_t) < 1e-12
    assert float((grad_f - grad_t).norm() / grad_t.norm()) < 1e-10
    assert float(grad_t.norm()) > 0


def _adversarial_savings(grid: torch.Tensor, lk, dtype, n_random: int = 4000) -> torch.Tensor:
    """b' at every node, one ulp either side of it, at every look-up bucket edge and one ulp either
    side, outside the grid, and random in between, in `dtype` (float32 rounding is where a bucket
    index can land off by one)."""
    g = grid.to(dtype)
    edges = (lk.bmin + torch.arange(lk.lut.numel(), dtype=torch.float64) / lk.inv_h).to(dtype)
    pts = torch.cat([g, edges])
    inf = torch.tensor(float("inf"), dtype=dtype)
    near = torch.cat([pts, torch.nextafter(pts, inf), torch.nextafter(pts, -inf)])
    lo_b, hi_b = float(grid[0]), float(grid[-1])
    outside = torch.tensor([lo_b - 1.0, lo_b - 1e-3, hi_b + 1e-3, hi_b + 10.0], dtype=dtype)
    rand = (lo_b + (hi_b - lo_b) * torch.rand(n_random, generator=torch.Generator().manual_seed(0),
                                               dtype=torch.float64)).to(dtype)
    return torch.cat([near, outside, rand])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_asset_lookup_brackets_within_one_comparison(dtype):
    """The table's contract (fused.AssetLookup): for any b' the kernel maps to bucket k, in the
    kernel's own float arithmetic, the bracket is the table's node or the next one."""
    from rbc_ray.structural.core import grids
    for b_min, b_max, n in ((-1.0, 50.0, 200), (0.0, 100.0, 200), (0.0, 100.0, 37), (-3.0, 5.0, 1000)):
        grid = grids.asset_grid(b_min, b_max, n)
        lk = fused.AssetLookup(grid)
        g = grid.to(dtype)
        x = _adversarial_savings(grid, lk, dtype).clamp(g[0], g[-1])
        bmin, inv_h = torch.tensor(lk.bmin, dtype=dtype), torch.tensor(lk.inv_h, dtype=dtype)
        k = ((x - bmin) * inv_h).clamp(0, lk.lut.numel() - 1).long()  # the kernel's rounding (truncation)
        lo = lk.lut[k].long()
        ref = (torch.searchsorted(g, x, right=True) - 1).clamp(0, n - 2)
        assert ((ref - lo) >= 0).all() and ((ref - lo) <= 1).all(), (b_min, b_max, n)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_lottery_equals_torch_lottery(dtype):
    """The kernels' lottery (AVX2 for float rows of 8, scalar otherwise) gives torch's bracket and
    weight bit for bit, and d weight / d b' = 1 / step inside the grid, 0 where b' is clamped."""
    from rbc_ray.structural.core import distribution, grids
    grid = grids.asset_grid(-1.0, 50.0, 200)
    lk = fused.AssetLookup(grid)
    g = grid.to(dtype)
    b = _adversarial_savings(grid, lk, dtype)
    b = b[torch.randperm(b.numel(), generator=torch.Generator().manual_seed(1))]  # mix cases within rows of 8
    for m in (b.numel(), b.numel() - 5):  # a remainder for the scalar loop
        lo, w, dw = fused.load().lottery(b[:m].contiguous(), g, lk.lut, lk.bmin, lk.inv_h)
        lo_t, w_t = distribution.lottery(g, b[:m])
        assert torch.equal(lo.long(), lo_t)
        assert torch.equal(w, w_t)
        step = g[lo_t + 1] - g[lo_t]
        inside = (b[:m] >= g[0]) & (b[:m] <= g[-1])
        assert torch.equal(dw[inside], (1 / step)[inside])
        assert (dw[~inside] == 0).all() and (~inside).sum() >= 4


def test_chain_kernel_equals_torch_walk():
    """grids.simulate_chain through the kernel's walk (once loaded) gives the torch loop's path exactly."""
    from rbc_ray.structural.core import grids
    module = fused.load()
    for n, rho, sd in ((3, 0.6, 0.2), (30, 0.9, 0.02), (5, 0.0, 1.0)):
        _, P = grids.tauchen(rho, sd, n)
        start = torch.randint(0, n, (257,), generator=torch.Generator().manual_seed(n))
        cum = torch.cumsum(P, 1)
        cum[:, -1] = 1.0 + 1e-12
        u = torch.rand(171, 257, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
        want, s = torch.empty(171, 257, dtype=torch.long), start.clone()
        for t in range(171):
            want[t] = s
            s = torch.searchsorted(cum[s], u[t, :, None]).squeeze(1).clamp(max=n - 1)
        assert torch.equal(module.simulate_chain(cum, start, u), want)
        assert fused.chain_walk() is module.simulate_chain
        got = grids.simulate_chain(P, start, 171, torch.Generator().manual_seed(7), walk=fused.chain_walk())
        assert torch.equal(got, want)
        assert torch.equal(grids.simulate_chain(P, start, 171, torch.Generator().manual_seed(7)), want)
    with pytest.raises(RuntimeError, match="start state out of range"):
        module.simulate_chain(cum, torch.tensor([5]), u[:, :1].contiguous())


def _hank(kernel, dtype="float64", **overrides):
    cal = calibration("hank", {"n_paths": 6, "e_trunc": 0.3, "dtype": dtype, "kernel": kernel, **overrides},
                      smoke=True)
    m = build("hank", cal)
    assert m.fused == (kernel != "torch")
    with torch.no_grad():  # interior shares and a histogram away from the initial point mass
        gen = torch.Generator().manual_seed(1)
        m.first.mul_(1 - 0.2 * torch.rand(m.first.shape, generator=gen, dtype=m.first.dtype))
        m.project()
    return m


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 2e-5)])
def test_hank_clearing_kernel_matches_torch(dtype, tol):
    """L, C and tau at every path and w node: the kernel against HANK._clearing_schedule (torch)."""
    from rbc_ray.structural.core.maths import uniform_bracket

    m = _hank("fused", dtype)
    cal = m.cal
    gen = torch.Generator().manual_seed(5)
    g = torch.rand(cal.n_paths, m.J, generator=gen, dtype=torch.float64).to(m.dtype)
    g = g / g.sum(1, keepdim=True)
    s = torch.randint(0, m.n_z * m.n_m, (cal.n_paths,), generator=gen)
    z, mshock = m.z_grid[s // m.n_m], m.m_grid[s % m.n_m]
    share, hours = (t.detach() for t in m.tables())
    pi_k = m.Pi.detach()[:, s // m.n_m].T
    r_k = cal.R_bar * (1 + pi_k).pow(cal.phi_pi - 1) * mshock[:, None] - 1
    lo_r, a_r = uniform_bracket(cal.r_min, m.dr, cal.n_r, r_k)
    cost_k = 1 - cal.theta / 2 * pi_k.pow(2)
    want = m._clearing_schedule(share, hours, lo_r, a_r, r_k, cost_k, z, g)
    got = fused.hank_clearing(share, hours, lo_r, a_r, r_k, cost_k, z, g, m.y_j, m.b_j, m.w_grid,
                              cal.bond_supply, cal.c_min, cal.borrowing_limit)
    for name, a, b in zip(("L", "C", "tau"), want, got):
        assert b.shape == a.shape == (cal.n_paths, cal.n_w), name
        err = float((a - b).abs().max() / a.abs().max())
        assert err < tol, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("overrides", [{}, {"c_min": 0.8}, {"borrowing_limit": 0.4}, {"frisch": 0.5},
                                       {"terminal": "none"}, {"terminal": "value"}])
def test_hank_fused_rollout_matches_torch(overrides):
    """The fused HANK rollout (hank_forward / hank_backward: households in C++, the clearing schedule
    as affine pieces in the transfer, firm in torch) equals the pure torch rollout: objective, gradient
    of all six parameter tensors and recorded prices (float64), also where the c_min clamp or the
    borrowing cap binds (c_min 0.8, borrowing limit 0.4), with hours' exponent k != 2, and with and
    without the households' continuation value at the horizon."""
    results = []
    for kernel in ("torch", "fused"):
        m = _hank(kernel, **overrides)
        state = m.initial_state()
        shocks = m.draw_shocks(state, torch.Generator().manual_seed(3))
        objective, _, rec = m.rollout(state, shocks, record=True)
        objective.backward()
        grad = torch.cat([p.grad.flatten() for p in m.params])
        results.append((float(objective.detach()), grad, rec["w"], rec["bond_gap"]))
    (o1, g1, w1, b1), (o2, g2, w2, b2) = results
    assert o1 == pytest.approx(o2, rel=1e-12)
    assert torch.allclose(w1, w2, rtol=1e-12, atol=0)
    assert torch.allclose(b1, b2, rtol=0, atol=1e-12)
    assert float((g1 - g2).norm() / g1.norm()) < 1e-10


@pytest.mark.parametrize("c_min,borrowing_limit", [(1e-8, 0.0), (0.3, 0.0), (1e-8, 0.4)])
def test_hank_households_kernel_and_adjoint_match_autograd(c_min, borrowing_limit):
    """Households at the bracketing nodes: the kernel's outputs and hand-written adjoint against
    HANK._households under autograd (float64), with the c_min clamp or the borrowing cap binding for
    some states in the second and third cases."""
    from dataclasses import replace

    m = _hank("fused")
    m.cal = replace(m.cal, c_min=c_min, borrowing_limit=borrowing_limit)
    cal, N = m.cal, m.cal.n_paths
    gen = torch.Generator().manual_seed(7)
    share, hours = (t.detach().clone().requires_grad_(True) for t in m.tables())
    lo_hi = torch.randint(0, cal.n_w - 1, (N, 1), generator=gen) + torch.tensor([[0, 1]])
    lo_r2 = torch.randint(0, cal.n_r - 1, (N, 2), generator=gen)
    a_r2 = torch.rand(N, 2, generator=gen, dtype=torch.float64)
    om = torch.rand(N, 1, generator=gen, dtype=torch.float64)
    wts = torch.cat([1 - om, om], 1)
    r2 = 0.01 + 0.03 * torch.rand(N, 2, generator=gen, dtype=torch.float64)
    w2, tau2 = m.w_grid[lo_hi], 0.1 * torch.randn(N, 2, generator=gen, dtype=torch.float64)
    weights = [torch.randn(N, m.J, generator=gen, dtype=torch.float64) for _ in range(3)]

    def run(fn):
        share.grad = hours.grad = None
        outs = fn()
        sum((o * w).sum() for o, w in zip(outs, weights)).backward()
        return [o.detach() for o in outs], share.grad.clone(), hours.grad.clone()

    want = run(lambda: m._households(share, hours, lo_hi, lo_r2, a_r2, wts, r2, w2, tau2))
    got = run(lambda: fused.hank_households(share, hours, lo_hi * cal.n_r + lo_r2, a_r2, wts, 1 + r2, w2, tau2,
                                            m.b_j, m.y_j, cal.c_min, cal.borrowing_limit))
    for a, b in zip(want[0], got[0]):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    for a, b in zip(want[1:], got[1:]):
        assert float((a - b).norm()) <= 1e-11 * float(a.norm())
    if c_min > 0.1 or borrowing_limit > 0:  # the case is only meaningful if a bound binds somewhere
        s, n = m._node_actions(share.detach(), hours.detach(), lo_hi, lo_r2, a_r2)
        cash = (1 + r2)[..., None] * m.b_j + m.y_j * (w2[..., None] * n + tau2[..., None])
        assert bool(((s * cash < c_min) | (s * cash > cash - borrowing_limit)).any())


@pytest.mark.parametrize("model", ["huggett", "ks"])
def test_fused_gradient_same_bits_on_any_thread_count(model):
    """Reproducibility: the adjoints sum their gradient in fixed path blocks, so float32 training
    gives the same bits whatever the threads and their schedule (per-thread sums did not)."""
    def grad(threads):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            cal = calibration(model, {**SIZES[model], "n_paths": 24, "e_trunc": 0.05, "kernel": "fused"},
                              smoke=True)
            m = build(model, cal)
            state = m.initial_state()
            shocks = m.draw_shocks(state, torch.Generator().manual_seed(3))
            objective, _, _ = m.rollout(state, shocks, record=False)
            objective.backward()
            return torch.cat([m.first.grad.flatten(), m.incr.grad.flatten()])
        finally:
            torch.set_num_threads(before)

    one, two, again = grad(1), grad(2), grad(2)
    assert float(one.abs().max()) > 0
    assert torch.equal(one, two) and torch.equal(two, again)


def test_history_buffer_is_reused_between_rollouts():
    """The [T, N, J] d-history buffer comes back to the pool after backward (and at once when no
    backward will read it), and the next rollout of the same size writes into the same memory."""
    cal = calibration("huggett-pe", {**SIZES["huggett-pe"], "n_paths": 6, "e_trunc": 0.05, "kernel": "fused"},
                      smoke=True)
    m = build("huggett-pe", cal)
    state = m.initial_state()
    shocks = m.draw_shocks(state, torch.Generator().manual_seed(3))
    shape = (m.T, 6, m.b_grid.numel() * cal.n_y)
    fused.HISTORY._free.clear()
    objective, _, _ = m.rollout(state, shocks, record=False)
    assert not fused.HISTORY._free  # in use until backward has read it
    objective.backward()
    first = fused.HISTORY._free[(shape, torch.float32)].data_ptr()
    with torch.no_grad():
        m.rollout(state, shocks, record=True)
    assert fused.HISTORY._free[(shape, torch.float32)].data_ptr() == first
