"""PNG figures of the spectrum of equilibria and of the economic intuition report."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..results.io import atomic_path  # noqa: E402

MARKERS = {"no significant gain": "o", "not an equilibrium": "X", "not analysed": "s"}
"""marker of each verdict kind on the map"""


def _verdict_kind(verdict: str) -> str:
    return "not an equilibrium" if verdict.startswith("not an equilibrium") else \
        verdict if verdict in MARKERS else "not analysed"


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The first two principal components of x [n, d] (numpy SVD of the centred matrix; signs fixed so
    each component's largest loading is positive) and their shares of the variance. Missing
    components (n or d below 2, or no variance) are zeros."""
    n = x.shape[0]
    out = np.zeros((n, 2))
    shares = [0.0, 0.0]
    if n < 2 or x.shape[1] == 0:
        return out, shares
    c = x - x.mean(0)
    u, s, vt = np.linalg.svd(c, full_matrices=False)
    total = float((s ** 2).sum())
    for j in range(min(2, len(s))):
        if s[j] <= 1e-12 * max(s[0], 1e-300):
            continue
        sign = 1.0 if vt[j][np.argmax(np.abs(vt[j]))] >= 0 else -1.0
        out[:, j] = c @ vt[j] * sign
        shares[j] = float(s[j] ** 2 / total) if total > 0 else 0.0
    return out, shares


def plot_spectrum(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                  scales: Mapping[str, float] | None = None, columns: Sequence[str] = ("price", "wage")) -> Path:
    """The map of the spectrum, two panels: left, the signatures in 2-D (the first two principal
    components of the grouped columns in units of their resolution, `scales`; without scales, of
    `columns` each divided by its spread over the profiles); right, mean price against mean
    wage in model units. Colour = group, marker = verdict (o no significant gain, X not an
    equilibrium, square not analysed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if scales:
        cols = list(scales)
        x = np.array([[float(r[c]) / scales[c] for c in cols] for r in rows]).reshape(len(rows), len(cols))
        unit = "resolution units"
    else:
        cols = list(columns)
        x = np.array([[float(r[c]) for c in cols] for r in rows]).reshape(len(rows), len(cols))
        spread = x.std(0) if len(rows) else np.ones(len(cols))
        x = x / np.where(spread > 0, spread, 1.0)
        unit = "standardised"
    xy, shares = pca_2d(x)
    groups = sorted({int(r["group"]) for r in rows})
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    colour = {g: cmap(i % cmap.N) for i, g in enumerate(groups)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    panels = [(axes[0], xy[:, 0], xy[:, 1], f"PC1 ({100 * shares[0]:.0f}% of variance, {unit})",
               f"PC2 ({100 * shares[1]:.0f}%)", "signatures in 2-D"),
              (axes[1], [float(r["price"]) for r in rows], [float(r["wage"]) for r in rows], "mean price",
               "mean wage", "price vs wage")]
    for ax, xs, ys, xlabel, ylabel, title in panels:
        for i, r in enumerate(rows):
            ax.scatter(xs[i], ys[i], color=colour[int(r["group"])], marker=MARKERS[_verdict_kind(str(r["verdict"]))],
                       s=60, edgecolors="black", linewidths=0.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
    handles = [plt.Line2D([], [], color=colour[g], marker="o", linestyle="", label=f"group {g}") for g in groups]
    handles += [plt.Line2D([], [], color="grey", marker=m, linestyle="", label=k) for k, m in MARKERS.items()
                if any(_verdict_kind(str(r["verdict"])) == k for r in rows)]
    axes[1].legend(handles=handles, loc="best", fontsize=8)
    sil = float(rows[0]["silhouette"]) if rows and "silhouette" in rows[0] else math.nan
    fig.suptitle(f"spectrum of equilibria: {len(rows)} profiles, {len(groups)} groups, silhouette "
                 + ("n/a" if math.isnan(sil) else f"{sil:.2f}"))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def plot_intuition(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """One PNG: per probe, the response curve (the policy's expected action against the stimulus),
    its least-squares line, and the expected and measured signs in the title."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = max(len(rows), 1)
    cols = min(n, 3)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    sign = {1: "+", -1: "-", 0: "0"}
    for ax, r in zip(axes.flat, rows):
        x, y = np.asarray(r["stimulus_values"], float), np.asarray(r["responses"], float)
        ax.plot(x, y, marker="o", color="tab:blue")
        slope = float(r["measured_slope"])
        if len(x) and math.isfinite(slope):
            ax.plot(x, y.mean() + slope * (x - x.mean()), color="tab:orange", linestyle="--", linewidth=1)
        measured = 0 if slope == 0 or not math.isfinite(slope) else int(np.sign(slope))
        ax.set_title(f"{r['type']}: {r['response']} vs {r['stimulus']}\nexpected {sign[int(r['expected_sign'])]}, "
                     f"measured {sign[measured]} ({'agrees' if r['agrees'] else 'does not agree'}"
                     + ("" if r.get("material", True) else "; below half a grid step") + ")", fontsize=9)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel(f"{r['stimulus']} ({r['stimulus_unit']})", fontsize=8)
        ax.set_ylabel(f"expected {r['response']} ({r['response_unit']})", fontsize=8)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path
