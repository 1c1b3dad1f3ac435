"""`rbc-ray`: train | sweep | analyse | srl | bench | plot. Bad input exits 2 with a one-line message
(`rbc-ray --debug ...` shows the full traceback instead); a run that fails exits 1.

Every command takes `--set KEY=VALUE` overrides in one syntax: a dotted key (`train.n_envs=8` for an
experiment, `sd_z=0` for an SRL calibration) and a YAML value.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .structural.config import MODELS


def _check_experiment(args: argparse.Namespace) -> None:
    """Validate an RBC experiment and its --set before importing Ray: bad input fails in a second."""
    from .config import read_yaml
    from .train.config import load_experiment

    raw = read_yaml(args.config)
    if "srl" not in raw:
        load_experiment(raw, args.set)


def _train(args: argparse.Namespace) -> int:
    _check_experiment(args)
    from .launch.train import run_train, run_train_data_parallel

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.workers > 1:
        if args.resume and not args.out:
            raise ValueError("--resume needs --out: the folder of the run to continue")
        run_train_data_parallel(args.config, args.set, args.out, args.address, args.workers, resume=args.resume,
                                max_failures=args.max_failures)
        return 0
    run_train(args.config, args.set, args.out, args.address, resume=args.resume, max_failures=args.max_failures)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    _check_experiment(args)
    from .launch.sweep import run_sweep

    run_sweep(args.config, args.set, args.out, args.address, resume=args.resume, max_failures=args.max_failures,
              gpus_per_trial=args.gpus_per_trial)
    return 0


def _srl(args: argparse.Namespace) -> int:
    """Solve one SRL model: a JSON summary or a table on stdout, Parquet and PNGs in --out."""
    from .config import parse_overrides
    from .structural import calibration, solve
    from .structural.diagnostics import safe

    overrides = parse_overrides(args.set)
    calibration(args.model, overrides, smoke=args.smoke)  # validate before any work
    result = solve(args.model, overrides, smoke=args.smoke, verbose=not args.quiet)
    if args.out:
        from .structural.report import write_outputs

        write_outputs(result, args.out)
    summary = {k: (safe(v) if isinstance(v, float) else v) for k, v in result.summary().items()}
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            if k != "calibration":
                print(f"{k:>26}: {v}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    if args.what == "env":
        from .bench.env import bench_env

        result = bench_env(quick=args.quick, device=args.device, compile=_COMPILE[args.compile],
                           envs=args.envs or None)
    elif args.what == "train":
        from .bench.train import bench_train

        result = bench_train(quick=args.quick, device=args.device,
                             compile=False if args.compile == "auto" else _COMPILE[args.compile])
    elif args.what == "scale":
        from .bench.scale import bench_scale

        if args.envs and len(args.envs) > 1:
            raise ValueError("scale bench: --envs takes one env count (the same for every case)")
        result = bench_scale(quick=args.quick, device=args.device, n_envs=args.envs[0] if args.envs else None)
    else:
        from .bench.srl import bench_srl
        from .config import parse_overrides

        result = bench_srl(quick=args.quick, device=args.device, models=tuple(args.models or MODELS),
                           overrides=parse_overrides(args.set))
    text = json.dumps(result, indent=None if args.json else 2, default=float)
    print(text)
    return 0


_COMPILE = {"auto": "auto", "both": None, "on": True, "off": False}


def _analyse(args: argparse.Namespace) -> int:
    from .launch.analyse import run_analysis

    run_analysis(args.runs, checkpoints=args.checkpoints, types=args.types, br_seeds=args.br_seeds,
                 br_episodes=args.br_episodes, eval_episodes=args.eval_episodes, alpha=args.alpha,
                 inits=None if args.init == "both" else [args.init], overrides=args.set, out=args.out,
                 address=args.address, max_concurrent=args.max_concurrent, resume=args.resume,
                 tolerance=args.tolerance, spectrum=args.spectrum, intuition=args.intuition,
                 max_failures=args.max_failures, gpus_per_trial=args.gpus_per_trial)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .results import plot_training

    for path in plot_training(args.out):
        print(path)
    return 0


def _set_option(p: argparse.ArgumentParser, example: str) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config key by its dotted path, value as YAML, e.g. {example} (repeatable)")


def _max_failures_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-failures", type=int, default=None, metavar="K",
                   help="restart a failed trial (or data-parallel worker group) from its latest checkpoint up "
                        "to K times (default: 2 with --address, 0 on the embedded local Ray)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rbc-ray", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full traceback (before the command: rbc-ray --debug train ...)")
    sub = parser.add_subparsers(dest="command", required=True)

    def experiment_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("config", help="experiment YAML (see tune_configs/)")
        _set_option(p, "train.n_envs=8")
        p.add_argument("--out", help="results folder (default results/NAME-TIMESTAMP)")
        p.add_argument("--address", help="Ray cluster address (default: an embedded local Ray)")

    p = sub.add_parser("train", help="train one experiment as a Tune trial, with live progress")
    experiment_args(p)
    p.add_argument("--resume", action="store_true", help="resume the run found in --out")
    p.add_argument("--workers", type=int, default=1,
                   help="data-parallel Ray Train workers (default 1: one Tune trial)")
    _max_failures_option(p)
    p.set_defaults(func=_train)

    def gpus_option(p: argparse.ArgumentParser, device_key: str) -> None:
        p.add_argument("--gpus-per-trial", type=float, metavar="F",
                       help=f"GPUs each trial reserves; a fraction such as 0.25 lets trials share a GPU "
                            f"(needs {device_key}=cuda; default 1 on cuda, 0 on cpu)")

    p = sub.add_parser("sweep", help="run the grid and seeds an experiment YAML declares (RBC or SRL)")
    experiment_args(p)
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep found in --out after its driver stopped")
    _max_failures_option(p)
    gpus_option(p, "train.device")
    p.set_defaults(func=_sweep)

    p = sub.add_parser("analyse", help="best responses to trained profiles: epsilon bounds and verdicts")
    p.add_argument("runs", nargs="+", metavar="RUN_OR_SWEEP", help="folders of rbc-ray train or sweep runs")
    p.add_argument("--checkpoints", default="end", help="end, mid, or snapshot episodes, comma-separated "
                   "(default end)")
    p.add_argument("--types", action="append", choices=["consumer", "firm", "government"],
                   help="types to best-respond (repeatable; default all)")
    p.add_argument("--br-seeds", type=int, default=1, metavar="K", help="best-response seeds per init (default 1)")
    p.add_argument("--br-episodes", type=int, metavar="N", help="best-response training episodes (br.episodes)")
    p.add_argument("--eval-episodes", type=int, metavar="M", help="evaluation episodes (br.eval_episodes)")
    p.add_argument("--alpha", type=float, default=0.05, help="one-sided level of the lower bounds (default 0.05)")
    p.add_argument("--init", choices=["warm", "fresh", "both"], default="both",
                   help="start the deviation from the profile's policy, a fresh network, or both (default)")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="a type whose bound exceeds this share of |payoff| is flagged (default 0.01)")
    p.add_argument("--spectrum", action=argparse.BooleanOptionalAction, default=None,
                   help="group the profiles into distinct equilibria (default: when there are several)")
    p.add_argument("--intuition", action="store_true",
                   help="also write each profile's economic-intuition report (OUT/intuition/PROFILE/)")
    _set_option(p, "br.lr=3e-4")
    p.add_argument("--out", help="results folder (default results/analyse-TIMESTAMP)")
    p.add_argument("--address", help="Ray cluster address (default: an embedded local Ray)")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="trials at once (default: as many as fit)")
    p.add_argument("--resume", action="store_true", help="continue the analysis found in --out")
    _max_failures_option(p)
    gpus_option(p, "br.device")
    p.set_defaults(func=_analyse)

    p = sub.add_parser("srl", help="solve a heterogeneous-agent model by structural RL",
                       description="Solve Huggett (PE or GE), Krusell-Smith or HANK by structural RL.")
    p.add_argument("model", choices=MODELS)
    _set_option(p, "sd_z=0")
    p.add_argument("--out", default=None, help="directory for Parquet tables and PNG plots")
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    p.add_argument("--smoke", action="store_true", help="smoke-size grids/paths (same economics)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=_srl)

    p = sub.add_parser("bench", help="speed figures as JSON (see docs/benchmarks.md)")
    p.add_argument("what", choices=["env", "train", "scale", "srl"])
    p.add_argument("--json", action="store_true", help="one-line JSON (default: indented)")
    p.add_argument("--quick", action="store_true", help="small repeats, finishes in about a minute")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--compile", choices=sorted(_COMPILE), default="auto",
                   help="env bench: eager step, torch.compile'd step, or both "
                        "(auto: both on cuda, eager on cpu where compiling measured slower); "
                        "train bench: train.compile off, on, or both side by side (auto: off)")
    p.add_argument("--envs", type=int, action="append", metavar="N",
                   help="env bench: replica counts to time (repeatable; default 128 and 1024); "
                        "scale bench: the env count of every case (default 1, --quick 2)")
    p.add_argument("--models", action="append", choices=MODELS,
                   help="srl bench: models to time (repeatable; default all four)")
    _set_option(p, "n_paths=64 (srl bench: calibration overrides)")
    p.set_defaults(func=_bench)

    p = sub.add_parser("plot", help="(re)draw the PNG training curves of a results folder")
    p.add_argument("out", help="results folder holding metrics.parquet")
    p.set_defaults(func=_plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .launch.failures import TrainingFailed
    from .structural.solver import SRLDivergedError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, OSError) as err:  # bad input: a config, a flag, a file or a folder
        if args.debug:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"rbc-ray {args.command}: error: {one_line(message)}", file=sys.stderr)
        return 2
    except (TrainingFailed, SRLDivergedError) as err:  # a run that failed (diverged): one line, exit 1
        if args.debug:
            raise
        print(f"rbc-ray {args.command}: {one_line(err)}", file=sys.stderr)
        return 1


def one_line(message: object) -> str:
    """A message on one line (a library's multi-line error joined with ' | ')."""
    return " | ".join(line.strip() for line in str(message).splitlines() if line.strip())


if __name__ == "__main__":
    sys.exit(main())
