"""SRL sweeps as Ray Tune trials (rbc_ray.launch.srl): a tiny sweep runs and writes the same
summary.parquet as an RBC sweep; bad keys fail before Ray starts; the old spelling still loads."""

import json
import os

import pyarrow.parquet as pq
import pytest
import yaml

from rbc_ray.config import ConfigError
from rbc_ray.launch.srl import load_srl_sweep, run_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(ROOT, "tune_configs", "srl_smoke.yaml")


def test_tiny_tune_sweep_runs(tmp_path):
    spec = yaml.safe_load(open(SMOKE))
    run_sweep(spec, ["srl.max_epochs=2"], tmp_path, None)
    rows = pq.read_table(tmp_path / "summary.parquet").to_pylist()
    assert len(rows) == 2 and all(r["error"] == "" for r in rows)
    assert sorted(json.loads(r["set.srl.sd_z"]) for r in rows) == [0.0, 0.02]
    assert all(json.loads(r["set.srl.seed"]) == 0 for r in rows)
    assert all(r["epochs"] == 2 for r in rows)  # the --set override reached every trial


def test_sweep_rejects_unknown_keys_before_starting_ray():
    with pytest.raises(ConfigError, match="betta"):
        load_srl_sweep({"srl": {"model": "huggett"}, "tune": {"grid": {"srl.betta": [0.9]}}})
    with pytest.raises(ConfigError, match="beta"):
        load_srl_sweep({"srl": {"model": "huggett"}}, ["srl.beta=1.5"])
    with pytest.raises(ConfigError, match="tune.grid.sd_z"):
        load_srl_sweep({"srl": {"model": "huggett"}, "tune": {"grid": {"sd_z": [0.0]}}})
    with pytest.raises(ConfigError, match="seeds"):
        load_srl_sweep({"srl": {"model": "huggett"}, "tune": {"seeds": 3}})


def test_the_old_spelling_loads_with_a_deprecation_warning():
    old = {"srl": {"model": "ks", "name": "old", "smoke": True, "set": {"n_b": 40},
                   "grid": {"sd_z": [0.0, 0.03]}, "seeds": 2}}
    with pytest.warns(FutureWarning, match="deprecated"):
        name, srl, spec = load_srl_sweep(old)
    assert name == "old" and srl == {"model": "ks", "smoke": True, "n_b": 40}
    assert spec["grid"] == {"srl.sd_z": [0.0, 0.03], "srl.seed": [0, 1]}
