"""The one config engine (rbc_ray/config.py): YAML files, dotted YAML-typed overrides, typed
dataclasses, one error format naming the key, for experiments and SRL calibrations alike."""

from dataclasses import dataclass, field

import pytest

from rbc_ray.config import (ConfigError, apply_override, build, coerce, parse_override, parse_overrides, plain,
                            read_yaml)


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    widths: tuple[int, ...] = (128, 128)


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    steps: int = 10
    on: bool = False
    inner: Inner = field(default_factory=Inner)


def test_overrides_are_dotted_keys_with_yaml_values():
    assert parse_override("train.n_envs=8") == (["train", "n_envs"], 8)
    assert parse_override("train.frozen=[firm, government]") == (["train", "frozen"], ["firm", "government"])
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=") == (["a"], None)
    assert parse_overrides(["sd_z=0", "beta=0.95", "kernel=torch"]) == {"sd_z": 0, "beta": 0.95, "kernel": "torch"}
    raw = {"train": {"seed": 0}}
    apply_override(raw, "train.n_envs=4", sections=("train",))
    apply_override(raw, "train.deeper.key=1", sections=("train",))
    assert raw == {"train": {"seed": 0, "n_envs": 4, "deeper": {"key": 1}}}


@pytest.mark.parametrize("item,needle", [("novalue", "key=value"), ("a..b=1", "bad key"), ("=3", "bad key"),
                                         ("trian.n_envs=3", "did you mean 'train'")])
def test_bad_overrides_name_the_problem(item, needle):
    with pytest.raises(ConfigError, match=needle):
        apply_override({}, item, sections=("train", "economy"))


def test_build_types_every_field_and_names_the_dotted_key():
    cfg = build(Outer, {"steps": 3, "inner": {"lr": "1e-4", "widths": [64]}})
    assert cfg == Outer(steps=3, inner=Inner(lr=1e-4, widths=(64,)))
    assert plain(cfg) == {"name": "x", "steps": 3, "on": False, "inner": {"lr": 1e-4, "widths": [64]}}
    for values, needle in [({"steps": "3"}, "steps must be an int"), ({"on": 1}, "on must be a bool \\(true or false\\)"),
                           ({"inner": {"lr": "fast"}}, "inner.lr must be a number"),
                           ({"inner": {"widths": ["a"]}}, "inner.widths must be a list of ints"),
                           ({"inner": {"widths": 64}}, "inner.widths must be a list of ints"),
                           ({"inner": 3}, "inner must be a mapping"),
                           ({"inner": {"lrr": 1}}, "unknown key 'inner.lrr' \\(did you mean 'lr'\\?\\)")]:
        with pytest.raises(ConfigError, match=needle):
            build(Outer, values)


def test_integral_floats_are_ints_and_other_floats_are_not():
    assert coerce("n", int, 4.0) == 4
    with pytest.raises(ConfigError, match="n must be an int"):
        coerce("n", int, 4.5)
    with pytest.raises(ConfigError, match="n must be an int"):
        coerce("n", int, True)


def test_yaml_files_give_one_line_errors_with_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  n_envs: [1, 2\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+, column \d+"):
        read_yaml(bad)
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        read_yaml(tmp_path / "empty.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping, not a list"):
        read_yaml(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        read_yaml(tmp_path / "missing.yaml")


def test_experiments_and_srl_calibrations_speak_the_same_override_syntax():
    from rbc_ray.structural import calibration
    from rbc_ray.train import load_experiment

    cfg, _ = load_experiment({"name": "t"}, ["train.n_envs=8", "train.frozen=[firm]", "policies.firm.lr=1e-4"])
    assert cfg.train.n_envs == 8 and cfg.train.frozen == ("firm",) and cfg.policies.firm.lr == 1e-4
    cal = calibration("huggett", parse_overrides(["n_b=100", "sd_z=0", "e_trunc=1e-3", "kernel=torch"]))
    assert cal.n_b == 100 and cal.sd_z == 0.0 and cal.e_trunc == 1e-3 and cal.kernel == "torch"
    with pytest.raises(ConfigError, match="n_b must be an int"):
        calibration("huggett", parse_overrides(["n_b=[1]"]))
    with pytest.raises(ConfigError, match="did you mean 'beta'"):
        calibration("huggett", parse_overrides(["betta=0.9"]))
