"""Profiles: every type's policy at one snapshot of a run, and the best-response experiment.

A run folder (`rbc-ray train --out`) keeps its snapshots in OUT/snapshots/; a sweep keeps them per
trial in OUT/trials/<trial_id>/snapshots/. `run_profiles` finds them and picks the checkpoints a
user asks for (`end`, `mid`, or episode numbers).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..economy import AGENT_TYPES
from ..train import ExperimentConfig
from ..train.snapshots import SNAPSHOT_DIR, list_snapshots, load_snapshot
from ..train.trainer import check_fits, policy_shapes
from .config import BestResponseConfig


@dataclass(frozen=True)
class Profile:
    """Every type's policy (state dicts) at one episode of a run, and the run's config."""

    run: str
    """the run folder (or the sweep trial's folder) it comes from"""
    episode: int
    """training episode of the snapshot"""
    config: ExperimentConfig
    """the experiment that trained it"""
    policies: dict[str, dict[str, Any]]
    """{type: network state_dict}"""
    path: str = ""
    """the snapshot file"""

    @property
    def name(self) -> str:
        return f"{Path(self.run).name}@{self.episode}"


def load_profile(path: str | os.PathLike, run: str | None = None) -> Profile:
    """The profile a snapshot file holds."""
    data = load_snapshot(path)
    missing = [k for k in AGENT_TYPES if k not in data["policies"]]
    if missing:
        raise ValueError(f"snapshot {str(path)!r} has no policy for {missing}")
    try:
        config = ExperimentConfig.from_dict(data["config"])
    except ValueError as err:
        raise ValueError(f"snapshot {str(path)!r} holds a config this version cannot read: {err}") from None
    check_fits(data["policies"], policy_shapes(config), data["config"], config, f"snapshot {str(path)!r}")
    return Profile(run=str(run or Path(path).parent.parent), episode=int(data["episode"]),
                   config=config, policies=data["policies"], path=str(path))


def snapshot_folders(path: str | os.PathLike) -> list[Path]:
    """The snapshot folders (absolute: trials run elsewhere) under a run or a sweep folder."""
    path = Path(path).resolve()
    if not path.is_dir():
        raise ValueError(f"{str(path)!r} is not a folder: give a run or sweep folder (rbc-ray train/sweep --out)")
    if (path / SNAPSHOT_DIR).is_dir():
        return [path / SNAPSHOT_DIR]
    if (path / "summary.json").is_file() and (path / "calibration.yaml").is_file():
        raise ValueError(f"{str(path)!r} is an `rbc-ray srl` output folder (summary.json), not a training run: "
                         "analyse reads the policy snapshots of rbc-ray train or sweep runs")
    trials = sorted(p / SNAPSHOT_DIR for p in (path / "trials").glob("*") if (p / SNAPSHOT_DIR).is_dir())
    if trials:
        return trials
    raise ValueError(f"{str(path)!r} holds no policy snapshots ({SNAPSHOT_DIR}/ or trials/*/{SNAPSHOT_DIR}/): "
                     "train it with rbc-ray train or sweep (snapshots every train.snapshot_every episodes)")


def pick(episodes: list[int], spec: str) -> list[int]:
    """The snapshot episodes a `--checkpoints` spec selects: `end`, `mid` (the snapshot nearest half
    the last episode) and explicit episode numbers, comma-separated."""
    if not episodes:
        return []
    out: list[int] = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item == "end":
            choice = episodes[-1]
        elif item == "mid":
            choice = min(episodes, key=lambda e: (abs(e - episodes[-1] / 2), e))
        else:
            try:
                choice = int(item)
            except ValueError:
                raise ValueError(f"--checkpoints item {item!r}: 'end', 'mid' or an episode number") from None
            if choice not in episodes:
                raise ValueError(f"--checkpoints {choice}: no snapshot at that episode (have {episodes})")
        if choice not in out:
            out.append(choice)
    return out


def run_profiles(paths: list[str | os.PathLike], checkpoints: str = "end") -> list[Profile]:
    """The profiles of runs or sweeps at the chosen checkpoints, in a stable order."""
    profiles = []
    for path in paths:
        for folder in snapshot_folders(path):
            found = list_snapshots(folder)
            for episode in pick(list(found), checkpoints):
                profiles.append(load_profile(found[episode], run=str(folder.parent)))
    return profiles


def best_response_experiment(profile: Profile, kind: str, br: BestResponseConfig, seed: int) -> ExperimentConfig:
    """The profile's experiment under best-response conditions: only `kind` trains, from episode 0,
    with a fresh optimiser at br.lr and br's entropy schedule, on br.device; no curriculum masks, no
    tax cap, theta at full strength; every other type acts from its policy and never updates."""
    if kind not in AGENT_TYPES:
        raise ValueError(f"type {kind!r}: one of {AGENT_TYPES}")
    values = profile.config.to_dict()
    train, curriculum = values["train"], values["curriculum"]
    train.update(seed=seed, total_episodes=br.episodes, episodes_per_iteration=br.episodes_per_iteration,
                 frozen=[k for k in AGENT_TYPES if k != kind], snapshot_every=0, device=br.device)
    if br.n_envs:
        train["n_envs"] = br.n_envs
    curriculum.update(compress=1.0, masks=False, theta_anneal=False, entropy_start=br.entropy_start,
                      entropy_decay=br.entropy_decay, entropy_floor=br.entropy_floor,
                      **{f"{k}_start": 0.0 for k in AGENT_TYPES})
    agent = values["policies"][kind]
    agent["lr"] = br.lr
    if br.algorithm == "pg":
        agent.update(epochs=1, minibatches=1)
    return ExperimentConfig.from_dict(values)
