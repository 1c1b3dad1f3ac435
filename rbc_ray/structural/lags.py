"""Lagged prices in the SRL policy state, and what they buy (`compare_lags`).

With `price_lags` = L > 0 (Huggett with aggregate risk and Krusell-Smith), the consumption-share
table gets L more axes, the interest rates r_{t-1} (and r_{t-2}) on a coarse uniform grid of `n_lag`
nodes on [r_min, r_max]; the policy is multilinear in the lagged rates (the weights are detached:
prices are taken as given). `lag_corners` (core/lagged.py, re-exported here) is the one definition
of that interpolation, shared by the torch rollouts (the fused kernels repeat its arithmetic in the
same order). This module measures what the lags buy; the models import only core/lagged.py.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from .core.lagged import lag_corners, lag_step, shift  # noqa: F401 (re-exported)
from .diagnostics import welfare  # noqa: F401 (re-exported)


def consumption_equivalent(W: float, W0: float, crra: float) -> float:
    """lambda: the proportional change of consumption, in every period and state, that gives the
    reference economy (welfare W0) the welfare W. With CRRA utility welfare scales with
    (1 + lambda)^(1 - crra), so lambda = (W / W0)^(1 / (1 - crra)) - 1 (log utility: exp(W - W0) - 1,
    up to the truncation's factor 1 - beta^T). lambda > 0: households are better off than in the
    reference economy, by that fraction of consumption."""
    if crra == 1.0:
        return math.expm1((W - W0) / 1.0)
    return (W / W0) ** (1.0 / (1.0 - crra)) - 1.0


@torch.no_grad()
def simulate(result: Any, s0: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Recorded paths of a solved model from its ergodic state, with the aggregate states started at
    s0 and drawn from `seed` (common random numbers across results)."""
    m = result.solver
    state = {**result.state, "s": s0}
    shocks = m.draw_shocks(state, torch.Generator().manual_seed(seed))
    _, _, rec = m.rollout(state, shocks, record=True)
    return {k: v.detach().cpu() for k, v in rec.items() if isinstance(v, torch.Tensor)}


def compare_lags(model: str, lags: Sequence[int] = (0, 1, 2), overrides: Mapping[str, Any] | None = None,
                 smoke: bool = False, seed: int = 2024, verbose: bool = False,
                 cache: str | None = None) -> dict[int, dict[str, Any]]:
    """Solve `model` ('huggett' or 'ks') with each number of price lags and report, per lag count:
    epochs, seconds, converged; Euler errors (mass-weighted mean and max of log10, as `solve`);
    mean, sd and first-order autocorrelation of r (and K for ks) and welfare
    (1 - beta) E[sum_t beta^t g_t . u(c_t)] on a fresh simulation from each solution's ergodic state
    (same aggregate shocks for every lag count: common random numbers), and the consumption-equivalent
    change against the first lag count in `lags` (`consumption_equivalent`, positive = better off).
    `cache`: a folder where each solution is saved (policy, ergodic state, accuracy) and from which
    a later call with the same model, lag count and overrides loads it instead of solving again."""
    from . import diagnostics

    results, out = {}, {}
    for L in lags:
        res = _solve(model, {**(overrides or {}), "price_lags": L}, smoke, verbose, cache)
        results[L] = res
        out[L] = {"price_lags": L, "converged": res.converged, "epochs": res.epochs,
                  "seconds": round(res.seconds, 2),
                  "euler_mean_log10": res.euler_error_mean_log10, "euler_max_log10": res.euler_error_max_log10}
    ref = lags[0]
    s0 = results[ref].state["s"]
    for L in lags:
        cal = results[L].calibration
        paths = simulate(results[L], s0, seed)
        mom = diagnostics.moments(paths)
        for k in ("r", "K"):
            if k in mom:
                out[L].update({f"{k}_{stat}": mom[k][stat] for stat in ("mean", "sd", "autocorr")})
        out[L]["welfare"] = welfare(paths["U"], cal.beta)
    for L in lags:
        crra = results[L].calibration.crra
        out[L]["ce_vs_ref"] = consumption_equivalent(out[L]["welfare"], out[ref]["welfare"], crra)
    return out


def _solve(model: str, overrides: dict[str, Any], smoke: bool, verbose: bool, cache: str | None) -> Any:
    """`solve`, or its saved solution in `cache` (keyed by model, smoke and overrides)."""
    import hashlib
    import json
    import os
    from types import SimpleNamespace

    from .api import build, solve
    from .config import calibration

    path = None
    if cache:
        key = hashlib.sha1(json.dumps([model, smoke, sorted(overrides.items())], default=str).encode()).hexdigest()[:12]
        path = os.path.join(cache, f"{model}-lags{overrides['price_lags']}-{key}.pt")
        if os.path.exists(path):
            blob = torch.load(path)
            cal = calibration(model, overrides, smoke=smoke)
            m = build(model, cal)
            with torch.no_grad():
                for p, v in zip(m.params, blob["params"]):
                    p.copy_(v)
            return SimpleNamespace(solver=m, state=blob["state"], calibration=cal, **blob["summary"])
    res = solve(model, overrides=overrides, smoke=smoke, verbose=verbose)
    if path:
        os.makedirs(cache, exist_ok=True)
        keys = ("converged", "epochs", "seconds", "euler_error_mean_log10", "euler_error_max_log10")
        torch.save({"params": [p.detach() for p in res.solver.params], "state": res.state,
                    "summary": {k: getattr(res, k) for k in keys}}, path)
    return res


def markdown(rows: dict[int, dict[str, Any]]) -> str:
    """The comparison as a Markdown table."""
    has_K = any("K_mean" in r for r in rows.values())
    head = ["lags", "epochs", "seconds", "Euler mean", "Euler max", "r mean", "r sd", "r autocorr"]
    head += ["K mean", "K sd", "K autocorr"] if has_K else []
    head += ["welfare", "CE vs first"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for L, r in rows.items():
        cells = [str(L), f"{r['epochs']}{'' if r['converged'] else ' (cap)'}", f"{r['seconds']:.1f}",
                 f"{r['euler_mean_log10']:.2f}", f"{r['euler_max_log10']:.2f}", f"{r['r_mean']:.5f}",
                 f"{r['r_sd']:.5f}", f"{r['r_autocorr']:.3f}"]
        if has_K:
            cells += [f"{r['K_mean']:.4f}", f"{r['K_sd']:.4f}", f"{r['K_autocorr']:.3f}"]
        cells += [f"{r['welfare']:.6f}", f"{100 * r['ce_vs_ref']:+.4f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """python -m rbc_ray.structural.lags MODEL [--lags 0 1 2] [--set KEY=VALUE ...] [--smoke] [--json]"""
    import argparse
    import json

    from ..config import parse_overrides

    p = argparse.ArgumentParser(prog="python -m rbc_ray.structural.lags", description=compare_lags.__doc__)
    p.add_argument("model", choices=("huggett", "ks"))
    p.add_argument("--lags", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--seed", type=int, default=2024, help="seed of the comparison's simulation")
    p.add_argument("--json", action="store_true")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--cache", metavar="DIR", help="save each solution here and reuse it on later calls")
    a = p.parse_args(argv)
    rows = compare_lags(a.model, a.lags, parse_overrides(a.set), smoke=a.smoke, seed=a.seed, verbose=a.verbose,
                        cache=a.cache)
    print(json.dumps(list(rows.values()), default=float) if a.json else markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
