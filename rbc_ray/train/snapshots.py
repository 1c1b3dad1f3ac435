"""Policy-only snapshots of a run: every type's network at an episode, with the config that made it.

A snapshot is a few hundred KB (networks only: no optimiser, no RNG), written every
`train.snapshot_every` episodes into SNAPSHOT_DIR/episode_00001200.pt and never rotated away, so the
profiles of a run, mid-training as well as at the end, can be analysed after it has finished
(rbc_ray.equilibrium). Files are written to a temporary name and renamed: a reader never sees half
a snapshot. A network holding NaN or inf is never written (TrainingDivergedError): the last good
snapshot stays the newest one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from ..results.io import atomic_path
from .trainer import check_finite_networks

SNAPSHOT_DIR = "snapshots"
_NAME = re.compile(r"^episode_(\d+)\.pt$")


def snapshot(trainer: Any) -> dict[str, Any]:
    """The trainer's networks (CPU copies), episode and config as one picklable dict."""
    return {"episode": int(trainer.episode), "iteration": int(trainer.iteration),
            "config": trainer.cfg.to_dict(),
            "policies": {kind: {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                         for kind, net in trainer.policies.items()}}


def write_snapshot(trainer: Any, folder: str | os.PathLike) -> Path:
    """Write the trainer's snapshot as FOLDER/episode_<episode>.pt (atomically); returns its path.
    Networks with NaN or inf are refused (TrainingDivergedError), before anything is written."""
    path = Path(folder) / f"episode_{int(trainer.episode):08d}.pt"
    data = snapshot(trainer)
    check_finite_networks(data["policies"], f"snapshot {path.name}")
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    return path


def due(every: int, before: int, after: int) -> bool:
    """Whether an iteration that moved the episode counter from `before` to `after` crossed a
    multiple of `every` (0 = snapshots off)."""
    return every > 0 and after // every > before // every


def list_snapshots(folder: str | os.PathLike) -> dict[int, Path]:
    """{episode: path} of the snapshots in a folder, sorted by episode ({} when there are none)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    found = {int(m.group(1)): p for p in folder.iterdir() if (m := _NAME.match(p.name))}
    return dict(sorted(found.items()))


def load_snapshot(path: str | os.PathLike) -> dict[str, Any]:
    """A snapshot written by `write_snapshot`; a missing or unreadable file is a ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"snapshot {str(path)!r} does not exist")
    data = read_torch_file(path, "snapshot")
    if not isinstance(data, dict) or not {"episode", "config", "policies"} <= set(data):
        raise ValueError(f"{str(path)!r} is not a policy snapshot (no episode/config/policies)")
    return data


def read_torch_file(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """torch.load on the CPU; a missing, truncated or foreign file is one ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated, corrupted or not a torch file
        reason = " ".join(str(err).split())
        if len(reason) > 160:
            reason = reason[:157] + "..."
        raise ValueError(f"{what} {str(path)!r} cannot be read, truncated or corrupted? "
                         f"({type(err).__name__}: {reason})") from None
