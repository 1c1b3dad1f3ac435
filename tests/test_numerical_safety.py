"""NaN or inf stops a training trial and a best-response trial with the trainer's diagnosis, and the
last good snapshot and checkpoint stay on disk, loadable, with finite networks: a diverged network
is never written over them."""

import math
from pathlib import Path

import pytest
import torch
import yaml

from rbc_ray.economy import AGENT_TYPES
from rbc_ray.equilibrium import BestResponseConfig
from rbc_ray.equilibrium import best_response as br_module
from rbc_ray.equilibrium.profile import Profile, load_profile
from rbc_ray.launch.trainable import RBCTrainable
from rbc_ray.train import Trainer, TrainingDivergedError, load_experiment
from rbc_ray.train.snapshots import list_snapshots, load_snapshot, read_torch_file, snapshot, write_snapshot

ROOT = Path(__file__).resolve().parents[1]
TINY = ["train.n_envs=4", "train.episodes_per_iteration=2", "train.torch_threads=1", "economy.n_consumers=3",
        "economy.n_firms=2", "curriculum.firm_start=0", "train.snapshot_every=2", "train.total_episodes=100"]


def poison(net: torch.nn.Module) -> None:
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))


def finite(policies) -> bool:
    return all(bool(torch.isfinite(v).all()) for state in policies.values() for v in state.values()
               if torch.is_tensor(v) and v.is_floating_point())


def test_nan_stops_the_trial_and_the_last_good_snapshot_and_checkpoint_load(tmp_path):
    raw = yaml.safe_load((ROOT / "tune_configs" / "open_rbc_smoke.yaml").read_text())
    raw.pop("tune")
    trial = RBCTrainable(config={"experiment": raw, "overrides": TINY, "torch_threads": 1,
                                 "snapshot_dir": str(tmp_path / "snapshots")})
    trial.train()
    trial.train()
    good = trial.save(str(tmp_path / "checkpoint")).checkpoint.path
    assert list(list_snapshots(tmp_path / "snapshots")) == [2, 4]

    poison(trial.trainer.policies["firm"])  # a parameter goes NaN mid-run
    with pytest.raises(TrainingDivergedError, match=r"firm (policy_loss|value_loss|parameter).*iteration 2"):
        trial.train()
    # Tune may still ask for a snapshot or checkpoint of the diverged trial: refused, nothing replaced
    with pytest.raises(TrainingDivergedError, match="firm parameter .* is not finite"):
        trial.save_checkpoint(str(tmp_path / "late"))
    assert not (tmp_path / "late" / "trainer.pt").exists()
    with pytest.raises(TrainingDivergedError, match="the last good one is kept"):
        write_snapshot(trial.trainer, tmp_path / "snapshots")  # episode 4 again: would overwrite the good one
    trial.stop()

    snaps = list_snapshots(tmp_path / "snapshots")
    assert list(snaps) == [2, 4]
    last = load_snapshot(snaps[4])
    assert last["episode"] == 4 and finite(last["policies"])
    profile = load_profile(snaps[4])  # what `rbc-ray analyse` reads
    assert profile.episode == 4
    restored = Trainer.from_state_dict(read_torch_file(Path(good) / "trainer.pt"))
    assert restored.episode == 4 and finite({k: n.state_dict() for k, n in restored.policies.items()})
    metrics = restored.train_iteration()  # and it trains on
    assert all(math.isfinite(metrics[f"reward_{k}"]) for k in AGENT_TYPES)


def test_nan_stops_a_best_response_and_its_reported_deviations_stay_finite(monkeypatch):
    cfg = load_experiment(ROOT / "tune_configs" / "open_rbc_smoke.yaml", TINY)[0]
    trainer = Trainer(cfg)
    trainer.train_iteration()
    snap = snapshot(trainer)
    profile = Profile(run="test", episode=snap["episode"], config=cfg, policies=snap["policies"])
    br = BestResponseConfig(episodes=30, episodes_per_iteration=5, eval_every=5, eval_envs=8, eval_episodes=1)

    class PoisonedTrainer(Trainer):  # the deviating firm's network goes NaN in the third iteration
        def train_iteration(self):
            if self.iteration == 2:
                poison(self.policies["firm"])
            return super().train_iteration()

    monkeypatch.setattr(br_module, "Trainer", PoisonedTrainer)
    reported = []
    with pytest.raises(TrainingDivergedError, match=r"firm (policy_loss|value_loss|parameter).*iteration 2"):
        br_module.best_response(profile, "firm", "warm", seed=0, br=br,
                                report=lambda row, candidate, state: reported.append((row, candidate)))
    # the trial's checkpoints (one per evaluation, Tune keeps the best) are the deviations before it
    assert [row["episode"] for row, _ in reported] == [0.0, 5.0, 10.0]
    for row, candidate in reported:
        assert math.isfinite(row["selection_gain"]) and finite({"firm": candidate.policy})
        Trainer(profile.config).policies["firm"].load_state_dict(candidate.policy)  # and loads
