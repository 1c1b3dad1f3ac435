"""Calibration presets and validation: bad input is rejected with the offending key named."""

import dataclasses

import pytest

from rbc_ray.structural.config import PRESETS, calibration, parse_sets


def test_presets_are_the_spec_calibrations():
    h, ks, hank = PRESETS["huggett"], PRESETS["ks"], PRESETS["hank"]
    assert (h.beta, h.crra, h.rho_y, h.sd_y, h.rho_z, h.sd_z, h.borrowing_limit, h.n_b, h.b_max,
            h.n_r, h.r_min, h.r_max, h.n_z, h.n_paths, h.lr, h.e_converge, h.e_trunc) == (
        0.96, 2.0, 0.6, 0.2, 0.9, 0.02, -1.0, 200, 50.0, 20, 0.01, 0.06, 30, 512, 1e-3, 3e-4, 1e-3)
    assert (ks.beta, ks.crra, ks.alpha, ks.delta, ks.sd_z, ks.n_r, ks.n_w, ks.b_max, ks.lr,
            ks.e_converge, ks.e_trunc) == (0.95, 3.0, 0.36, 0.08, 0.03, 30, 50, 100.0, 5e-4, 2e-4, 1e-2)
    assert (hank.beta, hank.theta, hank.epsilon, hank.phi_pi, hank.R_bar, hank.bond_supply, hank.sd_z,
            hank.sd_m, hank.lr, hank.e_converge) == (0.975, 100.0, 10.0, 1.5, 1.025, 5.0, 0.07, 0.002, 5e-3, 2e-3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        h.beta = 0.9


def test_overrides_are_parsed_into_field_types():
    cal = calibration("huggett", parse_sets(["beta=0.95", "n_b=100", "sd_z=0", "device=cpu"]))
    assert cal.beta == 0.95 and cal.n_b == 100 and isinstance(cal.n_b, int) and cal.sd_z == 0.0


@pytest.mark.parametrize("key,value,needle", [
    ("betta", "0.9", "betta"), ("beta", "1.0", "beta"), ("beta", "abc", "beta"), ("n_b", "-5", "n_b"),
    ("n_b", "2.5", "n_b"), ("sd_z", "-0.1", "sd_z"), ("r_min", "0.07", "r_min"), ("dtype", "float16", "dtype"),
    ("device", "tpu", "device"), ("rho_z", "1.0", "rho_z"), ("n_paths", "0", "n_paths"),
])
def test_bad_values_raise_naming_the_key(key, value, needle):
    with pytest.raises(ValueError, match=needle):
        calibration("huggett", {key: value})


def test_model_specific_keys():
    assert calibration("ks", {"alpha": "0.3"}).alpha == 0.3
    with pytest.raises(ValueError, match="alpha"):
        calibration("huggett", {"alpha": "0.3"})
    with pytest.raises(ValueError, match="unknown model"):
        calibration("aiyagari")
    with pytest.raises(ValueError, match="key=value"):
        parse_sets(["beta"])
