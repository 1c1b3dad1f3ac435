"""Training curves like the paper's Figure 3: rewards per type, mean price, mean wage, phases marked."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io import atomic_path, load  # noqa: E402

PANELS = [
    ("reward_consumer", "consumer reward (per agent-step)"),
    ("reward_firm", "firm reward (per agent-step)"),
    ("reward_government", "government reward (per step)"),
    ("mean_price", "mean price"),
    ("mean_wage", "mean wage"),
    ("mean_hours", "mean hours"),
]


def _phase_starts(cols: dict) -> list[tuple[float, str]]:
    """Episodes at which firms and the government start training (curriculum boundaries)."""
    marks = []
    for kind in ("firm", "government"):
        flag = cols.get(f"training_{kind}")
        if flag is None:
            continue
        # a row covers the episodes since the previous row; a flag first set in a row means the type
        # started training inside it, at the latest at the previous row's episode count
        for start, prev, now in zip(cols["episodes"][:-1], flag[:-1], flag[1:]):
            if prev < 0.5 <= now:
                marks.append((start, f"{kind} trains"))
                break
    return marks


def plot_training(out: str | os.PathLike) -> list[Path]:
    """Write OUT/plots/training.png (all panels) and one PNG per panel; returns the paths."""
    table = load(out)
    cols = table.to_pydict()
    folder = Path(out) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    x = cols.get("episodes") or cols.get("iteration")
    marks = _phase_starts(cols) if "episodes" in cols else []
    panels = [(k, t) for k, t in PANELS if k in cols]
    written = []
    fig, axes = plt.subplots(2, 3, figsize=(14, 7), squeeze=False)
    for ax, (key, title) in zip(axes.flat, panels):
        _panel(ax, x, cols[key], title, marks)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"training curves: {Path(out).name}")
    fig.tight_layout()
    written.append(folder / "training.png")
    _save(fig, written[-1])
    for key, title in panels:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        _panel(ax, x, cols[key], title, marks)
        fig.tight_layout()
        written.append(folder / f"{key}.png")
        _save(fig, written[-1])
    return written


def _save(fig, path: Path) -> None:
    """PNG via a temporary name (`atomic_path`): a reader never sees half a plot."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _panel(ax, x, y, title, marks) -> None:
    ax.plot(x, y, lw=1.2)
    for ep, label in marks:
        ax.axvline(ep, color="grey", ls="--", lw=0.8)
        ax.text(ep, ax.get_ylim()[1], label, fontsize=7, rotation=90, va="top", ha="right")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("episodes")
    ax.grid(alpha=0.3)


def plot_runs(runs: dict[str, dict], panels: list[tuple[str, str]], path: str | os.PathLike,
              bands: dict[str, tuple[float, float]] | None = None, title: str = "") -> Path:
    """Several runs' curves in one figure, one panel per metric (`runs`: label -> metrics columns
    with an `episodes` column). `bands`: metric -> (low, high), shaded as a target range (the
    paper's values). Returns the PNG's path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = bands or {}
    cols = min(len(panels), 2)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.6 * rows), squeeze=False)
    for ax, (key, label) in zip(axes.flat, panels):
        for name, data in runs.items():
            if key in data:
                ax.plot(data["episodes"], data[key], lw=1.2, label=name)
        if key in bands:
            low, high = bands[key]
            if high > low:
                ax.axhspan(low, high, color="tab:green", alpha=0.15, label="paper, end of training")
            else:
                ax.axhline(low, color="tab:green", ls="--", lw=1, label="paper, end of training")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("episodes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
