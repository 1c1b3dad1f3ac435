"""Helpers for the analyser's tests. Profiles: the smoke economy, made small, with networks as trained (or
as initialised) and snapshotted exactly as `rbc-ray train` snapshots them."""

import copy
from pathlib import Path

import torch

from rbc_ray.economy import AGENT_TYPES
from rbc_ray.equilibrium.profile import Profile
from rbc_ray.policies import ActorCritic
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


def nets_of(profile):
    trainer = Trainer(profile.config)
    for k in AGENT_TYPES:
        trainer.policies[k].load_state_dict(profile.policies[k])
    return trainer.policies


def constant_policy(template: ActorCritic, probs: list[list[float]]) -> ActorCritic:
    """A network whose every head draws from fixed probabilities whatever it observes."""
    net = copy.deepcopy(template)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        bias = net.logits.bias.view(net.width, net.n_heads)
        bias.fill_(-1e9)
        for h, p in enumerate(probs):
            bias[:len(p), h] = torch.log(torch.tensor(p).clamp(min=1e-30))
    return net
