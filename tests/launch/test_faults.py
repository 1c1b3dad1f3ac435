"""Faults in a real Ray run (each through tests/launch/fault_driver.py, in its own process):

- a trial whose worker process is killed mid-run restarts from its last checkpoint (--max-failures)
  and finishes; its metrics.parquet holds every iteration once, in order, and its final networks
  equal those of an uninterrupted run of the same seed;
- a sweep whose driver is killed mid-run continues with --resume: the trial that had finished is not
  run again, the one that was running continues from its checkpoint, and both end with the networks
  of uninterrupted runs.
"""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from fault_driver import drive, result_lines
from rbc_ray.train import Trainer, load_experiment
from rbc_ray.train.snapshots import list_snapshots, load_snapshot

SMOKE = Path(__file__).resolve().parents[2] / "tune_configs" / "open_rbc_smoke.yaml"
# 20 iterations of 5 episodes; Tune checkpoints every 10 iterations (launch/train.py)
TINY = ["train.n_envs=4", "economy.n_consumers=4", "economy.n_firms=2", "train.episodes_per_iteration=5",
        "train.total_episodes=100", "train.torch_threads=1"]
ITERATIONS = 20


def uninterrupted_policies(overrides: list[str]) -> dict:
    trainer = Trainer(load_experiment(SMOKE, overrides)[0])
    for _ in range(ITERATIONS):
        trainer.train_iteration()
    return {kind: net.state_dict() for kind, net in trainer.policies.items()}


def assert_same_networks(snapshot_dir: Path, expected: dict) -> None:
    snaps = list_snapshots(snapshot_dir)
    final = load_snapshot(snaps[max(snaps)])
    assert final["iteration"] == ITERATIONS
    for kind, state in expected.items():
        for key, value in state.items():
            assert torch.equal(final["policies"][kind][key], value), (kind, key)


def test_a_trial_whose_worker_is_killed_restarts_from_its_checkpoint_and_finishes(tmp_path):
    out = tmp_path / "run"
    r = drive("train", {"config_path": str(SMOKE), "overrides": TINY, "out": str(out), "address": None,
                        "max_failures": 1}, fault="worker:15")
    assert r.returncode == 0, r.stdout[-4000:]
    (trial_dir,) = [p for p in (out / "tune" / "open_rbc_smoke").iterdir() if (p / "result.json").exists()]
    lines = result_lines(trial_dir)
    # killed after reporting iteration 15; restarted from the checkpoint of iteration 10
    assert [x["training_iteration"] for x in lines if x["iterations_since_restore"] == 1] == [1, 11]
    metrics = pq.read_table(out / "metrics.parquet").to_pylist()
    assert [m["iteration"] for m in metrics] == list(range(1, ITERATIONS + 1))
    assert_same_networks(out / "snapshots", uninterrupted_policies(TINY + ["train.seed=0"]))


def test_a_sweep_resumes_after_its_driver_is_killed(tmp_path):
    config = yaml.safe_load(SMOKE.read_text())
    config["tune"] = {"seeds": [0, 1], "max_concurrent": 1}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "sweep"
    kwargs = {"config_path": str(path), "overrides": TINY, "out": str(out), "address": None}
    # killed when one trial has finished and the other has reported 15 of its 20 iterations
    r = drive("sweep", kwargs, fault="driver:1:15")
    assert r.returncode == -signal.SIGKILL, r.stdout[-4000:]
    assert (out / "killed.txt").exists() and not (out / "summary.parquet").exists()
    trial_dirs = sorted(p for p in (out / "tune" / "open_rbc_smoke").iterdir() if (p / "result.json").exists())
    finished = [p for p in trial_dirs if result_lines(p)[-1].get("done")]
    assert len(trial_dirs) == 2 and len(finished) == 1
    finished_log = (finished[0] / "result.json").read_text()

    r = drive("sweep", {**kwargs, "resume": True}, fault="none")
    assert r.returncode == 0, r.stdout[-4000:]
    assert (finished[0] / "result.json").read_text() == finished_log  # not run again
    (resumed,) = [p for p in trial_dirs if p != finished[0]]
    starts = [x["training_iteration"] for x in result_lines(resumed) if x["iterations_since_restore"] == 1]
    assert starts == [1, 11]  # continued from its checkpoint of iteration 10
    summary = pq.read_table(out / "summary.parquet").to_pylist()
    assert sorted(json.loads(row["set.train.seed"]) for row in summary) == [0, 1]
    for row in summary:
        seed = json.loads(row["set.train.seed"])
        trial = out / "trials" / row["trial_id"]
        metrics = pq.read_table(trial / "metrics.parquet").to_pylist()
        assert [m["iteration"] for m in metrics] == list(range(1, ITERATIONS + 1))
        assert_same_networks(trial / "snapshots", uninterrupted_policies(TINY + [f"train.seed={seed}"]))


@pytest.mark.parametrize("command", ["sweep", "analyse"])
def test_resume_without_a_previous_run_names_the_folder(tmp_path, command):
    args = [str(SMOKE)] if command == "sweep" else [str(tmp_path)]
    r = subprocess.run([sys.executable, "-m", "rbc_ray.cli", command, *args, "--out", str(tmp_path / "none"),
                        "--resume"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--resume" in r.stderr and "none" in r.stderr
