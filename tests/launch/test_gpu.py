"""GPUs for Ray trials and workers (launch/resources.py). On CPU: the resource requests carry
`--gpus-per-trial`, the device and the flag must agree, and asking for a GPU this machine lacks is
one line and exit 2 before Ray starts. With CUDA (skipped without): two NCCL data-parallel workers,
in processes and on Ray Train, keep identical networks, and sweep trials share one GPU."""

from pathlib import Path

import pytest
import torch

from rbc_ray.cli import main
from rbc_ray.config import ConfigError
from rbc_ray.equilibrium import BestResponseConfig
from rbc_ray.equilibrium.profile import Profile, best_response_experiment
from rbc_ray.launch.analyse import analysis_trainable
from rbc_ray.launch.ray_train import run_ray_train
from rbc_ray.launch.resources import trial_gpus
from rbc_ray.launch.train import trainable
from rbc_ray.train import load_experiment

SMOKE = str(Path(__file__).resolve().parents[2] / "tune_configs" / "open_rbc_smoke.yaml")
TINY = ["train.n_envs=4", "train.episodes_per_iteration=2", "train.torch_threads=1",
        "economy.n_consumers=3", "economy.n_firms=2", "curriculum.firm_start=0",
        "curriculum.government_start=1"]
HAS_CUDA = torch.cuda.is_available()
TWO_GPUS = HAS_CUDA and torch.cuda.device_count() >= 2


def test_trials_request_the_gpu_share():
    assert trainable(2, 0.25).default_resource_request({}).required_resources == {"CPU": 2.0, "GPU": 0.25}
    assert trainable(1).default_resource_request({}).required_resources == {"CPU": 1.0}
    assert analysis_trainable(0.5)._resources.required_resources == {"CPU": 1.0, "GPU": 0.5}
    assert analysis_trainable(0.0)._resources.required_resources == {"CPU": 1.0}


def test_the_gpu_share_follows_the_device_and_must_agree_with_it():
    assert trial_gpus("cpu", None, "train.device") == 0.0
    assert trial_gpus("cuda", None, "train.device") == 1.0
    assert trial_gpus("cuda", 0.25, "br.device") == 0.25
    assert trial_gpus("cuda", 2, "br.device") == 2.0
    with pytest.raises(ConfigError, match="add --set train.device=cuda"):
        trial_gpus("cpu", 0.5, "train.device")
    with pytest.raises(ConfigError, match="br.device=cuda needs a GPU share"):
        trial_gpus("cuda", 0, "br.device")
    with pytest.raises(ConfigError, match="a fraction in"):
        trial_gpus("cuda", 1.5, "train.device")
    with pytest.raises(ConfigError, match="use train.device=cuda"):
        trial_gpus("cuda:1", None, "train.device")


def test_best_responses_run_on_br_device():
    cfg = load_experiment(SMOKE, TINY)[0]
    profile = Profile(run="r", episode=0, config=cfg, policies={})
    assert best_response_experiment(profile, "firm", BestResponseConfig(), 0).train.device == "cpu"
    on_gpu = best_response_experiment(profile, "firm", BestResponseConfig(device="cuda"), 0)
    assert on_gpu.train.device == "cuda" and tuple(on_gpu.train.frozen) == ("consumer", "government")
    with pytest.raises(ConfigError, match="br.device"):
        BestResponseConfig(device="tpu")


def test_use_gpu_must_match_the_device(tmp_path):
    cfg = load_experiment(SMOKE, TINY)[0]
    with pytest.raises(ValueError, match="use_gpu=True with train.device=cpu"):
        run_ray_train(cfg, 2, 1, str(tmp_path), use_gpu=True)


@pytest.mark.skipif(HAS_CUDA, reason="checks the error a machine without CUDA gives")
@pytest.mark.parametrize("argv, says", [
    (["sweep", SMOKE, "--set", "train.device=cuda", "--gpus-per-trial", "0.25"],
     "--gpus-per-trial 0.25 needs a CUDA GPU"),
    (["sweep", SMOKE, "--set", "train.device=cuda"], "train.device=cuda needs a CUDA GPU"),
    (["train", SMOKE, "--set", "train.device=cuda"], "train.device=cuda needs a CUDA GPU"),
    (["train", SMOKE, "--workers", "2", "--set", "train.device=cuda"], "one GPU per worker) needs a CUDA GPU"),
    (["analyse", ".", "--set", "br.device=cuda", "--gpus-per-trial", "0.5"], "--gpus-per-trial 0.5 needs a CUDA GPU"),
])
def test_a_gpu_request_without_cuda_is_one_line_and_exit_2(argv, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, but if it were, not into the repo
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())  # refused before any results folder


@pytest.mark.parametrize("argv, says", [
    (["sweep", SMOKE, "--gpus-per-trial", "0.25"], "add --set train.device=cuda"),
    (["analyse", ".", "--gpus-per-trial", "0.25"], "add --set br.device=cuda"),
    (["sweep", SMOKE, "--set", "train.device=cuda:1"], "use train.device=cuda"),
    (["train", SMOKE, "--workers", "2", "--set", "train.device=cuda:0"], "use train.device=cuda"),
])
def test_a_gpu_share_that_disagrees_with_the_device_is_exit_2(argv, says, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1, err


# ----------------------------------------------------------------------------------- with CUDA
@pytest.mark.skipif(not TWO_GPUS, reason="needs 2 CUDA GPUs")
def test_two_nccl_worker_processes_keep_identical_networks():
    from rbc_ray.train.distributed import run_local

    cfg = load_experiment(SMOKE, TINY + ["train.device=cuda"])[0]
    results = run_local(cfg, num_workers=2, iterations=2)
    assert [r["metrics"][-1]["iteration"] for r in results] == [2, 2]
    assert results[0]["metrics"][-1]["reward_consumer"] != results[1]["metrics"][-1]["reward_consumer"]  # own envs
    for kind, params in results[0]["policies"].items():
        for name, value in params.items():
            assert torch.equal(results[1]["policies"][kind][name], value), (kind, name)


@pytest.mark.skipif(not TWO_GPUS, reason="needs 2 CUDA GPUs")
def test_two_ray_train_gpu_workers_keep_identical_networks(tmp_path, local_gpu_ray):
    cfg = load_experiment(SMOKE, TINY + ["train.device=cuda"])[0]
    result = run_ray_train(cfg, num_workers=2, iterations=2, storage_path=str(tmp_path), use_gpu=True)
    assert result.error is None, result.error
    with result.checkpoint.as_directory() as d:
        states = [torch.load(Path(d) / f"trainer_rank{r}.pt", map_location="cpu", weights_only=False)
                  for r in range(2)]
    assert states[0]["config"]["train"]["device"] == "cuda"  # the config keeps plain cuda
    for kind, params in states[0]["policies"].items():
        for name, value in params.items():
            assert torch.equal(states[1]["policies"][kind][name], value), (kind, name)


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_sweep_trials_share_one_gpu(tmp_path, local_gpu_ray):
    import pyarrow.parquet as pq

    from rbc_ray.launch.sweep import run_sweep

    out = run_sweep(SMOKE, TINY + ["train.device=cuda", "train.total_episodes=4"], str(tmp_path / "s"), None,
                    gpus_per_trial=0.5)
    rows = pq.read_table(out / "summary.parquet").to_pylist()
    assert len(rows) == 2 and all(r["error"] == "" for r in rows)


@pytest.fixture
def local_gpu_ray():
    """A local Ray that sees this machine's GPUs (loopback only), shut down if this test started it."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(_node_ip_address="127.0.0.2", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()
