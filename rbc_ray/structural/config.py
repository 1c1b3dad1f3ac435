"""Calibrations and solver settings for the structural-RL models (frozen, validated dataclasses).

One dataclass per model; the field names are the spec's calibration keys (`beta`, `crra`, `rho_y`,
...), so `rbc-ray srl huggett --set sd_z=0` and `solve("huggett", overrides={"sd_z": 0})` speak the
same language as docs/structural-rl.md. Solver settings (learning rate, paths, tolerances, device)
live in the same object so that one `--set` namespace covers everything a run depends on.

Presets: `PRESETS[model]` is the spec's full-size calibration; `SMOKE[model]` shrinks only the
grids / paths / epochs (same economics) so tests and notebooks run in seconds on a CPU.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from ..config import ConfigError, coerce, deprecated, parse_override, parse_overrides, unknown_key

MODELS = ("huggett-pe", "huggett", "ks", "hank")


@dataclass(frozen=True)
class SolverSettings:
    """Policy-gradient settings shared by every model (spec section "Algorithm")."""

    lr: float = 1e-3
    """Adam learning rate before decay."""
    lr_decay: float = 0.5
    """Multiplicative learning-rate decay per `decay_epochs` epochs after the warm-up."""
    decay_epochs: int = 100
    """Epochs over which the learning rate falls by `lr_decay` (continuous exponential)."""
    warmup: int = 50
    """Warm-up epochs: constant lr, paths start from the fixed initial distribution."""
    clip_norm: float = 1.0
    """Global gradient-norm clip."""
    n_paths: int = 512
    """N, simulated paths of aggregate shocks per epoch."""
    e_converge: float = 3e-4
    """Converged when the 0.999-quantile of |delta theta| falls below this."""
    e_trunc: float = 1e-3
    """Truncation: T = ceil(log(e_trunc) / log(beta))."""
    terminal: str = "value"
    """Continuation value at the horizon: 'value' adds beta^T d_T . V, V the value of following the
    current policy forever at the epoch's starting prices (core/terminal.py); 'none' is the spec's
    truncated objective."""
    max_epochs: int = 1500
    """Hard cap on epochs (reported as not converged when hit)."""
    min_epochs: int = 0
    """Do not declare convergence before this many epochs (0: after the warm-up)."""
    c_min: float = 1e-3
    """Consumption floor."""
    seed: int = 0
    """Seed for the shock paths."""
    device: str = "cpu"
    """Torch device: 'cpu' or 'cuda' (or 'cuda:1')."""
    dtype: str = "float32"
    """Torch dtype of the simulation: 'float32' or 'float64'."""
    threads: int = 0
    """torch.set_num_threads (0: leave torch's default)."""
    kernel: str = "auto"
    """Rollout implementation: 'auto' (fused C++ kernel on CPU where it builds, else torch),
    'torch' (the torch rollout, autograd), 'fused' (fail if the kernel is unavailable)."""


@dataclass(frozen=True)
class HuggettCalibration(SolverSettings):
    """Huggett economy with aggregate TFP risk, zero bond supply (spec: "Huggett with aggregate risk")."""

    beta: float = 0.96
    crra: float = 2.0
    rho_y: float = 0.6
    sd_y: float = 0.2
    n_y: int = 3
    rho_z: float = 0.9
    sd_z: float = 0.02
    """TFP innovation standard deviation of log z; 0 gives the stationary economy."""
    n_z: int = 30
    borrowing_limit: float = -1.0
    bond_supply: float = 0.0
    n_b: int = 200
    b_max: float = 50.0
    r_min: float = 0.01
    r_max: float = 0.06
    n_r: int = 20
    price_lags: int = 0
    """Lagged interest rates r_{t-1} (1) and r_{t-2} (2) in the policy's state; 0: s(b, y, z, r)."""
    n_lag: int = 5
    """Nodes of each lagged-rate axis, uniform on [r_min, r_max] (coarser than the n_r grid)."""


@dataclass(frozen=True)
class HuggettPECalibration(HuggettCalibration):
    """Partial-equilibrium Huggett: exogenous r' = (1-rho_r) r_bar + rho_r r + sd_r sqrt(max(r,0)) eps."""

    sd_z: float = 0.0
    n_z: int = 1
    r_bar: float = 0.038
    rho_r: float = 0.8
    sd_r: float = 0.02


@dataclass(frozen=True)
class KSCalibration(SolverSettings):
    """Krusell-Smith, SRL variant: r = alpha z K^(alpha-1) - delta, w = (1-alpha) z K^alpha, L = 1."""

    lr: float = 5e-4
    e_converge: float = 2e-4
    e_trunc: float = 1e-2
    beta: float = 0.95
    crra: float = 3.0
    rho_y: float = 0.6
    sd_y: float = 0.2
    n_y: int = 3
    rho_z: float = 0.9
    sd_z: float = 0.03
    n_z: int = 30
    alpha: float = 0.36
    delta: float = 0.08
    borrowing_limit: float = 0.0
    n_b: int = 200
    b_max: float = 100.0
    r_min: float = 0.02
    r_max: float = 0.07
    n_r: int = 30
    w_min: float = 0.9
    w_max: float = 1.5
    n_w: int = 50
    price_lags: int = 0
    """Lagged interest rates r_{t-1} (1) and r_{t-2} (2) in the policy's state; 0: s(k, y, r, w)."""
    n_lag: int = 5
    """Nodes of each lagged-rate axis, uniform on [r_min, r_max] (coarser than the n_r grid)."""


@dataclass(frozen=True)
class HANKCalibration(SolverSettings):
    """One-asset HANK with Rotemberg pricing, Taylor rule and Fisher equation (u = log c - n^2/2)."""

    lr: float = 5e-3
    e_converge: float = 2e-3
    e_trunc: float = 1e-2
    beta: float = 0.975
    crra: float = 1.0
    frisch: float = 1.0
    rho_y: float = 0.6
    sd_y: float = 0.2
    n_y: int = 3
    rho_z: float = 0.9
    sd_z: float = 0.07
    n_z: int = 15
    rho_m: float = 0.9
    sd_m: float = 0.002
    n_m: int = 5
    theta: float = 100.0
    """Rotemberg adjustment-cost parameter."""
    epsilon: float = 10.0
    """Elasticity of substitution between varieties (Phillips-curve slope epsilon/theta = 0.1)."""
    phi_pi: float = 1.5
    R_bar: float = 1.025
    bond_supply: float = 5.0
    borrowing_limit: float = 0.0
    n_b: int = 200
    b_max: float = 100.0
    r_min: float = 0.01
    r_max: float = 0.04
    n_r: int = 30
    w_min: float = 0.55
    """Deviation from the spec's [0.7, 1.0]: with sd_z = 0.07 our clearing wage leaves that range
    (about 0.75-1.1 along simulated paths); --set w_min=0.7 --set w_max=1.0 restores the spec grid."""
    w_max: float = 1.25
    n_w: int = 30
    n_max: float = 3.0
    """Upper bound on hours."""
    n_min: float = 0.1
    """Lower bound on hours (keeps labour income above the proportional tax at b = 0)."""
    pi_max: float = 0.1
    """Bound on |inflation| of the firm policy."""
    lr_firm_scale: float = 0.1
    """Firm-policy learning rate relative to lr (inflation is an order of magnitude smaller than
    the households' shares and hours, and Adam moves every entry by about lr per step)."""
    w_extrapolate: float = 1.0
    """Grid steps the clearing may extrapolate beyond the w grid (0: clamp to the grid)."""


CALIBRATION_TYPES = {
    "huggett-pe": HuggettPECalibration,
    "huggett": HuggettCalibration,
    "ks": KSCalibration,
    "hank": HANKCalibration,
}

PRESETS: dict[str, SolverSettings] = {
    "huggett-pe": HuggettPECalibration(),
    "huggett": HuggettCalibration(),
    "ks": KSCalibration(),
    "hank": HANKCalibration(),
}

_SMOKE_SIZES: dict[str, dict[str, Any]] = {
    "huggett-pe": dict(n_b=60, n_r=10, n_paths=32, max_epochs=150, warmup=20, decay_epochs=40),
    "huggett": dict(n_b=60, n_r=10, n_z=7, n_paths=32, max_epochs=150, warmup=20, decay_epochs=40),
    "ks": dict(n_b=50, n_r=10, n_w=10, n_z=7, n_paths=32, max_epochs=150, warmup=20, decay_epochs=40),
    "hank": dict(n_b=40, n_r=8, n_w=14, n_z=7, n_m=3, n_paths=16, max_epochs=120, warmup=20,
                 decay_epochs=40),
}
SMOKE: dict[str, SolverSettings] = {m: replace(PRESETS[m], **kw) for m, kw in _SMOKE_SIZES.items()}

_POSITIVE_INT = {"n_b", "n_y", "n_z", "n_r", "n_w", "n_m", "n_paths", "max_epochs", "decay_epochs"}
_NONNEG_INT = {"warmup", "min_epochs", "threads", "seed"}
_UNIT_OPEN = {"beta", "e_trunc", "lr_decay", "alpha"}
_NONNEG = {"sd_y", "sd_z", "sd_m", "sd_r", "delta", "w_extrapolate"}
_POSITIVE = {"lr", "clip_norm", "e_converge", "c_min", "crra", "b_max", "theta", "epsilon",
             "frisch", "R_bar", "n_max", "n_min", "pi_max", "phi_pi", "lr_firm_scale"}
_CORR = {"rho_y", "rho_z", "rho_m", "rho_r"}
_LAG_KEYS = ("price_lags", "n_lag")


def _check(cal: SolverSettings) -> None:
    """Raise ConfigError naming the offending key when a value is out of its domain."""
    for f in fields(cal):
        k, v = f.name, getattr(cal, f.name)
        if k in _POSITIVE_INT and (not isinstance(v, int) or v < 1):
            raise ConfigError(f"{k} must be a positive integer, got {v!r}")
        if k in _NONNEG_INT and (not isinstance(v, int) or v < 0):
            raise ConfigError(f"{k} must be a non-negative integer, got {v!r}")
        if k in _UNIT_OPEN and not 0.0 < v < 1.0:
            raise ConfigError(f"{k} must lie in (0, 1), got {v!r}")
        if k in _NONNEG and v < 0:
            raise ConfigError(f"{k} must be >= 0, got {v!r}")
        if k in _POSITIVE and not v > 0:
            raise ConfigError(f"{k} must be > 0, got {v!r}")
        if k in _CORR and not -1.0 < v < 1.0:
            raise ConfigError(f"{k} must lie in (-1, 1), got {v!r}")
    if cal.dtype not in ("float32", "float64"):
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {cal.dtype!r}")
    if cal.terminal not in ("value", "none"):
        raise ConfigError(f"terminal must be 'value' or 'none', got {cal.terminal!r}")
    if cal.kernel not in ("auto", "torch", "fused"):
        raise ConfigError(f"kernel must be 'auto', 'torch' or 'fused', got {cal.kernel!r}")
    if not (cal.device == "cpu" or cal.device.startswith("cuda")):
        raise ConfigError(f"device must be 'cpu' or 'cuda[:i]', got {cal.device!r}")
    for lo, hi in (("r_min", "r_max"), ("w_min", "w_max")):
        if hasattr(cal, lo) and not getattr(cal, lo) < getattr(cal, hi):
            raise ConfigError(f"{lo} must be < {hi}, got {getattr(cal, lo)} >= {getattr(cal, hi)}")
    if hasattr(cal, "n_b") and cal.n_b < 4:
        raise ConfigError(f"n_b must be >= 4, got {cal.n_b}")
    for k in ("n_r", "n_w"):
        if hasattr(cal, k) and getattr(cal, k) < 2:
            raise ConfigError(f"{k} must be >= 2, got {getattr(cal, k)}")
    if hasattr(cal, "borrowing_limit") and not cal.borrowing_limit < cal.b_max:
        raise ConfigError(f"borrowing_limit must be < b_max, got {cal.borrowing_limit} >= {cal.b_max}")
    if hasattr(cal, "price_lags"):
        if cal.price_lags not in (0, 1, 2) or isinstance(cal.price_lags, bool):
            raise ConfigError(f"price_lags must be 0, 1 or 2, got {cal.price_lags!r}")
        if not isinstance(cal.n_lag, int) or isinstance(cal.n_lag, bool) or cal.n_lag < 2:
            raise ConfigError(f"n_lag must be an integer >= 2, got {cal.n_lag!r}")
        if isinstance(cal, HuggettPECalibration) and cal.price_lags:
            raise ConfigError("price_lags is not supported for huggett-pe: its rate is a first-order Markov "
                              "chain, so r_{t-1} says nothing about r_{t+1} that r_t does not")
    if isinstance(cal, HuggettCalibration) and not cal.r_min > -1.0:
        raise ConfigError(f"r_min must be > -1, got {cal.r_min}")


def calibration(model: str, overrides: Mapping[str, Any] | None = None,
                smoke: bool = False) -> SolverSettings:
    """The preset for `model` (spec or smoke size) with `overrides` applied and validated.

    Unknown keys and out-of-domain values raise ValueError naming the key.
    """
    if model not in CALIBRATION_TYPES:
        raise ConfigError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    base = SMOKE[model] if smoke else PRESETS[model]
    types = typing.get_type_hints(type(base))
    parsed = {}
    for k, v in (overrides or {}).items():
        if k not in types and k in _LAG_KEYS:
            raise ConfigError(f"{k}: price lags are not supported for {model} (huggett and ks only; "
                              "docs/structural-rl.md, section Price lags, gives the table sizes)")
        if k not in types:
            raise ConfigError(unknown_key(k, k, types, f"calibration keys of {model}"))
        if isinstance(v, str) and types[k] is not str:  # a Python caller's string: read it as YAML
            v = parse_override(f"{k}={v}")[1]
        parsed[k] = coerce(k, types[k], v)
    cal = replace(base, **parsed)
    _check(cal)
    return cal


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """Deprecated spelling of `rbc_ray.config.parse_overrides` (values parsed as YAML)."""
    deprecated("rbc_ray.structural.config.parse_sets", "rbc_ray.config.parse_overrides")
    return parse_overrides(items)


def as_dict(cal: SolverSettings) -> dict[str, Any]:
    """Plain dict of a calibration (for JSON, YAML and Parquet metadata)."""
    return dataclasses.asdict(cal)


__all__ = ["MODELS", "SolverSettings", "HuggettCalibration", "HuggettPECalibration", "KSCalibration",
           "HANKCalibration", "PRESETS", "SMOKE", "calibration", "parse_sets", "as_dict"]
