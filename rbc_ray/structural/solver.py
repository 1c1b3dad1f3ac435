"""The SRL training loop: simulate N paths for T periods, ascend the exact gradient, repeat.

Model-agnostic: a model (huggett.py, krusell_smith.py, hank.py) supplies
  params (leaf tensors), initial_state(), draw_shocks(state), rollout(params, state, shocks, record),
  project() and T. The loop is Adam + global-norm clipping + exponential learning-rate decay after
the warm-up; warm-up epochs start from the model's fixed initial distribution, later epochs from the
previous epoch's final distribution; converged when the 0.999-quantile of |delta theta| < e_converge.
NaN or inf in the objective or a gradient stops training with `SRLDivergedError` before the step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from .config import SolverSettings


class Model(Protocol):
    cal: SolverSettings
    T: int
    params: list[torch.Tensor]

    def initial_state(self) -> dict[str, torch.Tensor]: ...
    def draw_shocks(self, state: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]: ...
    def rollout(self, state: dict[str, torch.Tensor], shocks: dict[str, torch.Tensor],
                record: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]: ...
    def project(self) -> None: ...


@dataclass
class TrainLog:
    """Per-epoch convergence curve (one list entry per epoch)."""

    epoch: list[int] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)
    dtheta_q999: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    price: list[float] = field(default_factory=list)
    residual: list[float] = field(default_factory=list)

    def as_columns(self) -> dict[str, list]:
        return {k: list(v) for k, v in self.__dict__.items()}


class SRLDivergedError(FloatingPointError):
    """NaN or inf in SRL training (the objective or a gradient): training stops, saying where."""


def _diagnosis(model: Model, epoch: int, objective: float, lr: float) -> str:
    """Which quantity went non-finite, in the model's parameter names, and what to try."""
    names = getattr(model, "param_names", None) or [f"params[{i}]" for i in range(len(model.params))]
    bad = []
    for name, p in zip(names, model.params):
        if p.grad is not None:
            n_bad = int((~torch.isfinite(p.grad)).sum())
            if n_bad:
                bad.append(f"{name} ({n_bad} of {p.grad.numel()} entries)")
    where = f"the objective is {objective}" if not math.isfinite(objective) else "the objective is finite"
    grads = ("; non-finite gradient of " + ", ".join(bad)) if bad else ""
    return (f"SRL training diverged at epoch {epoch}: {where}{grads} (learning rate {lr:.3g}). The policy was "
            f"not updated. Check the calibration (c_min > 0, prices and grids where cash on hand stays "
            f"positive) or lower lr.")


def learning_rate(cal: SolverSettings, epoch: int) -> float:
    """Constant during the warm-up, then lr * lr_decay ** ((epoch - warmup) / decay_epochs)."""
    k = max(0, epoch - cal.warmup)
    return cal.lr * cal.lr_decay ** (k / cal.decay_epochs)


def _quantile_abs(x: torch.Tensor, q: float) -> float:
    """q-quantile of |x|: the k-th smallest, k = ceil(q n), read as the smallest of the n - k + 1
    largest (topk of a few hundred is about 3x faster on CPU than kthvalue over the whole table;
    torch.quantile caps the input size)."""
    a = x.detach().abs().flatten()
    n = a.numel()
    if n == 0:
        return 0.0
    k = min(n, max(1, int(math.ceil(q * n))))
    return float(a.topk(n - k + 1).values[-1])


def train(model: Model, progress: Any = None) -> tuple[bool, int, TrainLog, dict[str, torch.Tensor]]:
    """Run the policy-gradient loop. Returns (converged, epochs, log, final population state)."""
    cal = model.cal
    gen = torch.Generator().manual_seed(cal.seed)
    scales = getattr(model, "lr_scales", [1.0] * len(model.params))  # HANK: slower firm policy
    opt = torch.optim.Adam([{"params": [p], "scale": sc} for p, sc in zip(model.params, scales)], lr=cal.lr)
    log = TrainLog()
    start = time.perf_counter()
    state = model.initial_state()
    converged, epoch = False, 0
    for epoch in range(1, cal.max_epochs + 1):
        lr = learning_rate(cal, epoch)
        for group in opt.param_groups:
            group["lr"] = lr * group["scale"]
        start_state = model.initial_state() if epoch <= cal.warmup else state
        shocks = model.draw_shocks(start_state, gen)
        objective, state, rec = model.rollout(start_state, shocks)
        opt.zero_grad(set_to_none=True)
        (-objective).backward()
        groups = getattr(model, "clip_groups", [model.params])  # HANK: households and firm apart
        # clip_grad_norm_ in two steps, so that a non-finite gradient is diagnosed before clipping
        # smears it (inf norm: every gradient times 0 or NaN)
        norms = [torch.nn.utils.get_total_norm([p.grad for p in grp if p.grad is not None]) for grp in groups]
        gnorm = sum(float(n) for n in norms)
        if not (math.isfinite(gnorm) and math.isfinite(float(objective.detach()))):
            raise SRLDivergedError(_diagnosis(model, epoch, float(objective.detach()), lr))
        for grp, norm in zip(groups, norms):
            torch.nn.utils.clip_grads_with_norm_(grp, cal.clip_norm, norm)
        before = [p.detach().clone() for p in model.params]
        opt.step()
        model.project()
        dtheta = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.params, before)])
        q999 = _quantile_abs(dtheta, 0.999)
        log.epoch.append(epoch)
        log.objective.append(float(objective.detach()))
        log.dtheta_q999.append(q999)
        log.lr.append(lr)
        log.grad_norm.append(float(gnorm))
        log.seconds.append(time.perf_counter() - start)
        log.price.append(float(rec.get("price_mean", float("nan"))))
        log.residual.append(float(rec.get("residual_max", float("nan"))))
        if progress is not None and (epoch % getattr(progress, 'every', 25) == 0 or epoch == 1):
            progress(f"epoch {epoch:4d} obj {log.objective[-1]:.6f} |dtheta|q999 {q999:.2e} "
                     f"lr {lr:.1e} price {log.price[-1]:.5f} resid {log.residual[-1]:.1e} t {log.seconds[-1]:.1f}s")
        if epoch > max(cal.warmup, cal.min_epochs) and q999 < cal.e_converge:
            converged = True
            break
    return converged, epoch, log, state
