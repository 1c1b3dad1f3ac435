"""The epsilon table: one row per (profile, type) from its best-response trials, and the verdicts.

Each trial (profile, type, init, seed) reports its best candidate's selection gain and its confirmed
gain. Per (profile, type) the trial with the largest selection gain is chosen (the confirmation
draws never enter the choice) and its confirmed estimate is the row: "epsilon_k >= LCB". A profile's
epsilon bound is the largest LCB over its types; their sum is the NashConv-style total.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any, Iterable

import numpy as np

from ..economy import AGENT_TYPES
from .stats import bootstrap_lcb

EPSILON_COLUMNS = (
    "profile", "run", "seed", "swept", "episode", "type", "u_before", "u_after", "gain", "se", "lcb",
    "lcb_bootstrap", "alpha", "relative_gain", "n_eval", "budget", "gain_half_budget", "lcb_half_budget",
    "per_seed_gains", "best_init", "best_seed", "best_episode", "trials")
"""Columns of epsilon.parquet (see docs/equilibrium.md)."""


def epsilon_rows(trials: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the epsilon table from trial summaries (dicts with the keys `trial_summary` makes)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for t in trials:  # ordered by run, checkpoint episode, then type as AGENT_TYPES lists them
        groups[(t["run"], t["episode"], AGENT_TYPES.index(t["type"]), t["profile"])].append(t)
    rows = []
    for (_, _, _, profile), ts in sorted(groups.items()):
        kind = ts[0]["type"]
        best = max(ts, key=lambda t: (t["selection_gain"], t["init"] == "warm", -t["br_seed"]))
        rows.append({
            "profile": profile, "run": best["run"], "seed": best["train_seed"], "swept": best.get("swept", "{}"),
            "episode": best["episode"], "type": kind, "u_before": best["u_before"], "u_after": best["u_after"],
            "gain": best["gain"], "se": best["se"], "lcb": best["lcb"], "lcb_bootstrap": best["lcb_bootstrap"],
            "alpha": best["alpha"],
            "relative_gain": best["gain"] / abs(best["u_before"]) if best["u_before"] else math.nan,
            "n_eval": best["n_eval"], "budget": best["budget"], "gain_half_budget": best["gain_half"],
            "lcb_half_budget": best["lcb_half"],
            "per_seed_gains": json.dumps({f"{t['init']}:{t['br_seed']}": t["gain"] for t in ts}, sort_keys=True),
            "best_init": best["init"], "best_seed": best["br_seed"], "best_episode": best["best_episode"],
            "trials": len(ts)})
    return rows


def verdicts(rows: list[dict[str, Any]], tolerance: float) -> list[dict[str, Any]]:
    """Per profile: epsilon bound (max LCB over types), the NashConv-style sum, and a verdict at
    `tolerance` (relative to each type's |payoff|): 'no significant gain' or 'not an equilibrium'."""
    by_profile: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:  # rows come in profile order (epsilon_rows)
        by_profile[r["profile"]].append(r)
    out = []
    for profile, rs in by_profile.items():
        worst = max(rs, key=lambda r: r["lcb"])
        flagged = [r["type"] for r in rs if r["lcb"] > tolerance * abs(r["u_before"])]
        out.append({"profile": profile, "episode": rs[0]["episode"], "seed": rs[0]["seed"],
                    "epsilon_lcb": worst["lcb"], "epsilon_type": worst["type"],
                    "sum_gain": float(sum(r["gain"] for r in rs)), "sum_lcb": float(sum(r["lcb"] for r in rs)),
                    "verdict": ("not an equilibrium: " + ", ".join(flagged) + " gain") if flagged
                    else "no significant gain", "tolerance": tolerance})
    return out


def across_seeds(rows: list[dict[str, Any]], alpha: float, resamples: int = 2000) -> list[dict[str, Any]]:
    """Per (swept values, checkpoint episode, type): the mean gain over training seeds and its
    bootstrap lower bound over seeds (each seed one row of the epsilon table)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["swept"], r["episode"], r["type"])].append(r)
    out = []
    for (swept, episode, kind), rs in sorted(groups.items()):
        gains = np.array([r["gain"] for r in rs])
        out.append({"swept": swept, "episode": episode, "type": kind, "seeds": len(rs),
                    "mean_gain": float(gains.mean()),
                    "lcb_over_seeds": bootstrap_lcb(gains, alpha, resamples) if len(rs) > 1 else math.nan,
                    "mean_relative_gain": float(np.nanmean([r["relative_gain"] for r in rs]))})
    return out
