"""The Tune trainable checkpoints and restores a run exactly, and PBT can change learning rates."""

from pathlib import Path

import pytest
import yaml

from rbc_ray.launch.trainable import RBCTrainable, checkpoint_files, overrides_from

ROOT = Path(__file__).resolve().parents[2]


def _config(**extra):
    raw = yaml.safe_load((ROOT / "tune_configs" / "open_rbc_smoke.yaml").read_text())
    raw.pop("tune")
    return {"experiment": raw, "overrides": ["train.total_episodes=30"], "torch_threads": 1, **extra}


def test_overrides_join_set_strings_and_sampled_keys():
    assert overrides_from({"overrides": ["a.b=1"], "set": {"train.seed": 3, "economy.welfare": "total"}}) \
        == ["a.b=1", 'economy.welfare="total"', "train.seed=3"]


def test_checkpoint_restores_the_run_exactly(tmp_path):
    first = RBCTrainable(config=_config())
    first.train()
    saved = first.save(str(tmp_path / "ckpt"))
    assert {"trainer.pt", "config.yaml"} <= set(checkpoint_files(saved.checkpoint.path))
    after_first = [first.train() for _ in range(2)]
    first.stop()

    second = RBCTrainable(config=_config())
    second.restore(saved)
    after_second = [second.train() for _ in range(2)]
    second.stop()
    for a, b in zip(after_first, after_second):
        for key in ("episodes", "reward_consumer", "reward_firm", "reward_government", "mean_price",
                    "policy_loss_consumer"):
            assert a[key] == b[key], key
    assert after_second[-1]["done"] is True  # total_episodes=30: 3 iterations of 10 episodes
    assert after_second[0]["done"] is False


def test_pbt_reset_config_changes_learning_rate_in_place():
    t = RBCTrainable(config=_config(set={"policies.firm.lr": 1e-3}))
    assert t.reset_config(_config(set={"policies.firm.lr": 5e-4}))
    assert all(g["lr"] == 5e-4 for g in t.trainer.optimizers["firm"].param_groups)
    assert not t.reset_config(_config(set={"economy.n_firms": 3}))  # structural change: restart
    t.stop()
