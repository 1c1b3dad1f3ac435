"""`rbc-ray bench srl`: wall time and epochs to convergence of the four SRL models, beside the
paper's A100 figures (JAX, mean of 10 runs).

`--quick` runs the smoke sizes (proves the command works in seconds); without it the spec sizes.
Each row carries the run's accuracy measures (Euler errors, the Krusell-Smith law-of-motion R^2 and
Den Haan errors, HANK's gaps and Phillips-curve residual; null where a measure does not apply).
"""

from __future__ import annotations

import time
from typing import Any

from ..structural import MODELS, solve
from ..structural.diagnostics import safe
from .common import hardware, log, significant

PAPER_A100 = {"huggett-pe": (39.5, 289), "huggett": (75.3, 481), "ks": (56.6, 438), "hank": (199.5, 497)}
"""The paper's JAX/A100 reference (mean of 10 runs): seconds and epochs to convergence."""


def bench_srl(quick: bool, device: str = "cpu", models: tuple[str, ...] = MODELS,
              overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Time all four models to convergence; JSON-able, with the paper's A100 figures beside ours.

    quick=True runs the smoke sizes (proves the command works); quick=False the spec sizes.
    """
    out: dict[str, Any] = {"bench": "srl", "quick": quick, "device": device, "hardware": hardware(),
                           "dtype": (overrides or {}).get("dtype", "float32"), "models": {}}
    for model in models:
        ov = {"device": device, **(overrides or {})}
        t0 = time.perf_counter()
        res = solve(model, ov, smoke=quick, verbose=False)
        row = {"seconds": significant(res.seconds),
               "wall_seconds_incl_diagnostics": significant(time.perf_counter() - t0),
               "epochs": res.epochs, "converged": res.converged, "n_paths": res.calibration.n_paths,
               "n_b": res.calibration.n_b, "T": res.solver.T,
               "seconds_per_epoch": significant(res.seconds / max(res.epochs, 1)),
               "clearing_residual_mean": safe(res.clearing_residual_mean),
               "clearing_residual_max": safe(res.clearing_residual_max),
               "euler_error_mean_log10": safe(res.euler_error_mean_log10),
               "euler_error_max_log10": safe(res.euler_error_max_log10),
               "euler_error_share_above_1pct": safe(res.euler_error_share_above_1pct),
               "mean_r": safe(res.mean_r),
               "paper_a100_seconds": PAPER_A100[model][0], "paper_a100_epochs": PAPER_A100[model][1],
               "ratio_to_paper": round(res.seconds / PAPER_A100[model][0], 3)}
        for k in ("mean_K", "mean_w", "mean_inflation"):
            if getattr(res, k) is not None:
                row[k] = safe(getattr(res, k))
        row.update({k: safe(v) if isinstance(v, float) else v for k, v in res.extra.items()})
        out["models"][model] = row
        log(f"bench srl {model}: {row['seconds']} s, {row['epochs']} epochs, converged {row['converged']}")
    return out
