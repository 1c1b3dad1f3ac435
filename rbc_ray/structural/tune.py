"""Ray Tune sweeps over seeds and calibrations for SRL (`tune_configs/srl_*.yaml`).

YAML shape (the top-level `srl:` key is how `rbc-ray sweep` recognises an SRL sweep):

    srl:
      model: huggett          # huggett-pe | huggett | ks | hank
      name: srl_huggett_seeds # Tune experiment name (default: srl_<model>)
      smoke: false            # smoke-size grids (tests, CI)
      set: {n_paths: 512}     # calibration overrides for every trial
      grid: {sd_z: [0.0, 0.02]}  # Tune grid_search over calibration keys
      seeds: 10               # int n -> seeds 0..n-1, or an explicit list

One function trainable per trial, one CPU each, torch threads 1. Results: Tune's own directory under
out_dir, plus out_dir/<name>_trials.parquet (one row per trial) and a line on stderr saying how many
trials converged.
"""

from __future__ import annotations

import itertools
import os
import sys
from typing import Any

from .config import calibration


def _sweep_spec(spec: dict[str, Any]) -> dict[str, Any]:
    s = dict(spec["srl"] if "srl" in spec else spec)
    if "model" not in s:
        raise ValueError("srl sweep needs a 'model' key")
    unknown = set(s) - {"model", "name", "smoke", "set", "grid", "seeds"}
    if unknown:
        raise ValueError(f"unknown srl sweep keys: {', '.join(sorted(unknown))}")
    seeds = s.get("seeds", 1)
    s["seeds"] = list(range(int(seeds))) if isinstance(seeds, int) else [int(x) for x in seeds]
    s.setdefault("set", {})
    s.setdefault("grid", {})
    s.setdefault("smoke", False)
    s.setdefault("name", f"srl_{s['model']}")
    for k, v in s["grid"].items():
        if not isinstance(v, list) or not v:
            raise ValueError(f"grid key {k!r} needs a non-empty list of values")
    # validate every grid point before launching anything: bad keys fail fast, naming the key
    keys = list(s["grid"])
    for combo in itertools.product(*(s["grid"][k] for k in keys)):
        calibration(s["model"], {**s["set"], **dict(zip(keys, combo)), "seed": s["seeds"][0]}, smoke=s["smoke"])
    return s


def srl_trainable(config: dict[str, Any]) -> None:
    """Tune function trainable: solve one calibration, report the summary's numeric fields."""
    import torch
    from ray import tune

    from .api import solve

    torch.set_num_threads(1)
    model, smoke = config["_model"], config["_smoke"]
    overrides = {k: v for k, v in config.items() if not k.startswith("_")}
    overrides["threads"] = 1
    res = solve(model, overrides, smoke=smoke, verbose=False)
    metrics = {k: v for k, v in res.summary().items()
               if isinstance(v, (int, float, bool)) and k != "calibration"}
    metrics["converged"] = bool(res.converged)
    tune.report(metrics)


def run_sweep(spec: dict[str, Any], out_dir: str, address: str | None = None) -> None:
    """Run the sweep an srl_*.yaml declares as Ray Tune trials (one CPU, one torch thread each)."""
    import ray
    from ray import tune

    s = _sweep_spec(spec)
    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        else:
            ray.init(_node_ip_address="127.0.0.2", num_cpus=2, include_dashboard=False)
    param_space: dict[str, Any] = {k: v for k, v in s["set"].items()}
    param_space.update({k: tune.grid_search(v) for k, v in s["grid"].items()})
    param_space["seed"] = tune.grid_search(s["seeds"])
    param_space["_model"], param_space["_smoke"] = s["model"], bool(s["smoke"])
    storage = os.path.abspath(out_dir)
    os.makedirs(storage, exist_ok=True)
    tuner = tune.Tuner(
        tune.with_resources(srl_trainable, {"cpu": 1}),
        param_space=param_space,
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=tune.RunConfig(name=s["name"], storage_path=storage, verbose=0),
    )
    results = tuner.fit()
    rows = []
    for r in results:
        row = {k: v for k, v in (r.config or {}).items() if not k.startswith("_")}
        row.update(r.metrics or {})
        row["error"] = str(r.error) if r.error else ""
        rows.append(row)
    _write_rows(rows, os.path.join(storage, f"{s['name']}_trials.parquet"))
    n_conv = sum(bool(r.get("converged")) for r in rows)
    print(f"srl sweep {s['name']}: {n_conv}/{len(rows)} trials converged", file=sys.stderr, flush=True)


def _write_rows(rows: list[dict[str, Any]], path: str) -> None:
    """One Parquet row per trial (columns: union of keys; missing values null)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = sorted({k for r in rows for k in r})
    cols = {}
    for k in keys:
        vals = [r.get(k) for r in rows]
        if any(isinstance(v, (dict, list)) for v in vals):
            vals = [None if v is None else str(v) for v in vals]
        if any(isinstance(v, str) for v in vals) and not all(isinstance(v, str) or v is None for v in vals):
            vals = [None if v is None else str(v) for v in vals]
        cols[k] = vals
    pq.write_table(pa.table(cols), path)
