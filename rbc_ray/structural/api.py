"""`solve(model, overrides)`: build the model, train it, simulate the ergodic paths, diagnose.

    from rbc_ray.structural import solve
    res = solve("huggett", overrides={"sd_z": 0.0, "n_paths": 1})
    res.mean_r, res.clearing_residual_max, res.euler_error_mean_log10

Accuracy measures (accuracy.py) ride along in the JSON object: the share of mass with Euler errors
above 1% for every model, the perceived-law-of-motion R^2 and Den Haan errors for `ks`, the
Phillips-curve residual for `hank` (null where a measure does not apply).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from .config import SolverSettings, as_dict, calibration
from .solver import TrainLog, train


@dataclass
class SRLResult:
    """Everything a run produced: the JSON fields, the convergence log, simulated paths, the model."""

    model: str
    converged: bool
    epochs: int
    seconds: float
    device: str
    mean_r: float
    clearing_residual_mean: float
    clearing_residual_max: float
    euler_error_mean_log10: float
    euler_error_max_log10: float
    mean_K: float | None = None
    mean_w: float | None = None
    mean_inflation: float | None = None
    euler_error_share_above_1pct: float | None = None
    extra: dict[str, float | None] = field(default_factory=dict)
    calibration: SolverSettings | None = None
    log: TrainLog | None = None
    paths: dict[str, torch.Tensor] = field(default_factory=dict)
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    solver: Any = None

    def summary(self) -> dict[str, Any]:
        """The JSON object of `rbc-ray srl --json`."""
        out: dict[str, Any] = {
            "model": self.model, "converged": self.converged, "epochs": self.epochs,
            "seconds": round(self.seconds, 3), "device": self.device, "mean_r": self.mean_r,
            "clearing_residual_mean": self.clearing_residual_mean,
            "clearing_residual_max": self.clearing_residual_max,
            "euler_error_mean_log10": self.euler_error_mean_log10,
            "euler_error_max_log10": self.euler_error_max_log10,
            "euler_error_share_above_1pct": self.euler_error_share_above_1pct,
        }
        for k in ("mean_K", "mean_w", "mean_inflation"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        out.update(self.extra)
        if self.calibration is not None:
            out["calibration"] = as_dict(self.calibration)
        return out


def build(model: str, cal: SolverSettings):
    """The model object for a calibration (imports lazily: each model file stands alone)."""
    if model in ("huggett", "huggett-pe"):
        from .models.huggett import Huggett
        return Huggett(cal)
    if model == "ks":
        from .models.krusell_smith import KrusellSmith
        return KrusellSmith(cal)
    if model == "hank":
        from .models.hank import HANK
        return HANK(cal)
    raise ValueError(f"unknown model {model!r}")


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def solve(model: str, overrides: Mapping[str, Any] | None = None, smoke: bool = False,
          verbose: bool = False, euler: bool = True, accuracy: bool = True) -> SRLResult:
    """Solve `model` ('huggett-pe', 'huggett', 'ks', 'hank') at the spec (or smoke) calibration.

    euler=False skips the Euler errors, accuracy=False the simulations behind the Krusell-Smith
    law-of-motion and Den Haan measures and the HANK Phillips-curve residual (their fields are null)."""
    from . import accuracy as acc
    from . import diagnostics

    cal = calibration(model, overrides, smoke=smoke)
    if cal.threads:
        torch.set_num_threads(cal.threads)
    m = build(model, cal)
    start = time.perf_counter()
    converged, epochs, log, state = train(m, progress=_progress if verbose else None)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        gen = torch.Generator().manual_seed(cal.seed + 10_000)
        shocks = m.draw_shocks(state, gen)
        _, final, rec = m.rollout(state, shocks, record=True)
    paths = {k: v.detach().cpu() for k, v in rec.items() if isinstance(v, torch.Tensor)}
    nan = float("nan")
    ee_mean, ee_max, ee_share = diagnostics.euler_stats(*m.euler_errors(state)) if euler else (nan, nan, nan)
    resid = paths["resid"].abs()
    if model == "huggett-pe":  # no market clears in partial equilibrium: nothing to report
        resid = torch.full_like(resid, float("nan"))
    res = SRLResult(
        model=model, converged=converged, epochs=epochs, seconds=seconds, device=str(m.device),
        mean_r=float(paths["r"].double().mean()), clearing_residual_mean=float(resid.double().mean()),
        clearing_residual_max=float(resid.double().max()), euler_error_mean_log10=ee_mean,
        euler_error_max_log10=ee_max, euler_error_share_above_1pct=diagnostics.safe(ee_share),
        calibration=cal, log=log, paths=paths, state=final, solver=m)
    if "U" in paths:  # (1 - beta) E[sum_t beta^t g_t . u(c_t)] over the recorded simulation
        res.extra["welfare"] = diagnostics.welfare(paths["U"], cal.beta)
    if "K" in paths:
        res.mean_K = float(paths["K"].double().mean())
    if model == "hank":
        res.mean_w = float(paths["w"].double().mean())
        res.mean_inflation = float(paths["pi"].double().mean())
        res.extra["bond_gap_mean"] = float(paths["bond_gap"].abs().double().mean())
        res.extra["bond_gap_max"] = float(paths["bond_gap"].abs().max())
        res.extra["labour_gap_mean"] = float(paths["labour_gap"].abs().double().mean())
        res.extra["labour_gap_max"] = float(paths["labour_gap"].abs().max())
    res.extra.update({k: None for k in acc.KS_KEYS + acc.HANK_KEYS})
    measure = {"ks": acc.ks_accuracy, "hank": acc.hank_accuracy}.get(model) if accuracy else None
    if measure is not None:  # from the ergodic state, on shocks of their own
        with torch.no_grad():
            found = measure(m, final, seed=cal.seed + 20_000)
        res.extra.update({k: v if isinstance(v, int) else diagnostics.safe(v) for k, v in found.items()})
    return res
