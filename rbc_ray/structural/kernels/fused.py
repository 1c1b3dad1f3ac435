"""Fused CPU rollouts for Huggett, Krusell-Smith and HANK's households (fused_cpu.cpp), built on first use.

The torch rollouts in huggett.py, krusell_smith.py and hank.py are the definition and the GPU path. On a
2-core CPU they are dispatch- and memory-bound (every period is ~100 small ops, each a fresh
[N, J] allocation), so on CPU the models run the same maths as one C++ pass per simulated path:
each path is its own economy (histogram, clearing price), so a thread carries it through all T
periods in cache. The gradient is the hand-written adjoint of that pass (a backward Bellman
recursion for dL/dd_t, gathers where the forward scattered), wrapped as a torch.autograd.Function
that returns d objective / d policy table; autograd does the rest (table -> parameters).

Needs a C++ compiler and ninja (torch.utils.cpp_extension); without them, or with
RBC_RAY_SRL_FUSED=0, or `--set kernel=torch`, the torch rollout runs. tests/structural holds the
fused objective and gradient to torch autograd.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from ...native import NativeExtension, cpu_flags

log = logging.getLogger(__name__)
# -ffp-contract=off keeps torch's rounding (no fused multiply-adds), for the float64 tests to 1e-12
_EXTENSION = NativeExtension(
    name="rbc_ray_srl_fused", source=Path(__file__).with_name("fused_cpu.cpp"), switch="RBC_RAY_SRL_FUSED",
    what="fused SRL kernels", cflags=cpu_flags("-fno-math-errno", "-ffp-contract=off"))


def load() -> Any:
    """The compiled extension (cached under torch's extensions dir), or None with `error()` set."""
    return _EXTENSION.load()


def loaded() -> Any:
    """The extension if a model has already loaded it, else None (never starts a build)."""
    return _EXTENSION.module


def chain_walk() -> Any:
    """The compiled Markov-chain walk for `grids.simulate_chain` once a model has loaded the kernels,
    else None (never starts a build; 170 torch steps were 3% of a Huggett epoch)."""
    module = _EXTENSION.module
    return getattr(module, "simulate_chain", None) if module is not None else None


def error() -> str | None:
    return _EXTENSION.error


def wanted(cal: Any, device: torch.device) -> bool:
    """Whether a model with calibration `cal` on `device` runs the fused kernels."""
    mode = getattr(cal, "kernel", "auto")
    if mode == "torch" or device.type != "cpu":
        if mode == "fused" and device.type != "cpu":
            raise ValueError("kernel=fused runs on CPU only")
        return False
    ok = load() is not None
    if mode == "fused" and not ok:
        raise RuntimeError(f"kernel=fused but the fused SRL kernels are unavailable: {error()}")
    return ok


class AssetLookup:
    """Look-up table for the bracket search on any increasing asset grid.

    Bucket k of width h (half the smallest grid step) covers [b_min + k h, b_min + (k+1) h) and
    stores the last node at or below b_min + (k - 1/4) h. The bracket of any b the kernel puts in
    bucket k is then that node or the next (the bucket widened by a quarter each side still holds
    at most one node), so the kernel decides with one comparison, provided its float32 bucket index
    is off by less than a quarter bucket: tables where rounding could reach that raise ValueError,
    as do tables over `max_buckets` entries (the model then runs the torch rollout).
    """

    def __init__(self, b_grid64: torch.Tensor, max_buckets: int = 1 << 22):
        g = b_grid64.double().cpu()
        nb = g.numel()
        span = float(g[-1] - g[0])
        h = 0.5 * float(torch.diff(g).min())
        n = int(math.ceil(span / h)) + 2
        if n > max_buckets:
            raise ValueError(f"asset grid too fine for the look-up table ({n} buckets)")
        # float32 error of (b - b_min) / h in buckets: a few roundings of numbers up to n (and up to
        # max |b| / h before the subtraction), and the grid's own float32 rounding
        err = 4 * 2.0 ** -24 * (n + float(g.abs().max()) / h)
        if err > 0.05:
            raise ValueError(f"asset grid spans too many buckets for a float32 look-up ({n} buckets)")
        edges = float(g[0]) + h * (torch.arange(n, dtype=torch.float64) - 0.25)
        lut = (torch.searchsorted(g, edges, right=True) - 1).clamp(0, nb - 2)
        self.lut = lut.to(torch.int32).contiguous()
        self.bmin, self.inv_h = float(g[0]), 1.0 / h


def asset_lookup(b_min: float, b_max: float, n_b: int) -> AssetLookup | None:
    """The look-up table of the model's asset grid, or None (then the model runs torch)."""
    from ..core import grids

    try:
        return AssetLookup(grids.asset_grid(b_min, b_max, n_b))
    except ValueError as err:
        log.warning("rbc-ray: %s; using the torch rollout", err)
        return None


class _HistoryPool:
    """Reusable buffers for the rollouts' d_t history [T, N, J] (100-200 MB at full size). A fresh
    one per epoch is fresh pages that the OS zeroes on first touch: in a full partial-equilibrium
    Huggett run that was 16 s of system time against 67 s of user time. A buffer comes back when the
    backward pass that read it is done; a rollout without backward simply drops its buffer."""

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._free: dict[tuple, torch.Tensor] = {}

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        buf = self._free.pop((tuple(shape), dtype), None)
        return buf if buf is not None else torch.empty(shape, dtype=dtype)

    def give_back(self, buf: torch.Tensor) -> None:
        if len(self._free) >= self.keep:  # other sizes (tests, sweeps in one process): keep the newest
            self._free.pop(next(iter(self._free)))
        self._free[(tuple(buf.shape), buf.dtype)] = buf


HISTORY = _HistoryPool()


class _Rollout(torch.autograd.Function):
    """obj [N] = sum_t beta^t d_t . u_t per path as a function of a policy table; side outputs
    (final histogram, prices, records) go into `out` (a dict), not through autograd."""

    @staticmethod
    def forward(ctx, table, forward_fn, backward_fn, out):
        res = forward_fn(table.detach().contiguous())
        out.update((k, v) for k, v in res.items() if k != "d_hist")  # the buffer is reused (HISTORY)
        ctx.backward_fn, ctx.res = backward_fn, res
        ctx.save_for_backward(table)
        return res["obj"]

    @staticmethod
    def backward(ctx, grad_obj):
        (table,) = ctx.saved_tensors
        grad = ctx.backward_fn(grad_obj.contiguous(), table.detach().contiguous(), ctx.res)
        history = ctx.res.get("d_hist")
        ctx.res = None
        if history is not None:
            HISTORY.give_back(history)
        return grad, None, None, None


def rollout(table: torch.Tensor, forward_fn, backward_fn) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(obj [N], side outputs) with obj differentiable in `table` when it requires grad."""
    out: dict[str, torch.Tensor] = {}
    if not (torch.is_grad_enabled() and table.requires_grad):  # no backward will read the history
        res = forward_fn(table.detach().contiguous())
        history = res.pop("d_hist", None)
        if history is not None:
            HISTORY.give_back(history)
        out.update(res)
        return res["obj"], out
    obj = _Rollout.apply(table, forward_fn, backward_fn, out)
    return obj, out



def hank_clearing(share: torch.Tensor, hours: torch.Tensor, lo_r: torch.Tensor, a_r: torch.Tensor,
                  r_k: torch.Tensor, cost_k: torch.Tensor, z: torch.Tensor, g: torch.Tensor, y_j: torch.Tensor,
                  b_j: torch.Tensor, w_grid: torch.Tensor, bond_supply: float, c_min: float,
                  borrowing_limit: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HANK's clearing schedule (L, C, tau), each [N, n_w], without gradient: one pass over the
    states per path and w node instead of ~60 torch passes over [N, n_w, J] (hank.py holds the
    torch definition). Tables [n_w, n_r, J]; lo_r, a_r, r_k, cost_k [N, n_w]; z [N]; g [N, J]."""
    module = load()
    if module is None:
        raise RuntimeError(f"the fused SRL kernels are unavailable: {error()}")
    c = [t.detach().contiguous() for t in (share, hours, lo_r, a_r, r_k, cost_k, z, g, y_j, b_j, w_grid)]
    L, C, tau = module.hank_clearing(*c, float(bond_supply), float(c_min), float(borrowing_limit))
    return L, C, tau


class _Households(torch.autograd.Function):
    """(share, hours tables) -> (c, hours, b') [N, J] by the kernel; backward recomputes per state and
    returns the tables' gradient (the other inputs are detached prices and weights)."""

    @staticmethod
    def forward(ctx, share, hours, row, a_r, wts, R2, w2, tau2, b_j, y_j, c_min, borrowing_limit):
        inputs = [t.detach().contiguous() for t in (share, hours, row, a_r, wts, R2, w2, tau2, b_j, y_j)]
        ctx.save_for_backward(*inputs)
        ctx.bounds = (float(c_min), float(borrowing_limit))
        return tuple(load().hank_households(*inputs, *ctx.bounds, []))

    @staticmethod
    def backward(ctx, g_c, g_hours, g_b):
        grads = [g.contiguous() for g in (g_c, g_hours, g_b)]
        g_share, g_hours_tab = load().hank_households(*ctx.saved_tensors, *ctx.bounds, grads)
        return (g_share, g_hours_tab) + (None,) * 10


def hank_households(share: torch.Tensor, hours: torch.Tensor, row: torch.Tensor, a_r: torch.Tensor,
                    wts: torch.Tensor, R2: torch.Tensor, w2: torch.Tensor, tau2: torch.Tensor, b_j: torch.Tensor,
                    y_j: torch.Tensor, c_min: float, borrowing_limit: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HANK households at the two bracketing w nodes (HANK._households), differentiable in the
    share and hours tables [n_w, n_r, J]; row [N, 2] = w node * n_r + r bracket, the rest [N, 2] or
    [J]. Saves nothing [N, 2, J] for backward: at full size autograd's intermediates were gigabytes
    per epoch, and zeroing fresh pages for them cost more than the arithmetic."""
    if load() is None:
        raise RuntimeError(f"the fused SRL kernels are unavailable: {error()}")
    return _Households.apply(share, hours, row, a_r, wts, R2, w2, tau2, b_j, y_j, c_min, borrowing_limit)
