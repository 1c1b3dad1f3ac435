"""Outputs people can open: Parquet tables (pyarrow) and PNG plots (matplotlib, Agg) of an SRL run.

Files written by `write_outputs(result, out_dir)`:
  summary.json          the `--json` object
  calibration.yaml      the exact calibration (re-run with --set from it)
  convergence.parquet   epoch, objective, dtheta_q999, lr, grad_norm, seconds, price, residual
  paths.parquet         t, path, and every simulated aggregate (r, z, C, B or K, Y, w, pi, resid, ...)
  moments.parquet       series, mean, sd, autocorr (plus wealth_gini, mass_at_borrowing_limit rows)
  irf.parquet           t, series, response (generalised IRF to a one-node TFP shock)
  convergence.png, price_path.png, distribution.png, policy.png, irf.png
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from ..results.io import atomic_path
from . import diagnostics
from .config import as_dict


@torch.no_grad()
def impulse_response(result: Any, horizon: int | None = None, seed: int = 123) -> dict[str, torch.Tensor]:
    """Generalised IRF: mean over paths of (shocked - baseline) aggregates, both started from the
    ergodic state, the shocked run with TFP one node higher in period 0 (common random numbers)."""
    m, state = result.solver, result.state
    step = getattr(m, "n_m", 1)  # HANK's exogenous index is iz * n_m + im
    n_exo = m.P_exo64.shape[0]
    up = state["s"] + step
    up = torch.where(up < n_exo, up, state["s"])
    runs = []
    for s0 in (state["s"], up):
        gen = torch.Generator().manual_seed(seed)
        st = {**state, "s": s0}  # with the lagged prices, if the policy has them
        shocks = m.draw_shocks(st, gen)
        _, _, rec = m.rollout(st, shocks, record=True)
        runs.append(rec)
    T = horizon or m.T
    return {k: (runs[1][k] - runs[0][k])[:T].double().mean(1).cpu()
            for k in runs[0] if isinstance(runs[0][k], torch.Tensor) and runs[0][k].dim() == 2}


def _table(columns: dict[str, list]):
    import pyarrow as pa
    return pa.table(columns)


def write_outputs(result: Any, out_dir: str, plots: bool = True, irf: bool = True) -> dict[str, str]:
    """Write the tables and plots listed in the module docstring; returns {name: path}."""
    import pyarrow.parquet as pq
    import yaml

    os.makedirs(out_dir, exist_ok=True)
    files: dict[str, str] = {}

    def path(name: str) -> str:
        files[name] = os.path.join(out_dir, name)
        return files[name]

    def write_table(columns: dict[str, list], name: str) -> None:
        with atomic_path(path(name)) as tmp:
            pq.write_table(_table(columns), tmp)

    with atomic_path(path("summary.json")) as tmp, open(tmp, "w") as f:
        json.dump(result.summary(), f, indent=2, default=float)
    with atomic_path(path("calibration.yaml")) as tmp, open(tmp, "w") as f:
        yaml.safe_dump({"model": result.model, **as_dict(result.calibration)}, f, sort_keys=False)
    write_table(result.log.as_columns(), "convergence.parquet")
    T, N = result.paths["r"].shape
    cols: dict[str, list] = {"t": [t for t in range(T) for _ in range(N)],
                             "path": [n for _ in range(T) for n in range(N)]}
    for k, v in result.paths.items():
        if v.dim() == 2:
            cols[k] = v.double().flatten().tolist()
    write_table(cols, "paths.parquet")
    mom = diagnostics.moments(result.paths)
    wealth = diagnostics.wealth_stats(result.solver, result.state)
    rows = {"series": list(mom) + list(wealth),
            "mean": [mom[k]["mean"] for k in mom] + list(wealth.values()),
            "sd": [mom[k]["sd"] for k in mom] + [float("nan")] * len(wealth),
            "autocorr": [mom[k]["autocorr"] for k in mom] + [float("nan")] * len(wealth)}
    write_table(rows, "moments.parquet")
    responses = impulse_response(result) if irf else {}
    if responses:
        ir = {"t": [], "series": [], "response": []}
        for k, v in responses.items():
            ir["t"] += list(range(v.numel()))
            ir["series"] += [k] * v.numel()
            ir["response"] += v.tolist()
        write_table(ir, "irf.parquet")
    if plots:
        from . import plots as plotting
        files.update(plotting.all_plots(result, responses, out_dir))
    return files
