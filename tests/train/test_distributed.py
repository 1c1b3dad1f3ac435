"""Data-parallel PPO (rbc_ray.train.distributed): two gloo worker processes against an oracle that
runs the same two workers as threads in one process and averages their gradients by hand."""

import threading
from pathlib import Path

import pytest
import torch

from rbc_ray.train import Trainer, load_experiment
from rbc_ray.train.distributed import SEED_STRIDE, data_parallel_trainer, run_local, worker_config

SMOKE = Path(__file__).resolve().parents[2] / "tune_configs" / "open_rbc_smoke.yaml"
TINY = ["train.n_envs=4", "train.episodes_per_iteration=2", "train.torch_threads=1",
        "economy.n_consumers=3", "economy.n_firms=2", "curriculum.firm_start=0",
        "curriculum.government_start=1"]
ITERATIONS = 2


def threaded_oracle(cfg, world: int, iterations: int) -> list[Trainer]:
    """`world` Trainers (worker configs), rank 0's initial networks copied to all, trained in threads
    whose grad_sync waits for every thread and replaces each gradient by the plain mean."""
    trainers = []
    barrier = threading.Barrier(world)
    grads: dict[int, list[torch.Tensor]] = {}

    def sync_for(rank):
        def sync(kind, module):
            grads[rank] = [p.grad.clone() for p in module.parameters()]
            barrier.wait()
            mean = [sum(grads[r][i] for r in range(world)) / world for i in range(len(grads[rank]))]
            barrier.wait()
            for p, g in zip(module.parameters(), mean):
                p.grad.copy_(g)
        return sync

    for rank in range(world):
        trainers.append(Trainer(worker_config(cfg, rank), grad_sync=sync_for(rank)))
    for t in trainers[1:]:
        for kind, net in t.policies.items():
            net.load_state_dict(trainers[0].policies[kind].state_dict())
    errors = []

    def run(t):
        try:
            for _ in range(iterations):
                t.train_iteration()
        except BaseException as err:  # surface failures of the worker threads in the test
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(t,)) for t in trainers]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    return trainers


def test_worker_config_offsets_only_the_seed():
    cfg = load_experiment(SMOKE, TINY)[0]
    w1 = worker_config(cfg, 1)
    assert w1.train.seed == cfg.train.seed + SEED_STRIDE
    a, b = cfg.to_dict(), w1.to_dict()
    a["train"].pop("seed"), b["train"].pop("seed")
    assert a == b
    with pytest.raises(ValueError, match="rank"):
        worker_config(cfg, -1)


def test_two_gloo_workers_equal_the_gradient_averaging_oracle():
    cfg = load_experiment(SMOKE, TINY)[0]
    results = run_local(cfg, num_workers=2, iterations=ITERATIONS)
    assert [r["rank"] for r in results] == [0, 1]
    # each worker stepped its own envs: different rewards in the same iteration
    assert results[0]["metrics"][0]["reward_consumer"] != results[1]["metrics"][0]["reward_consumer"]
    oracle = threaded_oracle(cfg, 2, ITERATIONS)
    init = Trainer(worker_config(cfg, 0))  # rank 0's initial networks
    for kind in ("consumer", "firm", "government"):
        p0, p1 = results[0]["policies"][kind], results[1]["policies"][kind]
        ref = oracle[0].policies[kind].state_dict()
        start = init.policies[kind].state_dict()
        for name in ref:
            # the workers stay identical, moved from the start, and equal the oracle's update
            assert torch.equal(p0[name], p1[name]), (kind, name)
            torch.testing.assert_close(p0[name], ref[name], rtol=1e-5, atol=1e-6)
        assert any(not torch.equal(p0[n], start[n]) for n in ref), kind
    # the oracle itself depends on the averaging: one worker alone ends elsewhere
    alone = Trainer(worker_config(cfg, 0))
    for _ in range(ITERATIONS):
        alone.train_iteration()
    solo, averaged = alone.policies["consumer"].state_dict(), oracle[0].policies["consumer"].state_dict()
    assert any(not torch.allclose(solo[n], averaged[n], atol=1e-6) for n in averaged)


def test_bad_sizes_and_a_missing_process_group_are_clear_errors():
    cfg = load_experiment(SMOKE, TINY)[0]
    with pytest.raises(ValueError, match="num_workers"):
        run_local(cfg, num_workers=0, iterations=1)
    with pytest.raises(ValueError, match="iterations"):
        run_local(cfg, num_workers=1, iterations=0)
    with pytest.raises(RuntimeError, match="torch.distributed"):  # no process group in this process
        data_parallel_trainer(cfg)


def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path):
    """Checkpoint after 1 iteration, resume to 3: the same networks, bit for bit, and the same
    metrics as 3 iterations without a stop (each worker's RNG streams and Adam state travel)."""
    cfg = load_experiment(SMOKE, TINY)[0]
    straight = run_local(cfg, num_workers=2, iterations=3)
    first = run_local(cfg, num_workers=2, iterations=1, checkpoint_dir=str(tmp_path / "ckpt"))
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "metrics.parquet", "policies.pt", "trainer_rank0.pt", "trainer_rank1.pt"]
    resumed = run_local(cfg, num_workers=2, iterations=3, resume_from=str(tmp_path / "ckpt"))
    assert [m["iteration"] for m in resumed[0]["metrics"]] == [1, 2, 3]  # the restored row comes first
    assert [m["iteration"] for m in resumed[1]["metrics"]] == [2, 3]
    assert resumed[0]["metrics"][0]["reward_consumer"] == first[0]["metrics"][0]["reward_consumer"]
    for rank in (0, 1):
        for a, b in zip(straight[rank]["metrics"][-2:], resumed[rank]["metrics"][-2:]):
            assert a["reward_consumer"] == b["reward_consumer"] and a["reward_firm"] == b["reward_firm"]
        for kind, params in straight[rank]["policies"].items():
            for name, value in params.items():
                assert torch.equal(resumed[rank]["policies"][kind][name], value), (rank, kind, name)
    # and the stop mattered: after 1 iteration the networks were elsewhere
    assert any(not torch.equal(first[0]["policies"]["consumer"][n], v)
               for n, v in straight[0]["policies"]["consumer"].items())


def test_resuming_with_another_worker_count_is_a_clear_error(tmp_path):
    cfg = load_experiment(SMOKE, TINY)[0]
    with pytest.raises(ValueError, match="does not exist"):
        run_local(cfg, num_workers=2, iterations=2, resume_from=str(tmp_path / "nothing"))
    run_local(cfg, num_workers=2, iterations=1, checkpoint_dir=str(tmp_path / "ckpt"))
    with pytest.raises(ValueError, match="written by 2 data-parallel workers"):
        run_local(cfg, num_workers=3, iterations=2, resume_from=str(tmp_path / "ckpt"))
