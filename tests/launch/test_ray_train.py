"""Ray Train's data-parallel workers (rbc_ray.launch.ray_train) against the gloo processes of
rbc_ray.train.distributed, bit for bit (slow: about 40 s each, mostly Ray Train start-up)."""

from pathlib import Path

import pytest
import torch

from rbc_ray.launch.ray_train import run_ray_train
from rbc_ray.train import load_experiment
from rbc_ray.train.distributed import run_local

SMOKE = Path(__file__).resolve().parents[2] / "tune_configs" / "open_rbc_smoke.yaml"
TINY = ["train.n_envs=4", "train.episodes_per_iteration=2", "train.torch_threads=1",
        "economy.n_consumers=3", "economy.n_firms=2", "curriculum.firm_start=0",
        "curriculum.government_start=1"]
ITERATIONS = 2


@pytest.mark.slow
def test_ray_train_workers_equal_the_gloo_processes(tmp_path):
    import ray

    cfg = load_experiment(SMOKE, TINY)[0]
    local = run_local(cfg, num_workers=2, iterations=ITERATIONS)
    started = not ray.is_initialized()
    if started:
        ray.init(_node_ip_address="127.0.0.2", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_ray_train(cfg, num_workers=2, iterations=ITERATIONS, storage_path=str(tmp_path))
    finally:
        if started:
            ray.shutdown()
    assert result.error is None, result.error
    assert result.metrics["iteration"] == ITERATIONS and result.metrics["workers"] == 2
    assert result.metrics["reward_consumer"] == local[0]["metrics"][-1]["reward_consumer"]
    with result.checkpoint.as_directory() as d:
        saved = torch.load(Path(d) / "policies.pt", weights_only=False)["policies"]
    for kind, params in local[0]["policies"].items():
        for name, value in params.items():
            assert torch.equal(saved[kind][name], value), (kind, name)


@pytest.mark.slow
def test_ray_train_resumes_a_run_exactly(tmp_path):
    """A run stopped after 1 iteration (checkpointing each) and started again under the same name
    and storage continues from Ray Train's checkpoint: its networks equal 3 straight iterations."""
    import ray

    cfg = load_experiment(SMOKE, TINY)[0]
    straight = run_local(cfg, num_workers=2, iterations=3)
    started = not ray.is_initialized()
    if started:
        ray.init(_node_ip_address="127.0.0.2", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        first = run_ray_train(cfg, 2, 1, storage_path=str(tmp_path), name="run", checkpoint_every=1)
        again = run_ray_train(cfg, 2, 3, storage_path=str(tmp_path), name="run", checkpoint_every=1)
    finally:
        if started:
            ray.shutdown()
    assert first.error is None and again.error is None, (first.error, again.error)
    with again.checkpoint.as_directory() as d:
        saved = torch.load(Path(d) / "policies.pt", weights_only=False)["policies"]
        import pyarrow.parquet as pq
        table = pq.read_table(Path(d) / "metrics.parquet").to_pydict()
    assert table["iteration"] == [1.0, 2.0, 3.0]
    # iteration 1 was not trained again: its row is the first run's (its timing is unrepeatable)
    assert table["agent_steps_per_s"][0] == first.metrics["agent_steps_per_s"]
    assert table["agent_steps_per_s"][1] != first.metrics["agent_steps_per_s"]
    assert table["reward_consumer"] == [m["reward_consumer"] for m in straight[0]["metrics"]]
    for kind, params in straight[0]["policies"].items():
        for name, value in params.items():
            assert torch.equal(saved[kind][name], value), (kind, name)
