"""PNG figures of an analysis: per type, the payoff before and the gain with its error bar, one bar
per checkpoint (mid-training vs end, like the paper's best-response figure)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..economy import AGENT_TYPES  # noqa: E402
from ..results.io import atomic_path  # noqa: E402


def plot_epsilon(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Two panels per type: mean payoff before deviating, and the confirmed gain +- 1.96 SE with
    the lower bound marked, one bar per checkpoint episode (averaged over runs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kinds = [k for k in AGENT_TYPES if any(r["type"] == k for r in rows)]
    fig, axes = plt.subplots(2, len(kinds), figsize=(4 * len(kinds), 6), squeeze=False)
    for col, kind in enumerate(kinds):
        by_episode: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if r["type"] == kind:
                by_episode[int(r["episode"])].append(r)
        episodes = sorted(by_episode)
        labels = [str(e) for e in episodes]
        mean = lambda key, e: sum(r[key] for r in by_episode[e]) / len(by_episode[e])  # noqa: E731
        axes[0][col].bar(labels, [mean("u_before", e) for e in episodes], color="tab:blue")
        axes[0][col].set_title(f"{kind}: payoff of the profile")
        gains = [mean("gain", e) for e in episodes]
        errors = [1.96 * mean("se", e) for e in episodes]
        axes[1][col].bar(labels, gains, yerr=errors, capsize=4, color="tab:orange")
        axes[1][col].scatter(labels, [mean("lcb", e) for e in episodes], color="black", marker="_", s=200,
                             label="lower bound", zorder=3)
        axes[1][col].axhline(0.0, color="grey", linewidth=0.8)
        axes[1][col].set_title(f"{kind}: best-response gain")
        axes[1][col].set_xlabel("checkpoint episode")
        axes[1][col].legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path
