"""Policy-only snapshots of a run: every type's network at an episode, with the config that made it.

A snapshot is a few hundred KB (networks only: no optimiser, no RNG), written every
`train.snapshot_every` episodes into SNAPSHOT_DIR/episode_00001200.pt and never rotated away, so the
profiles of a run, mid-training as well as at the end, can be analysed after it has finished
(rbc_ray.equilibrium). Files are written to a temporary name and renamed: a reader never sees half
a snapshot.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

SNAPSHOT_DIR = "snapshots"
_NAME = re.compile(r"^episode_(\d+)\.pt$")


def snapshot(trainer: Any) -> dict[str, Any]:
    """The trainer's networks (CPU copies), episode and config as one picklable dict."""
    return {"episode": int(trainer.episode), "iteration": int(trainer.iteration),
            "config": trainer.cfg.to_dict(),
            "policies": {kind: {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                         for kind, net in trainer.policies.items()}}


def write_snapshot(trainer: Any, folder: str | os.PathLike) -> Path:
    """Write the trainer's snapshot as FOLDER/episode_<episode>.pt (atomically); returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"episode_{int(trainer.episode):08d}.pt"
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    torch.save(snapshot(trainer), tmp)
    os.replace(tmp, path)
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
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated or not a torch file
        raise ValueError(f"snapshot {str(path)!r} cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or not {"episode", "config", "policies"} <= set(data):
        raise ValueError(f"{str(path)!r} is not a policy snapshot (no episode/config/policies)")
    return data
