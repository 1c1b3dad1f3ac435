"""The paper's open economy on one GPU: train it over 3 seeds, analyse it, compare with the paper.

How to run (one H100/H200, planned to finish within 8 minutes; run from the repo folder):
    python -m rbc_ray.bench.paper_gpu --out results/paper-gpu
Tiny, on CPU (checks the whole pipeline in about a minute; not the economics):
    python -m rbc_ray.bench.paper_gpu --size tiny --device cpu --out results/paper-gpu-tiny

What it does: tune_configs/open_rbc.yaml (Curry et al. 2022: 100 consumers, 10 firms, 1 government,
128 envs) with the reference curriculum and its 150K episodes both divided by `--compress` (paper
size: 100, so 1,500 episodes per seed, firms training from episode 300, the government from 600),
the seeds as concurrent Tune trials sharing the GPU (`rbc-ray sweep --gpus-per-trial`), policy
snapshots at the middle and the end; then `rbc-ray analyse` of the mid and end profiles (best
responses of every type on GPU shares); then figures and a summary against the paper.

Results to expect in OUT: train/ (the sweep: summary.parquet, trials/*/metrics.parquet, plots),
analysis/ (epsilon.parquet, verdicts.parquet, plots/epsilon.png), figures/paper_gpu.png (price,
wage and rewards per seed over episodes, with the paper's end-of-training ranges shaded),
summary.json and summary.md (start and end of each quantity per seed, their mean, the paper's
values, the analysis verdicts and the wall time of each phase). The paper reports mean price about
1000 -> 2150-2300, mean wage about 20 -> 8.5-9, firm reward about -70K -> 140K and a falling
consumer reward; a 100x compressed curriculum need not get there, and the summary says how near
it came.

Flags override the environment variables RBC_PAPER_SIZE (paper | small | tiny) and
RBC_PAPER_DEVICE (cuda | cpu); each size sets the economy, the episodes and the analysis, and
every one of those has its own flag.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..results import load, plot_runs
from .common import hardware, log

ROOT = Path(__file__).resolve().parents[2]
PAPER_CONFIG = ROOT / "tune_configs" / "open_rbc.yaml"
PAPER_EPISODES = 150_000
"""Episodes of the paper's run (tune_configs/open_rbc.yaml); the curriculum is laid out over them."""

PAPER = {  # Curry et al. (2022), open economy, 3 seeds: (start, (end low, end high)); None = a direction only
    "mean_price": (1000.0, (2150.0, 2300.0)),
    "mean_wage": (20.0, (8.5, 9.0)),
    "reward_firm": (-70_000.0, (140_000.0, 140_000.0)),
    "reward_consumer": (None, None),  # falls over training
}
QUANTITIES = [("mean_price", "mean price"), ("mean_wage", "mean wage"),
              ("reward_firm", "firm reward (per agent-step)"), ("reward_consumer", "consumer reward (per agent-step)"),
              ("reward_government", "government reward (per step)")]


@dataclass(frozen=True)
class Plan:
    """Everything one run of the script does; a size picks the defaults."""

    n_consumers: int = 100
    n_firms: int = 10
    n_envs: int = 128
    compress: float = 100.0
    """the paper's curriculum and its 150K episodes are divided by this"""
    episodes_per_iteration: int = 50
    seeds: tuple[int, ...] = (0, 1, 2)
    torch_threads: int = 2
    br_episodes: int = 150
    br_eval_envs: int = 64
    types: tuple[str, ...] = ("consumer", "firm", "government")
    inits: tuple[str, ...] = ("warm", "fresh")
    br_gpus_per_trial: float = 0.125
    """GPU share of each best-response trial (8 at once on one GPU)"""
    hidden: tuple[int, ...] = ()
    """network widths for every type (empty: the paper config's 128 x 128)"""
    extra: tuple[str, ...] = field(default_factory=tuple)
    """more --set overrides for the training runs"""

    @property
    def episodes(self) -> int:
        return max(1, round(PAPER_EPISODES / self.compress))


