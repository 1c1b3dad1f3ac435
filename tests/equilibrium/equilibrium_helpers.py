"""Helpers for the analyser's tests. Profiles: the smoke economy, made small, with networks as trained (or
as initialised) and snapshotted exactly as `rbc-ray train` snapshots them."""

from pathlib import Path

from rbc_ray.equilibrium.profile import Profile
from rbc_ray.train import Trainer, load_experiment
from rbc_ray.train.snapshots import snapshot

SMOKE = Path(__file__).resolve().parents[2] / "tune_configs" / "open_rbc_smoke.yaml"
TINY = ["train.n_envs=8", "economy.n_consumers=4", "economy.n_firms=2", "train.episodes_per_iteration=5",
        "train.torch_threads=1"]


def make_profile(overrides=(), iterations: int = 0) -> Profile:
    cfg, _ = load_experiment(SMOKE, TINY + list(overrides))
    trainer = Trainer(cfg)
    for _ in range(iterations):
        trainer.train_iteration()
    snap = snapshot(trainer)
    return Profile(run="test", episode=snap["episode"], config=cfg, policies=snap["policies"])

