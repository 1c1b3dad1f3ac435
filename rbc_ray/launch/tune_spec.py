"""The `tune:` section of an experiment YAML, the same for RBC and SRL sweeps, and the summary table.

    tune:
      grid: {economy.p_export: [500, 1000]}   # any dotted config key -> a list of values
      seeds: [0, 1, 2]                        # one trial per seed and grid point
      max_concurrent: 2                       # trials at once (default: as many as fit)
      metric: reward_firm, mode: max          # what PBT ranks by (RBC only)
      pbt: {perturbation_interval: 10, mutations: {policies.firm.lr: [1e-4, 1e-3]}}   # RBC only

A sweep writes OUT/summary.parquet: one row per trial, its swept values as `set.KEY` (JSON text)
and its last numeric metrics.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from ray import tune

from ..config import ConfigError, unknown_key
from ..results import write_rows

TUNE_KEYS = ("grid", "seeds", "max_concurrent", "metric", "mode", "pbt")


def check_tune_spec(spec: Any, seed_key: str) -> dict[str, Any]:
    """The validated `tune:` section; its seeds become the grid axis `seed_key` (train.seed, srl.seed)."""
    if spec is None:
        return {"grid": {}}
    if not isinstance(spec, dict):
        raise ConfigError(f"tune must be a mapping of {list(TUNE_KEYS)}, got {spec!r}")
    for key in spec:
        if key not in TUNE_KEYS:
            raise ConfigError(unknown_key(f"tune.{key}", str(key), TUNE_KEYS, "keys of tune"))
    grid = spec.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"tune.grid must map dotted keys to lists of values, got {grid!r}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"tune.grid.{key}: must be a non-empty list of values")
    grid = dict(grid)
    seeds = spec.get("seeds")
    if seeds is not None:
        if not isinstance(seeds, list) or not seeds or any(isinstance(s, bool) or not isinstance(s, int)
                                                           for s in seeds):
            raise ConfigError(f"tune.seeds: must be a non-empty list of ints, got {seeds!r}")
        grid[seed_key] = seeds
    max_concurrent = spec.get("max_concurrent")
    if max_concurrent is not None and (isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int)
                                       or max_concurrent < 1):
        raise ConfigError(f"tune.max_concurrent: must be a positive int, got {max_concurrent!r}")
    return {**spec, "grid": grid}


def grid_space(spec: dict[str, Any]) -> dict[str, Any]:
    """Tune param-space entries (grid_search per axis) of a checked `tune:` section."""
    return {key: tune.grid_search(values) for key, values in spec["grid"].items()}


def grid_points(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the grid's axes (seeds included) as {dotted key: value}."""
    keys = list(spec["grid"])
    return [dict(zip(keys, combo)) for combo in itertools.product(*(spec["grid"][k] for k in keys))]


def write_summary(grid, out_dir: Path) -> Path:
    """OUT/summary.parquet: one row per trial, its swept values and last numeric metrics."""
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        row = {"trial_id": metrics.get("trial_id", ""), "error": str(result.error or ""),
               "node_ip": metrics.get("node_ip", "")}
        row.update({f"set.{k}": json.dumps(v) for k, v in (result.config or {}).get("set", {}).items()})
        row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k not in row})
        rows.append(row)
    return write_rows(rows, out_dir / "summary.parquet")