SIZES = {
    "paper": Plan(),
    "small": Plan(n_consumers=20, n_firms=4, n_envs=32, compress=100.0, torch_threads=1, hidden=(64, 64),
                  br_episodes=100, br_eval_envs=32),
    "tiny": Plan(n_consumers=4, n_firms=2, n_envs=4, compress=7500.0, episodes_per_iteration=5, torch_threads=1,
                 hidden=(16, 16), br_episodes=10, br_eval_envs=4, types=("firm",), inits=("fresh",)),
}


def experiment(plan: Plan, device: str) -> dict[str, Any]:
    """The paper config with this plan's sizes, device, compressed curriculum and seeds."""
    raw = yaml.safe_load(PAPER_CONFIG.read_text())
    raw["name"] = "paper_gpu"
    raw["economy"].update(n_consumers=plan.n_consumers, n_firms=plan.n_firms)
    raw["train"].update(n_envs=plan.n_envs, total_episodes=plan.episodes, device=device,
                        episodes_per_iteration=min(plan.episodes_per_iteration, plan.episodes),
                        snapshot_every=max(1, plan.episodes // 2), torch_threads=plan.torch_threads)
    raw["curriculum"]["compress"] = float(plan.compress)
    if plan.hidden:
        for kind in raw["policies"]:
            raw["policies"][kind]["hidden"] = list(plan.hidden)
    raw["tune"] = {"seeds": list(plan.seeds), "max_concurrent": len(plan.seeds)}
    return raw


def run(plan: Plan, device: str, out: str | os.PathLike, address: str | None = None) -> dict[str, Any]:
    """Train, analyse, draw and summarise; returns the summary (also in OUT/summary.json)."""
    from ..launch.analyse import run_analysis
    from ..launch.resources import require_gpus
    from ..launch.sweep import run_sweep

    cuda = device.startswith("cuda")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device {device}: cpu or cuda (Ray gives each trial its GPU)")
    require_gpus(1 if cuda else 0, f"--device {device}", address)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = out / "experiment.yaml"
    config.write_text(yaml.safe_dump(experiment(plan, device), sort_keys=False))
    # the seeds share the GPU evenly (rounded down: Ray counts GPU shares to 4 decimals)
    train_gpus = math.floor(10_000 / len(plan.seeds)) / 10_000 if cuda else None
    walls: dict[str, float] = {}
    log(f"paper_gpu: {plan.n_consumers}/{plan.n_firms}/1 economy, {plan.n_envs} envs, {plan.episodes} episodes "
        f"(curriculum / {plan.compress:g}), seeds {list(plan.seeds)}, on {device}; results in {out}")
    start = time.perf_counter()
    run_sweep(str(config), list(plan.extra), str(out / "train"), address, gpus_per_trial=train_gpus)
    walls["train_s"] = time.perf_counter() - start
    start = time.perf_counter()
    br_set = [f"br.device={'cuda' if cuda else 'cpu'}", f"br.eval_envs={plan.br_eval_envs}",
              f"br.eval_every={max(1, plan.br_episodes // 2)}",
              f"br.episodes_per_iteration={min(10, plan.br_episodes)}"]
    run_analysis([str(out / "train")], checkpoints="mid,end", types=list(plan.types), inits=list(plan.inits),
                 br_episodes=plan.br_episodes, eval_episodes=1, overrides=br_set, out=str(out / "analysis"),
                 address=address, spectrum=False, gpus_per_trial=plan.br_gpus_per_trial if cuda else None)
    walls["analyse_s"] = time.perf_counter() - start
    start = time.perf_counter()
    runs = seed_runs(out / "train")
    figure = plot_runs({f"seed {seed}": cols for seed, cols in runs.items()}, QUANTITIES,
                       out / "figures" / "paper_gpu.png",
                       bands={k: v[1] for k, v in PAPER.items() if v[1] is not None},
                       title=f"open economy {plan.n_consumers}/{plan.n_firms}/1, {plan.n_envs} envs, "
                             f"curriculum / {plan.compress:g}")
    walls["figures_s"] = time.perf_counter() - start
    summary = summarise(runs, out / "analysis", plan, device, walls, figure)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "summary.md").write_text(summary_markdown(summary))
    return summary


def trial_seeds(sweep: Path) -> dict[str, int]:
    """{trial_id: seed} of the sweep's trials; a failed trial is an error."""
    import pyarrow.parquet as pq

    seeds = {}
    for row in pq.read_table(sweep / "summary.parquet").to_pylist():
        if row.get("error"):
            raise RuntimeError(f"training trial {row['trial_id']} failed: {row['error']}")
        seeds[row["trial_id"]] = int(json.loads(row["set.train.seed"]))
    return seeds


def seed_runs(sweep: Path) -> dict[int, dict[str, list]]:
    """{seed: metrics columns} of the sweep's trials."""
    runs = {seed: load(sweep / "trials" / trial).to_pydict() for trial, seed in trial_seeds(sweep).items()}
    return dict(sorted(runs.items()))


def start_end(values: list[float]) -> tuple[float, float]:
    """The first iteration's value and the mean of the last tenth of the iterations (at least one)."""
    tail = values[-max(1, len(values) // 10):]
    return float(values[0]), float(sum(tail) / len(tail))


def summarise(runs: dict[int, dict[str, list]], analysis: Path, plan: Plan, device: str,
              walls: dict[str, float], figure: Path) -> dict[str, Any]:
    """The summary.json record: plan, hardware, wall times, each quantity's start and end per seed
    and on average beside the paper's, and the analysis verdict of each profile (seed, episode)."""
    import pyarrow.parquet as pq

    rows = []
    for key, label in QUANTITIES:
        per_seed = {seed: start_end(cols[key]) for seed, cols in runs.items()}
        starts, ends = [v[0] for v in per_seed.values()], [v[1] for v in per_seed.values()]
        paper_start, paper_end = PAPER.get(key, (None, None))
        mean_end = sum(ends) / len(ends)
        rows.append({"quantity": key, "label": label,
                     "per_seed": {str(s): {"start": v[0], "end": v[1]} for s, v in per_seed.items()},
                     "start": sum(starts) / len(starts), "end": mean_end,
                     "paper_start": paper_start, "paper_end": list(paper_end) if paper_end else None,
                     "in_paper_range": (paper_end[0] <= mean_end <= paper_end[1]) if paper_end and
                     paper_end[0] < paper_end[1] else None,
                     "end_over_paper": mean_end / (sum(paper_end) / 2) if paper_end else None})
    verdicts = pq.read_table(analysis / "verdicts.parquet").to_pylist()
    return {"plan": {**asdict(plan), "episodes": plan.episodes}, "device": device, "hardware": hardware(),
            "wall_s": {**{k: round(v, 1) for k, v in walls.items()}, "total_s": round(sum(walls.values()), 1)},
            "quantities": rows,
            "verdicts": [{k: v.get(k) for k in ("seed", "episode", "profile", "epsilon_lcb", "epsilon_type", "verdict")}
                         for v in verdicts],
            "figures": [str(figure), str(analysis / "plots" / "epsilon.png")]}


def summary_markdown(s: dict[str, Any]) -> str:
    p = s["plan"]
    lines = [f"# The paper's open economy: {p['n_consumers']}/{p['n_firms']}/1, {p['n_envs']} envs, "
             f"{p['episodes']} episodes (curriculum / {p['compress']:g}), seeds {list(p['seeds'])}, on {s['device']}",
             "", f"Hardware: {s['hardware'].get('gpu') or s['hardware']['cpu']}. Wall time: "
             + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in s["wall_s"].items()) + ".", "",
             "| quantity | start (mean of seeds) | end (mean of seeds) | per seed, end | paper: start -> end "
             "| end / paper |", "|---|---|---|---|---|---|"]
    for r in s["quantities"]:
        seeds = ", ".join(f"{v['end']:.4g}" for v in r["per_seed"].values())
        if r["paper_end"]:
            low, high = r["paper_end"]
            paper = f"{r['paper_start']:.4g} -> {low:.4g}" + (f"-{high:.4g}" if high != low else "")
        else:
            paper = "falls" if r["quantity"] == "reward_consumer" else "-"
        ratio = f"{r['end_over_paper']:.2f}" if r["end_over_paper"] is not None else "-"
        lines.append(f"| {r['label']} | {r['start']:.4g} | {r['end']:.4g} | {seeds} | {paper} | {ratio} |")
    lines += ["", "Start: the first iteration; end: the mean of the last tenth of the iterations.", "",
              "Best-response analysis (epsilon: a lower bound on what a type gains by deviating):", ""]
    for v in s["verdicts"]:
        lines.append(f"- seed {v['seed']}, episode {v['episode']} ({v['profile']}): epsilon >= "
                     f"{v['epsilon_lcb']:.4g} ({v['epsilon_type']}): {v['verdict']}")
    lines += ["", "Figures: " + ", ".join(Path(f).relative_to(Path(s['figures'][0]).parents[1]).as_posix()
                                          for f in s["figures"]), ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rbc_ray.bench.paper_gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default=os.environ.get("RBC_PAPER_SIZE", "paper"),
                   help="paper (100/10/1, 128 envs), small (20/4/1, 32 envs) or tiny (4/2/1, 4 envs) "
                        "(default: $RBC_PAPER_SIZE or paper)")
    p.add_argument("--device", default=os.environ.get("RBC_PAPER_DEVICE", "cuda"),
                   help="cuda or cpu (default: $RBC_PAPER_DEVICE or cuda)")
    p.add_argument("--out", default="results/paper-gpu", help="results folder (default results/paper-gpu)")
    p.add_argument("--seeds", help="comma-separated training seeds (default 0,1,2)")
    p.add_argument("--compress", type=float, help="divide the paper's curriculum and 150K episodes by this")
    p.add_argument("--envs", type=int, help="economy replicas per trial")
    p.add_argument("--br-episodes", type=int, help="best-response training episodes")
    p.add_argument("--types", help="comma-separated types to best-respond (default: the size's)")
    p.add_argument("--br-gpus-per-trial", type=float, help="GPU share of each best-response trial (default 0.125)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more training overrides")
    p.add_argument("--address", help="Ray cluster address (default: an embedded local Ray)")
    return p


def plan_from(args: argparse.Namespace) -> Plan:
    plan = SIZES[args.size]
    changes: dict[str, Any] = {"extra": tuple(args.set)}
    if args.seeds:
        changes["seeds"] = tuple(int(s) for s in args.seeds.split(","))
    if args.compress:
        changes["compress"] = args.compress
    if args.envs:
        changes["n_envs"] = args.envs
    if args.br_episodes:
        changes["br_episodes"] = args.br_episodes
    if args.types:
        changes["types"] = tuple(t.strip() for t in args.types.split(","))
    if args.br_gpus_per_trial:
        changes["br_gpus_per_trial"] = args.br_gpus_per_trial
    return replace(plan, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    from ..launch.failures import TrainingFailed

    args = build_parser().parse_args(argv)
    try:
        summary = run(plan_from(args), args.device, args.out, args.address)
    except (ValueError, FileNotFoundError) as err:
        print(f"paper_gpu: error: {err}", file=sys.stderr)
        return 2
    except (TrainingFailed, RuntimeError) as err:
        print(f"paper_gpu: {err}", file=sys.stderr)
        return 1
    print(summary_markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
