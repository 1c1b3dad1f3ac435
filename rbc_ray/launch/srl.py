"""`rbc-ray sweep` of an SRL experiment: seeds and calibrations of one model as Ray Tune trials.

    name: srl_huggett_seeds
    srl: {model: huggett, smoke: false, n_paths: 512}   # the model, smoke size, any calibration key
    tune: {grid: {srl.sd_z: [0.0, 0.02]}, seeds: [0, 1, 2], max_concurrent: 2}

Grid keys and `--set` overrides are dotted paths like any experiment's (`srl.sd_z`, `srl.n_b=100`).
One function trainable per trial, one CPU and one torch thread each. Results: OUT/summary.parquet
(one row per trial, as for RBC sweeps) and Tune's folder OUT/tune/NAME.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from ray import tune

from ..config import ConfigError, apply_override, deprecated, plain, unknown_key
from ..structural import MODELS, calibration, solve
from .resources import check_resources
from .cluster import init_ray
from .tune_spec import check_tune_spec, grid_points, grid_space, write_summary

SECTIONS = ("name", "srl", "tune")


def _old_spelling(raw: dict[str, Any]) -> dict[str, Any]:
    """The earlier layout `srl: {model, name, smoke, set: {...}, grid: {...}, seeds: N}` in today's."""
    srl = dict(raw["srl"])
    if not ({"set", "grid", "seeds", "name"} & set(srl)):
        return raw
    deprecated("srl: {name, set, grid, seeds}", "name:, srl: {model, smoke, KEY: value}, tune: {grid, seeds}")
    out = {k: v for k, v in raw.items() if k != "srl"}
    if "name" in srl:
        out.setdefault("name", srl.pop("name"))
    tune_spec = dict(out.get("tune") or {})
    grid = srl.pop("grid", None) or {}
    tune_spec["grid"] = {**{f"srl.{k}": v for k, v in grid.items()}, **(tune_spec.get("grid") or {})}
    seeds = srl.pop("seeds", None)
    if seeds is not None:
        tune_spec["seeds"] = list(range(seeds)) if isinstance(seeds, int) and not isinstance(seeds, bool) else seeds
    srl.update(srl.pop("set", None) or {})
    out["srl"], out["tune"] = srl, tune_spec
    return out


def load_srl_sweep(raw: dict[str, Any], overrides: list[str] = ()) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(name, the `srl:` section, the checked `tune:` section) of an SRL sweep, every grid point's
    calibration validated (so a bad key fails before Ray starts, naming the key)."""
    raw = _old_spelling(plain(raw))
    for item in overrides:
        apply_override(raw, item, SECTIONS)
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(unknown_key(str(key), str(key), SECTIONS, "top-level keys of an SRL sweep"))
    srl = raw.get("srl")
    if not isinstance(srl, dict) or "model" not in srl:
        raise ConfigError("srl must be a mapping with a 'model' key (one of " + ", ".join(MODELS) + ")")
    spec = check_tune_spec(raw.get("tune"), "srl.seed")
    for key in spec["grid"]:
        if not key.startswith("srl.") or key.count(".") != 1:
            raise ConfigError(f"tune.grid.{key}: an SRL sweep varies calibration keys, written srl.KEY")
    for point in grid_points(spec) or [{}]:
        trial_calibration(srl, point)
    name = raw.get("name") or f"srl_{srl['model']}"
    return str(name), srl, spec


def trial_calibration(srl: dict[str, Any], point: dict[str, Any]):
    """The validated calibration of one trial: the `srl:` section with the grid point's values."""
    values = {k: v for k, v in srl.items() if k not in ("model", "smoke")}
    values.update({key.split(".", 1)[1]: value for key, value in point.items()})
    return calibration(srl["model"], values, smoke=bool(srl.get("smoke", False)))


def srl_trainable(config: dict[str, Any]) -> None:
    """Tune function trainable: solve one calibration, report the summary's numeric fields."""
    torch.set_num_threads(1)
    cal = trial_calibration(config["srl"], config.get("set", {}))
    overrides = {k: v for k, v in plain(cal).items()}
    overrides["threads"] = 1
    res = solve(config["srl"]["model"], overrides, verbose=False)
    metrics = {k: v for k, v in res.summary().items()
               if isinstance(v, (int, float, bool)) and k != "calibration"}
    metrics["converged"] = bool(res.converged)
    tune.report(metrics)


def run_sweep(raw: dict[str, Any], overrides: list[str], out_dir: Path, address: str | None = None,
              resume: bool = False, max_failures: int = 0) -> Path:
    """Run the sweep an SRL experiment YAML declares as Ray Tune trials; returns OUT. `resume` continues
    it after its driver stopped: finished solves are kept, unfinished ones solve again (a solve takes
    seconds to minutes and keeps no checkpoint); a failed solve is retried up to `max_failures` times."""
    name, srl, spec = load_srl_sweep(raw, overrides)
    out_dir = Path(out_dir).resolve()
    tune_dir = out_dir / "tune" / name
    if resume and not tune_dir.exists():
        raise ConfigError(f"--resume: {out_dir} holds no SRL sweep named {name!r} ({tune_dir} is missing)")
    out_dir.mkdir(parents=True, exist_ok=True)
    init_ray(address)
    resources = {"cpu": 1}
    check_resources(resources, "an SRL trial", "the Ray cluster needs a CPU for it", address)
    trainable = tune.with_resources(srl_trainable, resources)
    if resume:
        tuner = tune.Tuner.restore(str(tune_dir), trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"srl": srl, "set": grid_space(spec)},
            tune_config=tune.TuneConfig(max_concurrent_trials=spec.get("max_concurrent")),
            run_config=tune.RunConfig(name=name, storage_path=str(out_dir / "tune"), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=max_failures)),
        )
    results = tuner.fit()
    path = write_summary(results, out_dir)
    n_conv = sum(bool((r.metrics or {}).get("converged")) for r in results)
    print(f"rbc-ray: srl sweep {name}: {n_conv}/{len(results)} trials converged; summary {path}",
          file=sys.stderr, flush=True)
    return out_dir
