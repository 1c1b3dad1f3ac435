"""`rbc-ray analyse`: best responses of every (profile, type, init, seed) as Tune trials, then the
epsilon table, the training curves, plots and a verdict per profile.

Each trial trains one type's best response against a profile (rbc_ray.equilibrium) on one CPU and
one torch thread (or on a share of a GPU: br.device=cuda, --gpus-per-trial F), reports the
selection gain at every evaluation (Tune keeps the best deviation as the trial's checkpoint) and
ends with its confirmed gain. Results in OUT: epsilon.parquet,
curves.parquet, plots/epsilon.png and Tune's folder OUT/tune/analyse (`--resume` continues it:
finished trials are kept, unfinished ones continue from their latest checkpoint).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from ray import tune

from ..config import ConfigError, apply_override
from ..economy import AGENT_TYPES
from ..equilibrium import BestResponseConfig, load_profile, run_profiles
from ..equilibrium.best_response import INITS, best_response, trial_summary
from ..equilibrium.epsilon import across_seeds, epsilon_rows, verdicts
from ..equilibrium.intuition import intuition_report
from ..equilibrium.plots import plot_epsilon
from ..equilibrium.spectrum import epsilon_from_verdicts, spectrum_report
from ..equilibrium.profile import best_response_experiment
from ..results import atomic_path, read_table, write_rows
from .cluster import init_ray, max_failures as max_failures_for
from .failures import TrainingFailed
from .resources import check_resources, require_gpus, trial_gpus

NAME = "analyse"
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # one checkpoint per evaluation


def analyse_trial(config: dict[str, Any]) -> None:
    """Tune function trainable: one best response, reported as it trains, then its summary.

    Every report carries a checkpoint with the current deviation (deviation.pt; Tune keeps the best by
    selection gain) and the best response's progress state (progress.pt): a trial restarted after a
    failure, or by `--resume`, continues from its latest checkpoint exactly as if it had not stopped."""
    torch.set_num_threads(1)
    trial = config["trial"]
    profile = load_profile(trial["profile_path"], run=trial["run"])
    br = BestResponseConfig.from_dict(config["br"])
    kind, init, seed = trial["type"], trial["init"], int(trial["seed"])
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume = torch.load(Path(folder) / "progress.pt", map_location="cpu", weights_only=False)

    def report(row: dict[str, float], candidate, state: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as folder:
            with atomic_path(Path(folder) / "deviation.pt") as tmp:
                torch.save({"type": kind, "episode": candidate.episode, "policy": candidate.policy}, tmp)
            with atomic_path(Path(folder) / "progress.pt") as tmp:
                torch.save(state, tmp)
            tune.report({**row, "done_trial": 0}, checkpoint=tune.Checkpoint.from_directory(folder))

    result = best_response(profile, kind, init, seed, br, alpha=float(config["alpha"]), report=report,
                           resume=resume)
    tune.report({**trial_summary(result, profile, br, trial.get("swept", "{}")), "done_trial": 1})


def analysis_trainable(gpus: float = 0.0):
    """`analyse_trial` reserving one CPU and `gpus` GPUs per best-response trial."""
    return tune.with_resources(analyse_trial, {"cpu": 1, "gpu": gpus})


def _swept_values(run: Path) -> str:
    """The swept values of a sweep trial's folder (from the sweep's summary.parquet), as JSON text."""
    summary = run.parent.parent / "summary.parquet"
    if run.parent.name != "trials" or not summary.exists():
        return "{}"
    for row in read_table(summary).to_pylist():
        if row.get("trial_id") == run.name:
            return json.dumps({k[4:]: json.loads(v) for k, v in row.items() if k.startswith("set.") and v},
                              sort_keys=True)
    return "{}"


def br_config(overrides: list[str], episodes: int | None, eval_episodes: int | None) -> BestResponseConfig:
    """The `br:` section from `--set br.KEY=VALUE` and the shortcut flags."""
    raw: dict[str, Any] = {"br": {}}
    for item in overrides:
        apply_override(raw, item, ("br",))
    if episodes is not None:
        raw["br"]["episodes"] = episodes
    if eval_episodes is not None:
        raw["br"]["eval_episodes"] = eval_episodes
    return BestResponseConfig.from_dict(raw["br"])


def run_analysis(paths: list[str], checkpoints: str = "end", types: list[str] | None = None, br_seeds: int = 1,
                 br_episodes: int | None = None, eval_episodes: int | None = None, alpha: float = 0.05,
                 inits: list[str] | None = None, overrides: list[str] = (), out: str | None = None,
                 address: str | None = None, max_concurrent: int | None = None, resume: bool = False,
                 tolerance: float = 0.01, spectrum: bool | None = None, intuition: bool = False,
                 max_failures: int | None = None, callbacks: list = (), gpus_per_trial: float | None = None
                 ) -> Path:
    """Everything `rbc-ray analyse` does; returns OUT. Each best-response trial runs on br.device
    and reserves one CPU and `gpus_per_trial` GPUs (a fraction: trials share a GPU; default 1 on
    cuda, 0 on cpu). A failed trial restarts from its latest checkpoint up to `max_failures` times
    (default: cluster.max_failures). `callbacks`: Tune callbacks (your own loggers)."""
    retries = max_failures_for(max_failures, address)
    types = list(types or AGENT_TYPES)
    inits = list(inits or INITS)
    for kind in types:
        if kind not in AGENT_TYPES:
            raise ConfigError(f"--types {kind!r}: one of {AGENT_TYPES}")
    for init in inits:
        if init not in INITS:
            raise ConfigError(f"--init {init!r}: one of {INITS}")
    if br_seeds < 1:
        raise ConfigError(f"--br-seeds must be >= 1, got {br_seeds}")
    if not 0 < alpha < 0.5:
        raise ConfigError(f"--alpha must lie in (0, 0.5), got {alpha}")
    if resume and not out:
        raise ConfigError("--resume needs --out: the folder of the analysis to continue")
    if resume and not (Path(out) / "tune" / NAME).exists():
        raise ConfigError(f"--resume: {Path(out).resolve()} holds no analysis to continue "
                          f"({Path(out) / 'tune' / NAME} is missing)")
    br = br_config(list(overrides), br_episodes, eval_episodes)
    gpus = trial_gpus(br.device, gpus_per_trial, "br.device")
    require_gpus(gpus, f"--gpus-per-trial {gpus:g}" if gpus_per_trial else f"br.device={br.device}", address)
    profiles = run_profiles(paths, checkpoints)
    if not profiles:
        raise ConfigError(f"no snapshots at --checkpoints {checkpoints!r} in {paths}")
    for profile in profiles:  # the br: settings must make a valid experiment of every profile: fail before Ray
        for kind in types:
            try:
                best_response_experiment(profile, kind, br, seed=0)
            except ConfigError as err:
                raise ConfigError(f"the br: settings do not fit profile {profile.name}: {err}") from None
    out_dir = Path(out or f"results/analyse-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    tune_dir = out_dir / "tune" / NAME
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = [{"profile_path": p.path, "run": p.run, "swept": _swept_values(Path(p.run)), "type": k, "init": i,
             "seed": s} for p in profiles for k in types for i in inits for s in range(br_seeds)]
    print(f"rbc-ray: analysing {len(profiles)} profiles x {len(types)} types x {len(inits)} inits x "
          f"{br_seeds} seeds = {len(grid)} best-response trials; results go to {out_dir}", flush=True)
    init_ray(address)
    check_resources({"cpu": 1, "gpu": gpus}, "a best-response trial",
                    "the Ray cluster needs a CPU (and the GPU share asked for) for it", address)
    trainable = analysis_trainable(gpus)
    if resume:
        tuner = tune.Tuner.restore(str(tune_dir), trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(grid), "br": br.to_dict(), "alpha": alpha},
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent),
            run_config=tune.RunConfig(
                name=NAME, storage_path=str(out_dir / "tune"), verbose=0, callbacks=list(callbacks),
                failure_config=tune.FailureConfig(max_failures=retries),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="selection_gain",
                                                        checkpoint_score_order="max")))
    results = tuner.fit()
    decided = write_results(results, out_dir, alpha, tolerance)
    if spectrum or (spectrum is None and len(profiles) > 1):
        rows = spectrum_report(profiles, out_dir, epsilon_by_profile=epsilon_from_verdicts(decided))
        groups = sorted({r["group"] for r in rows})
        print(f"rbc-ray: spectrum: {len(rows)} profiles in {len(groups)} groups; "
              f"{out_dir / 'spectrum.parquet'}, {out_dir / 'spectrum.png'}", flush=True)
    if intuition:
        for profile in profiles:
            intuition_report(profile, out_dir / "intuition" / profile.name)
        print(f"rbc-ray: intuition reports in {out_dir / 'intuition'}", flush=True)
    return out_dir


def write_results(results, out_dir: Path, alpha: float, tolerance: float) -> list[dict[str, Any]]:
    """epsilon.parquet, curves.parquet, plots/epsilon.png and the one-screen summary; the verdicts."""
    summaries, curves, errors = [], [], []
    for r in results:
        if r.error:
            errors.append(f"{r.path}: {r.error}")
            continue
        summaries.append({k: v for k, v in r.metrics.items() if k in _SUMMARY_KEYS})
        frame = r.metrics_dataframe
        trial = r.config["trial"]
        evaluations = {row["episode"]: row for row in frame[frame["done_trial"] == 0].to_dict("records")}
        for _, row in sorted(evaluations.items()):  # once per evaluation, also after a restart
            curves.append({"profile": r.metrics.get("profile", ""), "type": trial["type"], "init": trial["init"],
                           "br_seed": trial["seed"], "node_ip": r.metrics.get("node_ip", ""),
                           **{k: row[k] for k in _CURVE_KEYS if k in row}})
    curves.sort(key=lambda c: (c["profile"], c["type"], c["init"], c["br_seed"], c["episode"]))  # not Tune's order
    rows = epsilon_rows(summaries)
    write_rows(rows, out_dir / "epsilon.parquet")
    write_rows(curves, out_dir / "curves.parquet")
    write_rows(across_seeds(rows, alpha), out_dir / "epsilon_over_seeds.parquet")
    decided = verdicts(rows, tolerance)
    write_rows(decided, out_dir / "verdicts.parquet")
    if rows:
        plot_epsilon(rows, out_dir / "plots" / "epsilon.png")
    print(summary_text(rows, decided, tolerance), flush=True)
    for e in errors:
        print(f"rbc-ray analyse: a trial failed: {e}", file=sys.stderr)
    if errors:
        raise TrainingFailed(f"{len(errors)} best-response trials failed (see above); the others' results are in "
                             f"{out_dir}")
    return decided


_SUMMARY_KEYS = ("profile", "run", "episode", "train_seed", "swept", "type", "init", "br_seed", "selection_gain",
                 "best_episode", "u_before", "u_after", "gain", "se", "lcb", "lcb_bootstrap", "alpha", "n_eval",
                 "budget", "gain_half", "lcb_half")
_CURVE_KEYS = ("episode", "selection_gain", "selection_se", "selection_lcb", "payoff_before", "payoff_after",
               "train_reward", "entropy")


def summary_text(rows: list[dict[str, Any]], decided: list[dict[str, Any]], tolerance: float) -> str:
    """One screen: per profile and type, payoff, gain +- SE and the bound; then the verdicts."""
    lines = [f"{'profile':<28} {'type':<10} {'U before':>12} {'gain':>12} {'SE':>10} {'epsilon >=':>12}"]
    for r in rows:
        lines.append(f"{r['profile']:<28} {r['type']:<10} {r['u_before']:12.4g} {r['gain']:12.4g} "
                     f"{r['se']:10.3g} {r['lcb']:12.4g}")
    lines.append(f"verdicts (alpha {rows[0]['alpha'] if rows else '-'}, tolerance {tolerance:g} of |U|):")
    for d in decided:
        lines.append(f"  {d['profile']:<28} epsilon >= {d['epsilon_lcb']:.4g} ({d['epsilon_type']}); "
                     f"sum of gains {d['sum_gain']:.4g}: {d['verdict']}")
    return "\n".join(lines)
