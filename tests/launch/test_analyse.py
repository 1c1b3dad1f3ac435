"""`rbc-ray analyse` end to end on Tune: snapshots of a smoke run, best responses as trials, the epsilon
table, curves, plot and verdicts; a resumed analysis keeps its finished trials and equals the
uninterrupted one, and so does one whose driver was killed mid-run and resumed (a second analysis
with the same seeds: the same tables on CPU)."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pandas.testing
import pyarrow.parquet as pq
import pytest
from fault_driver import drive, result_lines

from rbc_ray.equilibrium.epsilon import EPSILON_COLUMNS
from rbc_ray.launch.analyse import run_analysis
from rbc_ray.train import Trainer, load_experiment
from rbc_ray.train.snapshots import list_snapshots, write_snapshot

SMOKE = Path(__file__).resolve().parents[2] / "tune_configs" / "open_rbc_smoke.yaml"
TINY = ["train.n_envs=8", "economy.n_consumers=4", "economy.n_firms=2", "train.episodes_per_iteration=5",
        "train.torch_threads=1"]
BR = ["br.eval_every=10", "br.eval_envs=8", "br.episodes_per_iteration=5"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder with snapshots at episodes 5 and 10, written as `rbc-ray train` writes them."""
    out = tmp_path_factory.mktemp("run")
    trainer = Trainer(load_experiment(SMOKE, TINY)[0])
    for _ in range(2):
        trainer.train_iteration()
        write_snapshot(trainer, out / "snapshots")
    assert list(list_snapshots(out / "snapshots")) == [5, 10]
    return out


def analysis_args(run_dir, out, **more):
    return {"paths": [str(run_dir)], "checkpoints": "mid,end", "types": ["firm"], "br_episodes": 20,
            "eval_episodes": 1, "overrides": BR, "out": str(out), "max_concurrent": 2, **more}


def analyse(run_dir, out, resume=False, intuition=False):
    return run_analysis(**analysis_args(run_dir, out, resume=resume, intuition=intuition))


@pytest.fixture(scope="module")
def analysed(run_dir, tmp_path_factory):
    """An uninterrupted analysis of the run's two profiles."""
    return analyse(run_dir, tmp_path_factory.mktemp("analysis") / "a")


def test_analysis_writes_the_epsilon_table_and_resumes_to_the_same(run_dir, analysed, capsys):
    out = analysed
    rows = pq.read_table(out / "epsilon.parquet").to_pylist()
    assert [(r["profile"], r["type"]) for r in rows] == [(f"{run_dir.name}@5", "firm"), (f"{run_dir.name}@10", "firm")]
    assert set(EPSILON_COLUMNS) <= set(rows[0])
    for r in rows:
        assert r["trials"] == 2 and r["budget"] == 20 and r["n_eval"] == 8 and r["alpha"] == 0.05
        assert r["lcb"] <= r["gain"] and r["se"] >= 0
        assert r["best_init"] in ("warm", "fresh") and r["best_episode"] in (0, 10, 20)
    curves = pq.read_table(out / "curves.parquet").to_pylist()
    assert len(curves) == 2 * 2 * 3  # profiles x inits x evaluations (episodes 0, 10, 20)
    assert (out / "plots" / "epsilon.png").stat().st_size > 0
    verdicts = pq.read_table(out / "verdicts.parquet").to_pylist()
    assert len(verdicts) == 2 and all(v["verdict"] for v in verdicts)
    trials_before = sorted(p.name for p in (out / "tune" / "analyse").iterdir() if p.is_dir())
    again = analyse(run_dir, out, resume=True)
    assert "epsilon >=" in capsys.readouterr().out
    assert pq.read_table(again / "epsilon.parquet").to_pylist() == rows
    assert sorted(p.name for p in (out / "tune" / "analyse").iterdir() if p.is_dir()) == trials_before
    # two profiles: the spectrum places them, with each one's epsilon bound and verdict beside it
    spectrum = pq.read_table(out / "spectrum.parquet").to_pylist()
    assert [s["profile"] for s in spectrum] == [r["profile"] for r in rows]
    assert all(s["group"] >= 1 for s in spectrum) and (out / "spectrum.png").exists()
    assert [s["epsilon_lcb"] for s in spectrum] == [v["epsilon_lcb"] for v in verdicts]


def test_an_analysis_whose_driver_was_killed_resumes_to_the_uninterrupted_result(run_dir, analysed, tmp_path):
    out = tmp_path / "killed"
    kwargs = analysis_args(run_dir, out, max_concurrent=1, intuition=True)
    # killed when one trial has finished and the next has reported twice (episodes 0 and 10 of 20)
    r = drive("analyse", kwargs, fault="driver:1:2")
    assert r.returncode == -signal.SIGKILL, r.stdout[-4000:]
    assert not (out / "epsilon.parquet").exists()
    trial_dirs = sorted(p for p in (out / "tune" / "analyse").iterdir() if (p / "result.json").exists())
    finished = [p for p in trial_dirs if result_lines(p)[-1].get("done_trial") == 1]
    assert len(finished) == 1 and len(trial_dirs) == 2  # the other two trials had not started
    finished_log = (finished[0] / "result.json").read_text()
    r = drive("analyse", {**kwargs, "resume": True}, fault="none")
    assert r.returncode == 0, r.stdout[-4000:]
    assert (finished[0] / "result.json").read_text() == finished_log  # not run again
    (resumed,) = [p for p in trial_dirs if p != finished[0]]
    assert len([p for p in (out / "tune" / "analyse").iterdir() if (p / "result.json").exists()]) == 4
    lines = result_lines(resumed)
    restarts = [i for i, x in enumerate(lines) if x["iterations_since_restore"] == 1]
    assert len(restarts) == 2
    assert lines[restarts[1]]["episode"] > 0  # continued after a checkpoint's evaluation, not from episode 0
    for table in ("epsilon.parquet", "curves.parquet", "verdicts.parquet"):  # NaN equals NaN here
        pandas.testing.assert_frame_equal(pq.read_table(out / table).to_pandas(),
                                          pq.read_table(analysed / table).to_pandas())
    for profile in (f"{run_dir.name}@5", f"{run_dir.name}@10"):
        assert (out / "intuition" / profile / "intuition.parquet").exists()


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "rbc_ray.cli", "analyse", *args], capture_output=True,
                              text=True, timeout=120)

    r = cli(str(tmp_path / "missing"))
    assert r.returncode == 2 and "is not a folder" in r.stderr and "Traceback" not in r.stderr
    r = cli(str(tmp_path))
    assert r.returncode == 2 and "no policy snapshots" in r.stderr
    r = cli(str(tmp_path), "--set", "br.episodez=3")
    assert r.returncode == 2 and "did you mean 'episodes'" in r.stderr
