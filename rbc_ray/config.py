"""The one config engine: YAML files, dotted `--set` overrides, typed frozen dataclasses, validation.

Every config in rbc-ray (the economy, a training experiment, an SRL calibration, a sweep) is a frozen
dataclass built from a plain mapping by `build`, which checks each key and type and names the
offending dotted key in a `ConfigError`. Overrides are `KEY=VALUE` strings whose key is a dotted
path into the mapping and whose value is parsed as YAML (`train.n_envs=8`, `train.frozen=[firm]`,
`sd_z=0`), the same syntax for `rbc-ray train`, `sweep` and `srl`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
import warnings
from typing import Any, Iterable, Mapping

import yaml


class ConfigError(ValueError):
    """A bad configuration value or key; the message names the offending dotted key."""


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping a YAML file holds; a missing file, bad YAML or a non-mapping is a ConfigError."""
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"experiment file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"experiment file {str(path)!r} is a folder, not a YAML file") from None
    except OSError as err:
        raise ConfigError(f"experiment file {str(path)!r} cannot be read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"experiment file {str(path)!r} is not a text (UTF-8) YAML file: byte {err.start} "
                          f"is {err.object[err.start:err.start + 1]!r}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{str(path)!r} is not valid YAML{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"experiment file {str(path)!r} is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"experiment file {str(path)!r} must hold a YAML mapping, not a {type(data).__name__}")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value parsed as YAML; an empty value is None)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value (e.g. train.n_envs=8)")
    key, text = item.split("=", 1)
    parts = key.strip().split(".")
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"override {item!r}: bad key {key.strip()!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text.strip()  # not YAML (e.g. an unbalanced bracket): the type check names the key
    return parts, value


def parse_overrides(items: Iterable[str] | None) -> dict[str, Any]:
    """`["beta=0.95", "n_b=100"]` -> {"beta": 0.95, "n_b": 100}: flat overrides (an SRL calibration)."""
    out: dict[str, Any] = {}
    for item in items or ():
        parts, value = parse_override(item)
        out[".".join(parts)] = value
    return out


def apply_override(raw: dict, item: str, sections: Iterable[str] | None = None) -> None:
    """Set `a.b.c=value` in a nested mapping, in place; `sections` lists the allowed top-level keys."""
    parts, value = parse_override(item)
    key = ".".join(parts)
    if sections is not None and parts[0] not in sections:
        raise ConfigError(unknown_key(key, parts[0], sections, "top-level keys"))
    node = raw
    for depth, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"unknown key {key!r}: {'.'.join(parts[:depth + 1])} is not a section")
        node = nxt
    node[parts[-1]] = value


def unknown_key(key: str, name: str, known: Iterable[str], what: str) -> str:
    """The message for an unknown key, with a did-you-mean when a known key is close."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}; {what}: {known}"


_NAMES = {bool: "bools", int: "ints", float: "numbers", str: "strings"}


def coerce(key: str, hint: Any, value: Any) -> Any:
    """`value` as the field type `hint` (bool, int, float, str, dict, tuple[...]); else ConfigError."""
    if isinstance(hint, str):  # `from __future__ import annotations` without get_type_hints
        hint = {"bool": bool, "int": int, "float": float, "str": str, "dict": dict}.get(hint, hint)
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be a bool (true or false), got {value!r}")
        return value
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an int, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            value = float(value)
        except OverflowError:  # an int too large for a float
            raise ConfigError(f"{key} must be a finite number, got {value!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    if hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        what = f"a list of {_NAMES.get(item, item)}"
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be {what}, got {value!r}")
        try:
            return tuple(coerce(key, item, v) for v in value)
        except ConfigError:
            raise ConfigError(f"{key} must be {what}, got {value!r}") from None
    raise ConfigError(f"{key}: unsupported config type {hint!r}")


def build(cls: type, values: Any, prefix: str = "", base: Any = None) -> Any:
    """Dataclass `cls` from a mapping, checking every key and type; nested dataclasses recurse and
    start from `base`'s values (so a parent can give per-section defaults). Errors name the key."""
    where = prefix or "config"
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    base = cls() if base is None else base
    known = {f.name for f in dataclasses.fields(cls)}
    changes = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in known:
            raise ConfigError(unknown_key(key, str(name), known, f"known keys of {where}"))
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            changes[name] = build(hint, value, key, getattr(base, name))
        else:
            changes[name] = coerce(key, hint, value)
    return dataclasses.replace(base, **changes)


def plain(x: Any) -> Any:
    """A dataclass or nested mapping as plain dicts and lists (tuples become lists), for YAML/JSON."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        x = dataclasses.asdict(x)
    if isinstance(x, Mapping):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


def deprecated(old: str, new: str) -> None:
    """Warn once per call site that spelling `old` is deprecated in favour of `new`."""
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}",
                  FutureWarning, stacklevel=3)
