"""Experiment config: YAML files, --set overrides, unknown keys, validation, round trip."""

from pathlib import Path

import pytest

from rbc_ray.train import ExperimentConfig, load_experiment

CONFIGS = Path(__file__).resolve().parents[2] / "tune_configs"
MINE = ["closed_rbc", "open_rbc", "open_rbc_small", "open_rbc_smoke", "closed_rbc_smoke", "spectrum", "seeds"]


@pytest.mark.parametrize("name", MINE)
def test_every_experiment_yaml_loads_and_round_trips(name):
    cfg, tune = load_experiment(CONFIGS / f"{name}.yaml")
    assert cfg.name == name
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg
    assert isinstance(tune, dict)


def test_paper_configs_are_paper_scale():
    for name, open_ in (("open_rbc", True), ("closed_rbc", False)):
        cfg, _ = load_experiment(CONFIGS / f"{name}.yaml")
        e = cfg.economy_config
        assert (e.n_consumers, e.n_firms, e.episode_length, e.open_economy) == (100, 10, 10, open_)
        assert cfg.train.n_envs == 128 and cfg.train.total_episodes == 150_000
        assert cfg.curriculum.firm_start == 30_000 and cfg.curriculum.government_start == 60_000


def test_spectrum_and_seeds_tune_sections():
    _, tune = load_experiment(CONFIGS / "spectrum.yaml")
    grid = tune["grid"]
    assert grid["economy.p_export"] == [500, 1000] and grid["economy.q_export"] == [10, 50, 100, 1000]
    assert grid["economy.welfare"] == ["consumer", "total"] and tune["seeds"]
    _, tune = load_experiment(CONFIGS / "seeds.yaml")
    assert tune["seeds"][:3] == [0, 1, 2]


def test_overrides_parse_yaml_scalars_and_dotted_paths():
    cfg, tune = load_experiment(CONFIGS / "open_rbc_smoke.yaml", [
        "train.n_envs=8", "economy.n_firms=3", "policies.firm.lr=1e-4", "curriculum.compress=10",
        "train.frozen=[firm]", "policies.consumer.hidden=[8, 8]", "economy.welfare=consumer",
        "curriculum.masks=false", "tune.max_concurrent=1"])
    assert cfg.train.n_envs == 8 and cfg.economy_config.n_firms == 3
    assert cfg.policies.firm.lr == 1e-4 and cfg.curriculum.compress == 10.0
    assert cfg.train.frozen == ("firm",) and cfg.policies.consumer.hidden == (8, 8)
    assert cfg.economy_config.welfare == "consumer" and cfg.curriculum.masks is False
    assert tune["max_concurrent"] == 1
    # a type's defaults survive a partial override
    assert cfg.policies.government.lr == 5e-5 and cfg.policies.firm.reward_scale == 30000


@pytest.mark.parametrize("item,key", [
    ("train.n_env=8", "train.n_env"), ("economy.n_firm=3", "economy.n_firm"),
    ("policies.firm.lrr=1", "policies.firm.lrr"), ("policies.bank.lr=1", "policies.bank"),
    ("curriculum.speed=2", "curriculum.speed"), ("foo.bar=1", "foo.bar"),
    ("train.n_envs.x=1", "train.n_envs.x"),
])
def test_unknown_keys_raise_naming_the_full_key(item, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_experiment(CONFIGS / "open_rbc_smoke.yaml", [item])


@pytest.mark.parametrize("item,key", [
    ("train.n_envs=0", "train.n_envs"), ("train.n_envs=abc", "train.n_envs"),
    ("policies.consumer.lr=-1", "policies.consumer.lr"), ("economy.n_firms=0", "economy.n_firms"),
    ("train.frozen=[bank]", "train.frozen"), ("policies.firm.returns=mc", "policies.firm.returns"),
])
def test_bad_values_raise_naming_the_key(item, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_experiment(CONFIGS / "open_rbc_smoke.yaml", [item])


def test_override_without_equals_is_an_error():
    with pytest.raises(ValueError, match="key=value"):
        load_experiment({}, ["train.n_envs"])


def test_defaults_are_the_reference():
    cfg = ExperimentConfig()
    assert cfg.train.n_envs == 128
    assert [cfg.agent(k).reward_scale for k in ("consumer", "firm", "government")] == [5, 30000, 1000]
    assert cfg.policies.government.lr == 5e-5 and cfg.policies.consumer.clip == 0.1
    assert cfg.policies.consumer.max_grad_norm == 2 and cfg.policies.consumer.epochs == 2
