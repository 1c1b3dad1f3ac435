"""Reproducibility on CPU: the same config and seed give bit-identical results, run twice.

- train: tests/train/test_trainer.py::test_same_seed_same_results_different_seed_different (metrics),
  ::test_checkpoint_restore_is_bit_identical (a restored run), and below through the Tune trainable;
- analyse: below, the best responses and the epsilon table of a tiny economy (the full `rbc-ray
  analyse` on Tune: tests/launch/test_analyse.py, a second analysis gives the same table);
- srl: below, the convergence log, the simulated paths and the summary of a small solve (and
  tests/structural/test_reproducible_gradients.py: the same gradient bits on any thread count).
"""

import math
from pathlib import Path

import torch
import yaml

from rbc_ray.equilibrium import BestResponseConfig
from rbc_ray.equilibrium.best_response import best_response, trial_summary
from rbc_ray.equilibrium.epsilon import epsilon_rows
from rbc_ray.equilibrium.profile import Profile
from rbc_ray.launch.trainable import RBCTrainable
from rbc_ray.structural import solve
from rbc_ray.train import Trainer, load_experiment
from rbc_ray.train.snapshots import snapshot

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "tune_configs" / "open_rbc_smoke.yaml"
TINY = ["train.n_envs=4", "economy.n_consumers=3", "economy.n_firms=2", "train.episodes_per_iteration=5",
        "train.torch_threads=1", "curriculum.firm_start=0"]
TIMING = {"time_s", "agent_steps_per_s", "env_steps_per_s", "time_this_iter_s", "time_total_s", "timestamp",
          "date", "pid", "hostname", "node_ip", "trial_id", "experiment_id", "time_since_restore", "seconds"}


def same(a, b) -> bool:
    """Deep equality, NaN equal to NaN, ignoring keys that are clocks or process ids."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) - TIMING
        return keys == set(b) - TIMING and all(same(a[k], b[k]) for k in keys)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def test_train_trials_are_bit_identical():
    raw = yaml.safe_load(SMOKE.read_text())
    raw.pop("tune")

    def run():
        trial = RBCTrainable(config={"experiment": raw, "overrides": TINY, "torch_threads": 1})
        rows = [trial.train() for _ in range(2)]
        nets = {k: {n: v.clone() for n, v in net.state_dict().items()} for k, net in trial.trainer.policies.items()}
        trial.stop()
        return rows, nets

    (rows_a, nets_a), (rows_b, nets_b) = run(), run()
    assert same(rows_a, rows_b)
    assert all(torch.equal(nets_a[k][n], nets_b[k][n]) for k in nets_a for n in nets_a[k])


def test_analyse_best_responses_and_epsilon_table_are_bit_identical():
    cfg = load_experiment(SMOKE, TINY)[0]
    trainer = Trainer(cfg)
    trainer.train_iteration()
    snap = snapshot(trainer)
    profile = Profile(run="run", episode=snap["episode"], config=cfg, policies=snap["policies"])
    br = BestResponseConfig(episodes=10, episodes_per_iteration=5, eval_every=5, eval_envs=8, eval_episodes=1)

    def analyse():
        results = [best_response(profile, kind, init, seed=0, br=br) for kind in ("consumer", "firm")
                   for init in ("warm", "fresh")]
        return results, epsilon_rows([trial_summary(r, profile, br) for r in results])

    (res_a, rows_a), (res_b, rows_b) = analyse(), analyse()
    assert same([r.curve for r in res_a], [r.curve for r in res_b])
    assert same(rows_a, rows_b) and len(rows_a) == 2
    for a, b in zip(res_a, res_b):
        assert all(torch.equal(a.policies[k][n], b.policies[k][n]) for k in a.policies for n in a.policies[k])


def test_srl_solves_are_bit_identical():
    overrides = {"max_epochs": 4, "warmup": 1, "n_paths": 4, "n_b": 30, "n_r": 6, "n_z": 3}

    def run():
        return solve("huggett", overrides, smoke=True, euler=False)

    a, b = run(), run()
    assert same(a.log.as_columns(), b.log.as_columns())
    assert all(torch.equal(a.paths[k], b.paths[k]) for k in a.paths)
    assert same(a.summary(), b.summary())
