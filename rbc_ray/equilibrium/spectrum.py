"""The spectrum of equilibria: which distinct outcomes did the profiles of a sweep reach?

Each profile is summarised by its **signature**: means of the economy's outcomes (price, wage, hours,
consumption, export share, stock, both tax rates, price spread across firms) and the types' payoffs,
measured under best-response conditions on one shared evaluation seed, so every profile faces the
same draws (common random numbers). Profiles are then grouped by complete-linkage clustering
(scipy.cluster.hierarchy) on the Chebyshev distance between signatures measured in units of each
column's **resolution** (`scales`): cutting the tree at 1 puts two profiles in one group only if every
pair in the group agrees within the resolution in every column. Resolutions are half an action-grid
step for price, wage, hours, consumption and tax columns, 0.05 for the export share and a fraction of
a typical value for stocks and payoffs (see `scales`). The grouping is deterministic: scipy's
linkage has no randomness and the labels are renumbered 1, 2, ... in order of first appearance.

No Ray here: `rbc-ray analyse` (launch/) can call these functions; in Python::

    from rbc_ray.equilibrium import run_profiles
    from rbc_ray.equilibrium.spectrum import spectrum_report
    rows = spectrum_report(run_profiles(["results/smoke-eq"], "mid,end"), "results/smoke-eq-spectrum")
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist, squareform

from ..economy import AGENT_TYPES, action_nvec, obs_sizes
from ..economy.config import EconomyConfig
from ..policies import ActorCritic
from ..results import write_rows
from ..train.rollout import ECONOMY_STATS
from . import spectrum_plots
from .payoff import episode_payoffs, evaluation_episodes
from .profile import Profile

SPECTRUM_SEED = 3_000_000
"""default shared evaluation seed of the signatures (differs from the best response's seeds)"""

SIGNATURE_COLUMNS = (
    "price", "wage", "hours", "consumption", "export_share", "stock", "income_tax", "corporate_tax",
    "price_spread", "payoff_consumer", "payoff_firm", "payoff_government")
"""Columns of a signature (see `signature`)."""

GRID_COLUMNS = {"price": "price_grid", "wage": "wage_grid", "hours": "hours_grid",
                "consumption": "demand_grid", "income_tax": "tax_grid", "corporate_tax": "tax_grid",
                "price_spread": "price_grid"}
"""Signature columns whose resolution is half a step of an action grid."""

RELATIVE_COLUMNS = ("stock", "payoff_consumer", "payoff_firm")
"""Signature columns whose resolution is `relative` x the median |value| over the profiles."""

EXPORT_SHARE_RESOLUTION = 0.05
"""resolution of the export share (a share in [0, 1]): 5 percentage points"""

NOT_ANALYSED = "not analysed"
"""verdict of a profile without an epsilon bound"""

SPECTRUM_FILE, CROSS_FILE, GROUPS_FILE = "spectrum.parquet", "spectrum_cross.parquet", "spectrum_groups.parquet"
PLOT_FILE = "spectrum.png"


# ---------------------------------------------------------------------------------------- networks
def profile_networks(profile: Profile, device: str | torch.device = "cpu") -> dict[str, ActorCritic]:
    """The profile's networks, built as the trainer builds them and loaded from its state dicts."""
    cfg = profile.config
    econ = cfg.economy_config
    sizes, nvec = obs_sizes(econ), action_nvec(econ)
    dtype = torch.float64 if cfg.train.dtype == "float64" else torch.float32
    nets = {}
    for kind in AGENT_TYPES:
        net = ActorCritic(sizes["global"], sizes[kind] - sizes["global"], nvec[kind], cfg.agent(kind).hidden)
        net.load_state_dict(profile.policies[kind])
        nets[kind] = net.to(device, dtype).eval()
    return nets


# ---------------------------------------------------------------------------------------- signature
def signature(profile: Profile, seed: int = SPECTRUM_SEED, n_envs: int = 64, episodes: int = 2,
              device: str | torch.device = "cpu") -> dict[str, float]:
    """The profile's outcome signature: means over `episodes` x `n_envs` replicas and every step.

    Played under best-response conditions (stochastic policies, no masks, theta at full strength),
    seeded exactly like `payoffs`, so every profile evaluated with one seed faces the same draws and
    the payoff columns equal `payoffs(...)[type].mean()`. Columns (SIGNATURE_COLUMNS):

    - price, wage: posted price and wage, mean over firms; stock: units on hand per firm;
    - hours: hours worked per consumer and step; consumption: units consumed per consumer and step
      (summed over firms);
    - export_share: units exported / (units exported + units consumed), over the whole evaluation;
    - income_tax, corporate_tax: the rates in force;
    - price_spread: the standard deviation of posted prices across firms (within a replica and step);
    - payoff_<type>: the type's mean per-agent undiscounted episode reward (its payoff U_k).
    """
    nets = profile_networks(profile, device)
    econ = profile.config.economy_config
    f, n = econ.n_firms, econ.n_consumers
    stat = {name: i for i, name in enumerate(ECONOMY_STATS)}
    sums = defaultdict(float)
    steps = 0
    payoff = {k: [] for k in AGENT_TYPES}
    for storage in evaluation_episodes(econ, nets, seed, n_envs, episodes, device):
        s = storage.stats.cpu()                                            # [T, K]: means over envs
        steps += s.shape[0]
        for name in ("price", "wage", "hours", "consumption", "stock", "income_tax", "corporate_tax"):
            key = {"income_tax": "income_tax", "corporate_tax": "corporate_tax"}.get(name, f"mean_{name}")
            sums[name] += float(s[:, stat[key]].sum())
        sums["exported"] += float(s[:, stat["mean_exports"]].sum()) * f
        sums["consumed"] += float(s[:, stat["mean_consumption"]].sum()) * n
        prices = storage.global_[..., :f].to(torch.float64) * econ.price_scale       # [T, E, F]
        sums["price_spread"] += float(prices.std(-1, unbiased=False).mean(-1).sum())
        for kind in AGENT_TYPES:
            payoff[kind].append(episode_payoffs(storage, kind).cpu())
    out = {name: sums[name] / steps for name in ("price", "wage", "hours", "consumption")}
    traded = sums["exported"] + sums["consumed"]
    out["export_share"] = sums["exported"] / traded if traded > 0 else 0.0
    for name in ("stock", "income_tax", "corporate_tax", "price_spread"):
        out[name] = sums[name] / steps
    for kind in AGENT_TYPES:
        out[f"payoff_{kind}"] = float(torch.cat(payoff[kind]).mean())
    return {k: float(out[k]) for k in SIGNATURE_COLUMNS}


# ---------------------------------------------------------------------------------------- resolution
def half_step(grid: Sequence[float]) -> float:
    """Half the smallest gap between distinct values of an action grid (1.0 for a one-value grid)."""
    values = sorted(set(float(v) for v in grid))
    gaps = [b - a for a, b in zip(values, values[1:]) if b > a]
    return round(min(gaps) / 2, 12) if gaps else 1.0


def scales(economy_cfg: EconomyConfig, signatures: Sequence[Mapping[str, float]] | None = None,
           relative: float = 0.05) -> dict[str, float]:
    """{column: resolution}: the columns the grouping uses, each with the difference below which two
    profiles count as agreeing in it.

    - price, wage, hours, income_tax, corporate_tax: half a step of the action grid the quantity is
      chosen on (250, 5.5, 130, 0.1, 0.1 by default): a difference below it is finer than any choice
      an agent can make;
    - price_spread: half a price-grid step; consumption: half a demand-grid step (0.5 units);
    - export_share: 0.05 (5 percentage points);
    - stock, payoff_consumer, payoff_firm: `relative` (5%) x the median |value| over `signatures`
      (falling back to the largest |value|, then to 1.0, when that is 0); only when signatures are
      given, since they have no grid.

    payoff_government is left out: its definition changes with `economy.welfare` (one of the axes
    the spectrum sweep varies), so it would separate profiles by definition rather than by outcome.
    """
    out = {col: half_step(getattr(economy_cfg, grid)) for col, grid in GRID_COLUMNS.items()}
    out["export_share"] = EXPORT_SHARE_RESOLUTION
    if signatures:
        if not relative > 0:
            raise ValueError(f"relative={relative!r}: must be positive")
        for col in RELATIVE_COLUMNS:
            values = np.abs(np.array([float(s[col]) for s in signatures]))
            typical = float(np.median(values)) or float(values.max())
            out[col] = relative * typical if typical > 0 else 1.0
    return {col: out[col] for col in SIGNATURE_COLUMNS if col in out}


# ---------------------------------------------------------------------------------------- grouping
def scaled_matrix(signatures: Sequence[Mapping[str, float]], scales_: Mapping[str, float]) -> np.ndarray:
    """[profiles, columns]: each signature's columns (those of `scales_`) in units of their resolution."""
    cols = list(scales_)
    for col in cols:
        if not (math.isfinite(scales_[col]) and scales_[col] > 0):
            raise ValueError(f"resolution of {col!r} is {scales_[col]!r}: must be positive and finite")
    x = np.array([[float(s[c]) for c in cols] for s in signatures], dtype=np.float64)
    x = x.reshape(len(signatures), len(cols))
    bad = ~np.isfinite(x)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise ValueError(f"signature {i} has {cols[j]}={x[i, j]!r}: every grouped column must be finite")
    return x / np.array([scales_[c] for c in cols])


def first_appearance(labels: Iterable[int]) -> list[int]:
    """Labels renumbered 1, 2, ... in the order they first appear."""
    order: dict[int, int] = {}
    return [order.setdefault(int(label), len(order) + 1) for label in labels]


def silhouette_samples(distances: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """Each profile's silhouette (b - a) / max(a, b) from a square distance matrix: a = mean distance
    to the rest of its group, b = the smallest mean distance to another group; 0 for a profile alone
    in its group (Rousseeuw 1987, the convention of common libraries)."""
    labels = np.asarray(labels)
    n = len(labels)
    out = np.zeros(n)
    groups = sorted(set(labels.tolist()))
    for i in range(n):
        own = (labels == labels[i]) & (np.arange(n) != i)
        if not own.any():
            continue
        a = distances[i, own].mean()
        b = min(distances[i, labels == g].mean() for g in groups if g != labels[i])
        out[i] = (b - a) / max(a, b) if max(a, b) > 0 else 0.0
    return out


def group_profiles(signatures: Sequence[Mapping[str, float]], scales_: Mapping[str, float]
                   ) -> tuple[list[int], float]:
    """(group label per profile, mean silhouette): complete-linkage clustering of the signatures on
    the Chebyshev (largest per-column) distance in units of `scales_`, cut at 1 (scipy's `linkage`
    and `fcluster(t=1, criterion='distance')`). Within a group every pair of profiles agrees within
    the resolution in every column; labels are 1, 2, ... in order of first appearance. The
    silhouette (same distance) is nan unless there are at least 2 groups and fewer groups than
    profiles."""
    x = scaled_matrix(signatures, scales_)
    n = x.shape[0]
    if n == 0:
        return [], math.nan
    if n == 1:
        return [1], math.nan
    d = pdist(x, metric="chebyshev")
    tree = linkage(d, method="complete")
    labels = first_appearance(fcluster(tree, t=1.0, criterion="distance"))
    k = len(set(labels))
    sil = float(silhouette_samples(squareform(d), labels).mean()) if 2 <= k < n else math.nan
    return labels, sil


# ---------------------------------------------------------------------------------------- rows
def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in values.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _cell(value: Any) -> Any:
    """A table cell: numbers and strings as they are, lists and the rest as JSON text."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return json.dumps(value, sort_keys=True)


def swept_values(profiles: Sequence[Profile]) -> list[dict[str, Any]]:
    """Per profile, {dotted config key: value} for every key whose value differs among the profiles
    (a sweep's grid axes and seeds; `name` aside). Keys that no profile varies are left out."""
    flat = [{k: _cell(v) for k, v in _flatten(p.config.to_dict()).items() if k != "name"} for p in profiles]
    keys = sorted({k for f in flat for k in f})
    varying = [k for k in keys if len({json.dumps(f.get(k)) for f in flat}) > 1]
    return [{k: f.get(k) for k in varying} for f in flat]


def epsilon_from_verdicts(verdict_rows: Iterable[Mapping[str, Any]]) -> dict[str, tuple[float, str]]:
    """{profile: (epsilon_lcb, verdict)} from the rows of verdicts.parquet (`epsilon.verdicts`)."""
    return {str(r["profile"]): (float(r["epsilon_lcb"]), str(r["verdict"])) for r in verdict_rows}


def spectrum_rows(profiles: Sequence[Profile], signatures: Sequence[Mapping[str, float]], labels: Sequence[int],
                  epsilon_by_profile: Mapping[str, tuple[float, str]] | None = None,
                  silhouette: float = math.nan) -> list[dict[str, Any]]:
    """One row per profile: profile, run, episode, seed, swept (JSON), one column per swept key, the
    signature columns, group, silhouette (of the whole grouping), epsilon_lcb, verdict and flagged.

    Profiles whose verdict is 'not an equilibrium' are flagged, never dropped; a profile without an
    epsilon bound gets epsilon_lcb nan and verdict 'not analysed'."""
    if not len(profiles) == len(signatures) == len(labels):
        raise ValueError(f"{len(profiles)} profiles, {len(signatures)} signatures and {len(labels)} labels")
    eps = epsilon_by_profile or {}
    swept = swept_values(profiles)
    rows = []
    for p, sig, label, sw in zip(profiles, signatures, labels, swept):
        lcb, verdict = eps.get(p.name, (math.nan, NOT_ANALYSED))
        rows.append({"profile": p.name, "run": p.run, "episode": int(p.episode), "seed": int(p.config.train.seed),
                     "swept": json.dumps(sw, sort_keys=True), **sw,
                     **{c: float(sig[c]) for c in SIGNATURE_COLUMNS}, "group": int(label),
                     "silhouette": float(silhouette), "epsilon_lcb": float(lcb), "verdict": verdict,
                     "flagged": verdict.startswith("not an equilibrium")})
    return rows


def swept_keys(rows: Sequence[Mapping[str, Any]], seeds: bool = False) -> list[str]:
    """The swept keys of spectrum rows (from their `swept` JSON), then `episode` when the rows hold
    several checkpoints; training seeds are left out unless `seeds`: they are replicates whose groups
    a cross-table counts."""
    keys = sorted({k for r in rows for k in json.loads(r.get("swept", "{}"))})
    keys = [k for k in keys if seeds or k != "train.seed"]
    return keys + (["episode"] if len({r.get("episode") for r in rows}) > 1 else [])


def cross_table(rows: Sequence[Mapping[str, Any]], swept_keys_: Sequence[str]) -> list[dict[str, Any]]:
    """Groups against the sweep's parameters: one row per combination of the `swept_keys_` values
    (in order of first appearance), with `profiles`, `flagged` (profiles whose verdict is 'not an
    equilibrium'), `groups` (distinct groups) and `group_<g>`: how many of its profiles fell into
    group g, for every group g of the rows. Any row key works as a parameter (e.g. `episode`)."""
    all_groups = sorted({int(r["group"]) for r in rows})
    cells: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        swept = json.loads(r.get("swept", "{}"))
        key = tuple(json.dumps(r[k] if k in r else swept.get(k)) for k in swept_keys_)
        cells.setdefault(key, []).append(r)
    out = []
    for key, rs in cells.items():
        row: dict[str, Any] = {k: json.loads(v) for k, v in zip(swept_keys_, key)}
        row.update(profiles=len(rs), flagged=sum(bool(r.get("flagged", False)) for r in rs),
                   groups=len({int(r["group"]) for r in rs}))
        row.update({f"group_{g}": sum(int(r["group"]) == g for r in rs) for g in all_groups})
        out.append(row)
    return out


def group_summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per group: profiles, flagged, the smallest and largest epsilon bound (nan if none was
    analysed) and the mean of every signature column."""
    by_group: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        by_group[int(r["group"])].append(r)
    out = []
    for g in sorted(by_group):
        rs = by_group[g]
        lcbs = [r["epsilon_lcb"] for r in rs if math.isfinite(r["epsilon_lcb"])]
        out.append({"group": g, "profiles": len(rs), "flagged": sum(bool(r["flagged"]) for r in rs),
                    "epsilon_lcb_min": min(lcbs) if lcbs else math.nan,
                    "epsilon_lcb_max": max(lcbs) if lcbs else math.nan,
                    **{c: float(np.mean([r[c] for r in rs])) for c in SIGNATURE_COLUMNS}})
    return out


def write_table(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Rows (dicts) as one Parquet file (`rbc_ray.results.write_rows`)."""
    return write_rows(rows, path)


def write_spectrum(rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike) -> dict[str, Path]:
    """OUT/spectrum.parquet (the rows), OUT/spectrum_cross.parquet (`cross_table` over `swept_keys`:
    the swept keys, seeds left out, and the checkpoint episode when there are several) and
    OUT/spectrum_groups.parquet (`group_summary`); returns their paths."""
    out_dir = Path(out_dir)
    return {"spectrum": write_table(rows, out_dir / SPECTRUM_FILE),
            "cross": write_table(cross_table(rows, swept_keys(rows)), out_dir / CROSS_FILE),
            "groups": write_table(group_summary(rows), out_dir / GROUPS_FILE)}


def plot_spectrum(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                  scales_: Mapping[str, float] | None = None) -> Path:
    """The map of the spectrum as one PNG: left, the signatures in 2-D (first two principal components
    of the grouped columns in units of their resolution `scales_`; without it, of every signature
    column divided by its spread); right, mean price vs mean wage. Colour = group, marker = verdict."""
    return spectrum_plots.plot_spectrum(rows, path, scales_, SIGNATURE_COLUMNS)


def spectrum_report(profiles: Sequence[Profile], out_dir: str | os.PathLike | None = None,
                    seed: int = SPECTRUM_SEED, n_envs: int = 64, episodes: int = 2,
                    epsilon_by_profile: Mapping[str, tuple[float, str]] | None = None,
                    relative: float = 0.05, device: str | torch.device = "cpu") -> list[dict[str, Any]]:
    """Everything at once: signatures on the shared seed, resolutions, groups, rows; with `out_dir`,
    the Parquet tables (`write_spectrum`) and the map (OUT/spectrum.png). Returns the rows."""
    if not profiles:
        raise ValueError("no profiles to place on the spectrum")
    grids = {tuple(getattr(p.config.economy_config, g) for g in sorted(set(GRID_COLUMNS.values()))) for p in profiles}
    if len(grids) > 1:
        raise ValueError("the profiles' action grids differ, so one resolution cannot fit them all")
    sigs = [signature(p, seed, n_envs, episodes, device) for p in profiles]
    res = scales(profiles[0].config.economy_config, sigs, relative)
    labels, sil = group_profiles(sigs, res)
    rows = spectrum_rows(profiles, sigs, labels, epsilon_by_profile, sil)
    if out_dir is not None:
        write_spectrum(rows, out_dir)
        plot_spectrum(rows, Path(out_dir) / PLOT_FILE, res)
    return rows
