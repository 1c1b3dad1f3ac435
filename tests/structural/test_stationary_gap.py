"""Stationary Krusell-Smith at the full preset against the independent EGM solver (egm.py).

Without aggregate risk (sd_z = 0) SRL's capital must match the EGM equilibrium on the same
calibration. The spec's truncated objective (terminal='none') leaves households near the horizon no
reason to save, and the policy shared by all periods saves too little: K about 4% low at the preset's
e_trunc = 1e-2. The continuation value at the horizon (terminal='value', the default) closes that.
What remains at the preset (+0.3 to +0.45%) does not move with e_trunc (1e-2 and 1e-3 settle at the
same K); on a histogram grid of 400 nodes, trained to 800 epochs, SRL meets EGM within 0.2%
(measured -0.006%). Without aggregate risk every path is the same economy, so that run uses one path.
"""

import functools

import pytest
import torch

from rbc_ray.structural import egm, solve
from rbc_ray.structural.config import calibration

TIGHT = dict(n_b=400, n_paths=1, max_epochs=800, e_converge=1e-9)
"""The 0.2% settings: a finer histogram grid and a fixed 800 epochs (e_converge never met)."""


@functools.lru_cache(maxsize=None)
def _egm_capital(n_b: int) -> float:
    return egm.ks_equilibrium(calibration("ks", {"sd_z": 0.0, "n_b": n_b})).K  # about 20 s at n_b = 200


def _gap(overrides) -> float:
    torch.set_num_threads(1)
    res = solve("ks", {"sd_z": 0.0, "threads": 1, **overrides}, euler=False)
    return res.mean_K / _egm_capital(res.calibration.n_b) - 1


@pytest.mark.slow
def test_ks_stationary_capital_at_the_preset_within_one_percent_of_egm():
    """The full preset (512 paths, e_trunc 1e-2): within 1% with the continuation value (measured
    +0.44%), where the truncated objective is about 4% low (measured -4.3%)."""
    assert abs(_gap({})) < 0.01
    assert _gap({"terminal": "none"}) < -0.02


@pytest.mark.slow
def test_ks_stationary_capital_on_a_finer_grid_within_0p2_percent_of_egm():
    """n_b 400, 800 epochs, one path (about 5 minutes on a loaded 2-core CPU): within 0.2%."""
    assert abs(_gap(TIGHT)) < 0.002
