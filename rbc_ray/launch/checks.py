"""Checks that turn a `--resume` that could never work into a one-line error before it starts: nothing
to continue, a changed config, or an unreadable or foreign checkpoint. (A trial larger than the
cluster is checked in launch/resources.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import read_yaml
from ..train.snapshots import read_torch_file
from ..train.trainer import check_fits, policy_shapes


def _flat(values: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as {dotted key: value} (tuples as lists)."""
    if not isinstance(values, dict):
        return {prefix: list(values) if isinstance(values, tuple) else values}
    out: dict[str, Any] = {}
    for key, value in values.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def check_resume(out_dir: Path, tune_dir: Path, experiment: Any) -> None:
    """`rbc-ray train --resume` continues the run in OUT as it was configured: a missing run, a changed
    config (Tune would silently keep the old one) or an unreadable or foreign latest checkpoint is a
    one-line ValueError before Ray starts."""
    if not tune_dir.is_dir():
        raise ValueError(f"--resume: {out_dir} holds no run of {experiment.name!r} to continue "
                         f"(no {tune_dir}); drop --resume to start one")
    saved_path = out_dir / "config.yaml"
    if saved_path.is_file():
        saved, now = _flat(read_yaml(saved_path)), _flat(experiment.to_dict())
        changed = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
        if changed:
            k, more = changed[0], f", and {len(changed) - 1} more" if len(changed) > 1 else ""
            raise ValueError(f"--resume continues the run in {out_dir} with its own config ({saved_path}); this "
                             f"command changes {k} ({saved.get(k)!r} -> {now.get(k)!r}{more}): drop the --set, "
                             "or start a new run with another --out")
    checkpoints = sorted(tune_dir.glob("*/checkpoint_*/trainer.pt"), key=lambda p: p.parent.name)
    if checkpoints:  # Tune restores the latest
        state = read_torch_file(checkpoints[-1])
        if not isinstance(state, dict):
            raise ValueError(f"{str(checkpoints[-1])!r} is not a trainer checkpoint")
        check_fits(state.get("policies"), policy_shapes(experiment), state.get("config"), experiment,
                   f"checkpoint {str(checkpoints[-1])!r}")
