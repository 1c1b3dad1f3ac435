"""A trial that asks for more CPUs or GPUs than the Ray cluster has fails at once, in one line, instead
of waiting forever: train, sweep and data-parallel runs on the tests' embedded local Ray (2 CPUs), and
`rbc-ray train` on its own embedded Ray."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rbc_ray.launch.resources import check_resources
from rbc_ray.launch.sweep import run_sweep
from rbc_ray.launch.train import run_train, run_train_data_parallel

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "tune_configs" / "open_rbc_smoke.yaml")


def cpus(ray) -> int:
    return int(ray.cluster_resources().get("CPU", 0))


def test_train_and_sweep_asking_for_more_cpus_than_the_cluster_fail_at_once(local_ray, tmp_path):
    too_many = f"train.torch_threads={cpus(local_ray) + 1}"
    start = time.monotonic()
    with pytest.raises(ValueError, match=rf"the training trial needs {cpus(local_ray) + 1} CPUs \(the Ray cluster "
                                         rf"has {cpus(local_ray)}\).*train.torch_threads"):
        run_train(SMOKE, [too_many], str(tmp_path / "train"), None)
    with pytest.raises(ValueError, match=r"a sweep trial needs .* CPUs"):
        run_sweep(SMOKE, [too_many], str(tmp_path / "sweep"), None)
    with pytest.raises(ValueError, match=r"data-parallel training on 2 workers needs .* CPUs.*--workers"):
        run_train_data_parallel(SMOKE, [f"train.torch_threads={cpus(local_ray)}"], str(tmp_path / "dp"), None,
                                workers=2)
    assert time.monotonic() - start < 60
    assert not (tmp_path / "train" / "tune").exists()  # Tune never started a trial


def test_a_gpu_trial_on_a_cluster_without_gpus_fails_at_once(local_ray, tmp_path):
    if local_ray.cluster_resources().get("GPU", 0) >= 1:
        pytest.skip("this Ray has a GPU")
    # without CUDA on this machine the device check answers before Ray is asked (launch/resources.py)
    with pytest.raises(ValueError, match=r"train.device=cuda needs a CUDA GPU and this machine has none"):
        run_train(SMOKE, ["train.device=cuda"], str(tmp_path / "gpu"), None)
    with pytest.raises(ValueError, match=r"a sweep trial needs 1 GPU \(the Ray cluster has 0\).*train.device=cpu"):
        check_resources({"CPU": 1, "GPU": 1}, "a sweep trial", "lower train.torch_threads (one CPU per torch "
                        "thread), or train.device=cpu where the cluster has no GPU")


def test_on_a_joined_cluster_it_is_a_warning(local_ray, capsys):
    check_resources({"CPU": 10_000}, "a trial", "add nodes", address="auto")
    assert "rbc-ray: warning: a trial needs 10000 CPUs" in capsys.readouterr().err
    check_resources({"CPU": 1, "GPU": 0}, "a trial", "-")  # fits: silent
    with pytest.raises(ValueError, match="needs 10000 CPUs"):
        check_resources({"cpu": 10_000}, "a trial", "add nodes")


def test_the_cli_says_so_in_one_line_exit_2(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_DEDUP_LOGS="0")
    r = subprocess.run([sys.executable, "-m", "rbc_ray.cli", "train", SMOKE, "--out", str(tmp_path / "run"),
                        "--set", f"train.torch_threads={(os.cpu_count() or 1) + 1}"], capture_output=True, text=True,
                       timeout=300, cwd=ROOT, env=env)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert last.startswith("rbc-ray train: error: the training trial needs") and "train.torch_threads" in last
