"""Paired gains and their bounds: mean, standard error, one-sided lower confidence bounds.

A learned best response only bounds the true gain from below, so results are stated as
"epsilon_k >= LCB". The unit is an economy replica (one (episode, replica) pair of a paired
evaluation): gain = mean(after - before), SE = sd / sqrt(m), LCB = gain - t_{1-alpha, m-1} SE, and a
percentile-bootstrap LCB (deterministic resampling) as a cross-check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats


@dataclass(frozen=True)
class GainEstimate:
    """The paired gain of a deviation over the profile on one evaluation."""

    before: float
    """mean payoff of the profile"""
    after: float
    """mean payoff with the deviation"""
    gain: float
    """mean paired difference after - before"""
    se: float
    """standard error of the gain"""
    lcb: float
    """one-sided t lower confidence bound at level alpha"""
    lcb_bootstrap: float
    """percentile-bootstrap lower bound at the same level"""
    alpha: float
    """the bounds hold with probability 1 - alpha"""
    n: int
    """paired units (replica x episode)"""

    @property
    def relative_gain(self) -> float:
        """gain / |before| (nan when the profile's payoff is 0)."""
        return self.gain / abs(self.before) if self.before else math.nan


def paired_gain(before, after, alpha: float = 0.05, resamples: int = 2000, seed: int = 0) -> GainEstimate:
    """GainEstimate of paired payoff arrays (one value per unit)."""
    b, a = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if b.shape != a.shape or b.ndim != 1 or b.size < 2:
        raise ValueError(f"paired_gain needs two equal 1-D arrays of >= 2 units, got {b.shape} and {a.shape}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha={alpha!r}: must lie in (0, 0.5)")
    d = a - b
    m = d.size
    gain = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(m))
    lcb = gain - float(scipy_stats.t.ppf(1 - alpha, m - 1)) * se
    return GainEstimate(before=float(b.mean()), after=float(a.mean()), gain=gain, se=se, lcb=lcb,
                        lcb_bootstrap=bootstrap_lcb(d, alpha, resamples, seed), alpha=alpha, n=m)


def bootstrap_lcb(values, alpha: float, resamples: int = 2000, seed: int = 0) -> float:
    """The alpha-quantile of the bootstrap distribution of the mean (seeded, so deterministic)."""
    v = np.asarray(values, dtype=np.float64)
    if np.all(v == v[0]):
        return float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(1)
    return float(np.quantile(means, alpha))
