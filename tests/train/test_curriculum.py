"""Curriculum schedules at given episodes (numbers from the spec) and the compress knob."""

import math

import pytest

from rbc_ray.economy import EconomyConfig, Params
from rbc_ray.train import Curriculum, CurriculumConfig


def approx(a, b):
    return all(abs(x - y) < 1e-9 for x, y in zip(a, b)) if isinstance(a, tuple) else abs(a - b) < 1e-9


def test_reference_schedule_values():
    c = Curriculum(CurriculumConfig())
    assert approx(c.price_range(0), (1000.0, 1000.0)) and approx(c.wage_range(0), (22.0, 22.0))
    assert approx(c.price_range(15_000), (500.0, 1750.0)) and approx(c.wage_range(15_000), (11.0, 33.0))
    assert approx(c.price_range(30_000), (0.0, 2500.0)) and approx(c.wage_range(30_000), (0.0, 44.0))
    assert approx(c.price_range(90_000), (0.0, 2500.0))
    assert c.tax_cap(0) == 0.0 and c.tax_cap(30_000) == 0.0
    assert approx(c.tax_cap(45_000), 0.5) and c.tax_cap(60_000) == 1.0 and c.tax_cap(150_000) == 1.0
    assert approx(c.theta_factor(0), 0.0) and approx(c.theta_factor(10_000), 1 - math.exp(-1))


def test_training_starts_and_entropy_restarts():
    c = Curriculum(CurriculumConfig())
    assert c.training("consumer", 0)
    assert not c.training("firm", 29_999) and c.training("firm", 30_000)
    assert not c.training("government", 59_999) and c.training("government", 60_000)
    assert approx(c.entropy_coef("consumer", 10_000), 0.5 * math.exp(-1))
    assert approx(c.entropy_coef("consumer", 100_000), 0.05)               # floor 0.1 x 0.5
    assert approx(c.entropy_coef("firm", 30_000), 0.5)                     # restarts at its start
    assert approx(c.entropy_coef("firm", 40_000), 0.5 * math.exp(-1))
    assert approx(c.entropy_coef("government", 65_000), 0.5 * math.exp(-0.5))


def test_compress_divides_every_episode_count():
    c = Curriculum(CurriculumConfig(compress=10))
    assert not c.training("firm", 2_999) and c.training("firm", 3_000) and c.training("government", 6_000)
    assert approx(c.price_range(1_500), (500.0, 1750.0))
    assert approx(c.tax_cap(4_500), 0.5)
    assert approx(c.theta_factor(1_000), 1 - math.exp(-1))
    assert approx(c.entropy_coef("firm", 4_000), 0.5 * math.exp(-1))


def test_frozen_types_never_train():
    c = Curriculum(CurriculumConfig(firm_start=0), frozen=("firm",))
    assert not c.training("firm", 10**6) and c.training("consumer", 0)


def test_masks_allow_exactly_the_scheduled_grid_values():
    params = Params.build(EconomyConfig())
    c = Curriculum(CurriculumConfig())
    m = c.masks(params, 0)
    assert m["consumer"] is None
    price, wage = m["firm"]
    assert (price == 0).tolist() == [False, False, True, False, False, False]      # price 1000 only
    assert (wage == 0).tolist() == [False, False, True, False, False]              # wage 22 only
    assert (m["government"][0] == 0).tolist() == [True] + [False] * 5              # tax 0 only
    price, wage = c.masks(params, 15_000)["firm"]
    assert (price == 0).tolist() == [False, True, True, True, False, False]        # 500..1750
    assert (wage == 0).tolist() == [False, True, True, True, False]                # 11..33
    assert (c.masks(params, 45_000)["government"][1] == 0).tolist() == [True, True, True, False, False, False]
    open_ = Curriculum(CurriculumConfig(masks=False)).masks(params, 0)
    assert open_["firm"] is None and open_["government"] is None


def test_invalid_curriculum_names_key():
    from rbc_ray.train import ExperimentConfig
    with pytest.raises(ValueError, match="curriculum.compress"):
        ExperimentConfig.from_dict({"curriculum": {"compress": 0}})
