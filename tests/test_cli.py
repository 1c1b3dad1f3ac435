"""The `rbc-ray` command as a user runs it: errors exit 2 naming the problem; train, sweep, bench."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "tune_configs" / "open_rbc_smoke.yaml")


def rbc_ray(*args, timeout=600):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "rbc_ray.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def test_unknown_override_key_is_named_and_exits_2():
    r = rbc_ray("train", SMOKE, "--set", "train.no_such_key=3")
    assert r.returncode == 2, r.stderr
    assert "train.no_such_key" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_override_value_is_named():
    r = rbc_ray("train", SMOKE, "--set", "economy.n_firms=-2")
    assert r.returncode == 2, r.stderr
    assert "n_firms" in r.stderr and "Traceback" not in r.stderr


def test_missing_experiment_file():
    r = rbc_ray("train", "tune_configs/does_not_exist.yaml")
    assert r.returncode == 2
    assert "does_not_exist.yaml" in r.stderr


def test_bench_env_json_tiny():
    from rbc_ray.economy import fused

    r = rbc_ray("bench", "env", "--json", "--quick", "--compile", "off", "--envs", "4")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    backends = ["fused", "torch"] if fused.available() else ["torch"]
    assert [case["backend"] for case in out["cases"]] == backends
    for case in out["cases"]:
        assert case["n_envs"] == 4 and case["n_consumers"] == 100 and case["n_firms"] == 10
        assert case["agents"] == 111 and case["device"] == "cpu" and case["compiled"] is False
        assert case["agent_steps_per_s"] > 0 and case["speedup_vs_reference_loop"] > 0
        assert case["speedup_vs_rllib_env"] > 0 and case["speedup_vs_torch_eager_step"] > 0
    assert out["hardware"]["torch"]


def test_train_writes_metrics_plots_checkpoint_and_config(tmp_path):
    out = tmp_path / "run"
    r = rbc_ray("train", SMOKE, "--out", str(out), "--set", "train.seed=3", "--set", "train.snapshot_every=25")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"results go to {out}" in r.stdout
    assert "agent-steps/s" in r.stdout  # the live progress lines
    from rbc_ray.results import load

    table = load(out)
    assert table.num_rows >= 1
    for col in ("iteration", "episodes", "agent_steps_per_s", "reward_consumer", "reward_firm",
                "reward_government", "mean_price", "mean_wage"):
        assert col in table.column_names
    assert table.column("iteration").to_pylist() == list(range(1, table.num_rows + 1))
    assert (out / "plots" / "training.png").exists()
    assert (out / "config.yaml").read_text().count("seed: 3") == 1
    ckpts = list((out / "tune").rglob("trainer.pt"))
    assert ckpts, "a checkpoint with the trainer state is written at the end"
    # policy-only snapshots every 25 episodes (iterations of 10 cross 25 at 30 and 50) and at the end (60)
    from rbc_ray.equilibrium import load_profile
    from rbc_ray.train.snapshots import list_snapshots

    snaps = list_snapshots(out / "snapshots")
    assert list(snaps) == [30, 50, 60]
    profile = load_profile(snaps[60])
    assert profile.episode == 60 and profile.config.train.seed == 3 and set(profile.policies) == {
        "consumer", "firm", "government"}


def test_pbt_sweep_mutates_learning_rate_and_entropy(tmp_path):
    """Population Based Training over two seeds runs to the end with the mutable keys in every trial."""
    import yaml

    raw = yaml.safe_load(open(SMOKE))
    raw["tune"] = {"seeds": [0, 1], "metric": "reward_consumer", "mode": "max", "max_concurrent": 2,
                   "pbt": {"perturbation_interval": 2,
                           "mutations": {"policies.consumer.lr": [1.0e-3, 3.0e-3, 1.0e-2],
                                         "curriculum.entropy_start": [0.01, 0.05, 0.1]}}}
    path = tmp_path / "pbt.yaml"
    path.write_text(yaml.safe_dump(raw))
    r = rbc_ray("sweep", str(path), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "out" / "summary.parquet").to_pylist()
    assert len(rows) == 2 and all(row["error"] == "" for row in rows)
    assert all(row["episodes"] == 60 for row in rows)
    for row in rows:  # every trial carries the mutated keys, with values from the lists
        assert float(row["set.policies.consumer.lr"]) in (1.0e-3, 3.0e-3, 1.0e-2)
        assert float(row["set.curriculum.entropy_start"]) in (0.01, 0.05, 0.1)


def test_pbt_mutation_of_unknown_key_is_named(tmp_path):
    import yaml

    raw = yaml.safe_load(open(SMOKE))
    raw["tune"] = {"seeds": [0, 1], "pbt": {"mutations": {"policies.consumer.lrr": [1e-3]}}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    r = rbc_ray("sweep", str(path), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert "policies.consumer.lrr" in r.stderr and "Traceback" not in r.stderr


def test_diverged_training_exits_1_with_the_diagnosis_in_one_line(tmp_path):
    # firm rewards x 1e38 overflow float32: the trainer stops at once, naming the type and quantity
    r = rbc_ray("train", SMOKE, "--out", str(tmp_path / "div"), "--set", "policies.firm.reward_scale=1e-38",
                "--set", "curriculum.firm_start=0")
    assert r.returncode == 1, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("rbc-ray train: training failed: TrainingDivergedError: firm ")
    assert "nan" in last and "error.txt" in last
    assert "rbc_ray/cli.py" not in r.stderr  # no driver-side traceback (Tune logs the trial's own)


def test_bad_worker_counts_exit_2_naming_the_flag():
    r = rbc_ray("train", SMOKE, "--workers", "0")
    assert r.returncode == 2 and "--workers" in r.stderr and "Traceback" not in r.stderr
    r = rbc_ray("train", SMOKE, "--workers", "2", "--resume")  # which run? --out names it
    assert r.returncode == 2 and "--resume needs --out" in r.stderr and "Traceback" not in r.stderr
    for command in ("train", "sweep"):
        r = rbc_ray(command, SMOKE, "--max-failures", "-1")
        assert r.returncode == 2 and "--max-failures must be >= 0" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_train_with_two_data_parallel_workers_writes_results(tmp_path):
    import pyarrow.parquet as pq
    import torch

    out = tmp_path / "dp"
    r = rbc_ray("train", SMOKE, "--workers", "2", "--out", str(out), "--set", "train.total_episodes=30")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = pq.read_table(out / "metrics.parquet").to_pydict()
    assert table["iteration"] == [1.0, 2.0, 3.0]  # 30 episodes, 10 per iteration
    assert set(table["workers"]) == {2}
    nets = torch.load(out / "policies.pt", weights_only=False)["policies"]
    assert set(nets) == {"consumer", "firm", "government"}
    assert (out / "plots" / "training.png").exists() and (out / "config.yaml").exists()
    # one progress line per iteration (Ray Train's print patch used to echo each one twice), and
    # none of Train's State-API warnings (no dashboard here) or per-report metric dumps
    log = r.stdout + r.stderr
    for it in (1, 2, 3):
        assert len(re.findall(rf"iter +{it} +episodes", log)) == 1, log[-3000:]
    assert "Failed to query Ray Train Controller" not in log and "Reporting training result" not in log
    # the same --out again: refused without --resume; with it, the run continues from its checkpoint
    config_before = (out / "config.yaml").read_text()
    r = rbc_ray("train", SMOKE, "--workers", "2", "--out", str(out), "--set", "train.total_episodes=40")
    assert r.returncode == 2 and "--resume" in r.stderr and "Traceback" not in r.stderr
    assert (out / "config.yaml").read_text() == config_before  # the old run's config is left alone
    r = rbc_ray("train", SMOKE, "--workers", "2", "--out", str(out), "--resume", "--set", "train.total_episodes=50")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "resuming checkpoint_" in r.stdout
    assert not re.search(r"iter +3 +episodes", r.stdout + r.stderr)  # iterations 1-3 are not run again
    table = pq.read_table(out / "metrics.parquet").to_pydict()
    assert table["iteration"] == [1.0, 2.0, 3.0, 4.0, 5.0]
