"""Shared solves, cached for the whole test run, at reduced sizes (each is used by several tests)."""

import functools

import pytest
import torch

from rbc_ray.structural import solve
from rbc_ray.structural import egm
from rbc_ray.structural.config import calibration

torch.set_num_threads(1)

# Stationary (sd_z = 0) runs: every path is identical, so one path suffices.
# Tolerances are tighter than the spec's run settings: e_converge / 10, e_trunc 1e-4 for Huggett
# (truncation at 1e-3 alone shifts r by about 1e-4) and 1e-3 for Krusell-Smith (without the continuation
# value at the horizon, terminal='none', the spec's 1e-2 lowers K by about 4%), n_b 200 for KS (coarse
# histograms bias K).
HUGGETT_STATIONARY = dict(sd_z=0.0, n_paths=1, n_b=120, n_r=10, lr=3e-3, e_converge=3e-5, e_trunc=1e-4,
                          warmup=30, decay_epochs=60, max_epochs=300, dtype="float64")
KS_STATIONARY = dict(sd_z=0.0, n_paths=1, n_b=200, n_r=10, n_w=10, lr=2e-3, e_converge=2e-5, e_trunc=1e-3,
                     warmup=30, decay_epochs=60, max_epochs=300, dtype="float64")
HUGGETT_RISK = dict(n_b=50, n_r=8, n_z=5, n_paths=16, max_epochs=30, warmup=10)
# HANK in CI: smoke grids at the spec's TFP sd 0.07 (the preset).
HANK_SMOKE = dict(max_epochs=90)  # the spec's sd_z = 0.07


@functools.lru_cache(maxsize=None)
def _solve(model, items):
    return solve(model, dict(items), smoke=True)


@pytest.fixture(scope="session")
def huggett_stationary():
    return _solve("huggett", tuple(sorted(HUGGETT_STATIONARY.items())))


@pytest.fixture(scope="session")
def huggett_stationary_egm():
    return egm.huggett_equilibrium(calibration("huggett", HUGGETT_STATIONARY, smoke=True))


@pytest.fixture(scope="session")
def ks_stationary():
    return _solve("ks", tuple(sorted(KS_STATIONARY.items())))


@pytest.fixture(scope="session")
def ks_stationary_egm():
    return egm.ks_equilibrium(calibration("ks", KS_STATIONARY, smoke=True))


@pytest.fixture(scope="session")
def huggett_risk():
    return _solve("huggett", tuple(sorted(HUGGETT_RISK.items())))


@pytest.fixture(scope="session")
def hank_smoke():
    return _solve("hank", tuple(sorted(HANK_SMOKE.items())))
