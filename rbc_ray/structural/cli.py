"""Command line: `rbc-ray srl MODEL [--set key=value ...] [--out DIR] [--json]` and `bench_srl`.

How to run:
    rbc-ray srl huggett --json                      # spec calibration (minutes on a 2-core CPU)
    rbc-ray srl huggett --smoke --set sd_z=0 --json # smoke grids, stationary economy (seconds)
    rbc-ray srl ks --set n_paths=64 --out runs/ks   # Parquet tables and PNG plots in runs/ks
    python -m rbc_ray.structural.cli srl hank --smoke --json   # same, without the main rbc-ray CLI
Results to expect (smoke, stationary Huggett): converged true, mean_r about 0.024,
clearing_residual_max below 1e-6, euler_error_mean_log10 about -3.

The main CLI (rbc_ray/cli.py) wires `add_srl_parser(subparsers)` and calls `bench_srl(quick)`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

from .config import MODELS, parse_sets

# The paper's JAX/A100 reference (mean of 10 runs): seconds and epochs to convergence.
PAPER_A100 = {"huggett-pe": (39.5, 289), "huggett": (75.3, 481), "ks": (56.6, 438), "hank": (199.5, 497)}


def add_srl_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `srl` subcommand to an argparse subparsers object; sets func=run_srl."""
    p = subparsers.add_parser("srl", help="solve a heterogeneous-agent model by structural RL",
                              description="Solve Huggett (PE or GE), Krusell-Smith or HANK by SRL.")
    p.add_argument("model", choices=MODELS)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a calibration or solver key (repeatable), e.g. --set sd_z=0")
    p.add_argument("--out", default=None, help="directory for Parquet tables and PNG plots")
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    p.add_argument("--smoke", action="store_true", help="smoke-size grids/paths (same economics)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run_srl)
    return p


def run_srl(args: argparse.Namespace) -> int:
    """Handler of `rbc-ray srl`: exit 0 on success, 2 on bad input, 1 if training diverged."""
    from .api import solve
    from .config import calibration
    from .diagnostics import safe

    try:
        overrides = parse_sets(args.sets)
        calibration(args.model, overrides, smoke=args.smoke)  # validate before any work
    except ValueError as e:
        print(f"rbc-ray srl: error: {e}", file=sys.stderr)
        return 2
    from .solver import SRLDivergedError

    try:
        result = solve(args.model, overrides, smoke=args.smoke, verbose=not args.quiet)
    except SRLDivergedError as e:
        print(f"rbc-ray srl: error: {e}", file=sys.stderr)
        return 1
    if args.out:
        from .report import write_outputs
        write_outputs(result, args.out)
    summary = {k: (safe(v) if isinstance(v, float) else v) for k, v in result.summary().items()}
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            if k != "calibration":
                print(f"{k:>26}: {v}")
    return 0


def hardware() -> dict[str, Any]:
    """Named hardware for benchmark figures."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "torch": torch.__version__, "python": platform.python_version()}
    try:
        import ray
        info["ray"] = ray.__version__
    except ImportError:
        info["ray"] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _sig(x: float, digits: int = 4) -> float:
    """x to `digits` significant digits (fixed decimals reported a smoke run's 3 ms as 0.0 s)."""
    return float(f"{x:.{digits}g}")


def bench_srl(quick: bool, device: str = "cpu", models: tuple[str, ...] = MODELS,
              overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Time all four models to convergence; JSON-able, with the paper's A100 figures beside ours.

    quick=True runs the smoke sizes (proves the command works); quick=False the spec sizes.
    """
    from .api import solve
    from .diagnostics import safe

    out: dict[str, Any] = {"bench": "srl", "quick": quick, "device": device, "hardware": hardware(),
                           "dtype": (overrides or {}).get("dtype", "float32"), "models": {}}
    for model in models:
        ov = {"device": device, **(overrides or {})}
        t0 = time.perf_counter()
        res = solve(model, ov, smoke=quick, verbose=False)
        row = {"seconds": _sig(res.seconds), "wall_seconds_incl_diagnostics": _sig(time.perf_counter() - t0),
               "epochs": res.epochs, "converged": res.converged, "n_paths": res.calibration.n_paths,
               "n_b": res.calibration.n_b, "T": res.solver.T,
               "seconds_per_epoch": _sig(res.seconds / max(res.epochs, 1)),
               "clearing_residual_mean": safe(res.clearing_residual_mean),
               "clearing_residual_max": safe(res.clearing_residual_max),
               "euler_error_mean_log10": safe(res.euler_error_mean_log10),
               "euler_error_max_log10": safe(res.euler_error_max_log10),
               "mean_r": safe(res.mean_r),
               "paper_a100_seconds": PAPER_A100[model][0], "paper_a100_epochs": PAPER_A100[model][1],
               "ratio_to_paper": round(res.seconds / PAPER_A100[model][0], 3)}
        for k in ("mean_K", "mean_w", "mean_inflation"):
            if getattr(res, k) is not None:
                row[k] = safe(getattr(res, k))
        row.update({k: safe(v) for k, v in res.extra.items()})
        out["models"][model] = row
        print(f"bench srl {model}: {row['seconds']} s, {row['epochs']} epochs, converged {row['converged']}",
              file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: `python -m rbc_ray.structural.cli srl ...` or `... bench [--quick]`."""
    parser = argparse.ArgumentParser(prog="rbc-ray")
    sub = parser.add_subparsers(dest="command", required=True)
    add_srl_parser(sub)
    b = sub.add_parser("bench", help="time the four SRL models")
    b.add_argument("what", choices=["srl"])
    b.add_argument("--quick", action="store_true")
    b.add_argument("--json", action="store_true")
    b.add_argument("--device", default="cpu")
    b.add_argument("--models", default=",".join(MODELS))
    b.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args(argv)
    if args.command == "bench":
        try:
            ov = parse_sets(args.sets)
        except ValueError as e:
            print(f"rbc-ray bench: error: {e}", file=sys.stderr)
            return 2
        res = bench_srl(args.quick, device=args.device, models=tuple(args.models.split(",")), overrides=ov)
        print(json.dumps(res) if args.json else json.dumps(res, indent=2))
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
