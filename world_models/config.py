"""Typed config dataclasses from ``key=value`` command-line overrides, and grid expansion.

``apply_overrides(cfg, ["lr=1e-3", "g_dim=128"])`` converts each value to the field's type and
rejects unknown keys with the list of valid ones. ``expand_grid(["seed=0,1,2", "beta=1e-4,1e-3"])``
gives every combination (as the SPACE-Time reference's multi_train does). ``read_config_file``
reads a YAML config file (PyYAML, a flat mapping) into the same ``key=value`` overrides.
"""

from __future__ import annotations

import dataclasses
import itertools
import typing
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A bad override: unknown key or a value of the wrong type."""


def _convert(text: str, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(text, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: cannot read {text!r} as {annotation}")
    if origin is typing.Literal:
        if text not in args:
            raise ConfigError(f"{key}: {text!r} is not one of {', '.join(map(str, args))}")
        return text
    if origin in (tuple, list):
        parts = [p.strip() for p in text.strip("()[]").split(",") if p.strip()]
        inner = args[0] if args else str
        return origin(_convert(p, inner, key) for p in parts)
    try:
        if annotation is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if annotation in (int, float, str):
            return annotation(float(text)) if annotation is int and "e" in text.lower() else annotation(text)
    except ValueError:
        raise ConfigError(f"{key}: cannot read {text!r} as {annotation.__name__}") from None
    raise ConfigError(f"{key}: unsupported field type {annotation}")


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parse_pairs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"expected key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def apply_overrides(configs: list[Any], pairs: dict[str, str]) -> list[Any]:
    """Return copies of the dataclass instances ``configs`` with ``pairs`` applied.

    A key is looked up in each config in turn; a key none of them has is an error naming every
    valid key.
    """
    updated = list(configs)
    for key, text in pairs.items():
        for i, cfg in enumerate(updated):
            types = field_types(type(cfg))
            if key in types:
                updated[i] = dataclasses.replace(cfg, **{key: _convert(text, types[key], key)})
                break
        else:
            valid = sorted({k for cfg in configs for k in field_types(type(cfg))})
            raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(valid)}")
    return updated


def expand_grid(pairs: list[str]) -> list[dict[str, str]]:
    """``["seed=0,1", "beta=1e-4,1e-3"]`` -> 4 dicts, one per combination (in order)."""
    parsed = parse_pairs(pairs)
    keys = list(parsed)
    values = [_split_values(parsed[k]) for k in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def _split_values(text: str) -> list[str]:
    if text.startswith(("(", "[")):
        return [text]  # a tuple value, not a grid
    return [v for v in text.split(",") if v != ""] or [text]


def run_name(combo: dict[str, str], varying: list[str]) -> str:
    """Short directory name of one grid point, from the keys that vary, e.g. ``seed=1-beta=0.001``."""
    return "-".join(f"{k}={combo[k]}" for k in varying) or "run"


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build ``cls`` from a saved dict, turning lists back into tuples where the field is a tuple."""
    types = field_types(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in types:
            continue
        if typing.get_origin(types[key]) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def read_config_file(path: str | Path) -> list[str]:
    """A YAML config file (a flat mapping of ``key: value``) -> ``["key=value", ...]`` overrides, in file order.

    Read with PyYAML's safe loader (no tags, nothing constructed). Values are typed later, by the config
    field they set, exactly as command-line overrides are; a nested value (a list or mapping) is an error
    naming its key, since overrides are flat (and a comma in a value means a grid).
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of 'key: value' lines, got a {type(data).__name__}")
    out = []
    for key, value in data.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"{path}: {key!r} is not a config key")
        if value is None or isinstance(value, (list, dict)):
            raise ConfigError(f"{path}: {key}: expected one value, got {value!r}")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        out.append(f"{key}={text}")
    return out
