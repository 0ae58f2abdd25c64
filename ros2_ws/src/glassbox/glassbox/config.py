"""Typed configuration: frozen dataclasses loaded from YAML, with unknown keys and wrong types rejected.

Every component has one frozen dataclass (``ProjectionConfig``, ``SpiConfig``, ...). ``load_config`` reads a YAML
file into one, ``from_dict`` builds one from a mapping (nested dataclasses included). Errors name the key and
the file, e.g. ``config/lidar.yaml: unknown key 'projection.heigth' (known: height, width, ...)``.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or mapping does not match its dataclass."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert where lossless (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, tp, key, source)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{source}: key '{key}' must be one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' expects a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, source, prefix=f"{key}.")
    if origin in (tuple, list):
        return _coerce_sequence(value, tp, key, source)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' expects a mapping, got {value!r}")
        return dict(value)
    if tp in _SCALARS:
        return _coerce_scalar(value, tp, key, source)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{source}: key '{key}' expects {_type_name(tp)}, got {value!r}")
    return value


def _coerce_union(value: Any, tp: Any, key: str, source: str) -> Any:
    """The first member of the union that accepts ``value`` (None for an optional left empty)."""
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(value, arg, key, source)
        except ConfigError:
            continue
    raise ConfigError(f"{source}: key '{key}' expects {_type_name(tp)}, got {value!r}")


def _coerce_sequence(value: Any, tp: Any, key: str, source: str) -> Any:
    """A list or tuple annotation: ``tuple[X, ...]``, fixed ``tuple[X, Y]`` or ``list[X]``, item by item."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{source}: key '{key}' expects a list, got {value!r}")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        items = [_coerce(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
    elif origin is tuple and args:
        if len(args) != len(value):
            raise ConfigError(f"{source}: key '{key}' expects {len(args)} items, got {len(value)}")
        items = [_coerce(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args))]
    else:
        items = [_coerce(v, args[0], f"{key}[{i}]", source) if args else v for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


_SCALARS = (float, int, bool, str)


def _coerce_scalar(value: Any, tp: type, key: str, source: str) -> Any:
    """float (ints accepted and converted), int, bool and str; bools are never numbers here."""
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp)
    if not ok:
        expects = "bool (true/false)" if tp is bool else tp.__name__
        raise ConfigError(f"{source}: key '{key}' expects {expects}, got {value!r}")
    return float(value) if tp is float else value


def _build(cls: type[T], data: dict, source: str, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key '{prefix}{unknown[0]}' for {cls.__name__} (known: {', '.join(sorted(fields))})")
    kwargs = {name: _coerce(value, hints[name], prefix + name, source) for name, value in data.items()}
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{source}: missing required key '{prefix}{missing[0]}' for {cls.__name__}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # __post_init__ validation
        raise ConfigError(f"{source}: invalid {cls.__name__}: {exc}") from exc


def from_dict(cls: type[T], data: dict | None, source: str = "<dict>") -> T:
    """Build the dataclass ``cls`` from a (possibly nested) mapping; unknown keys and wrong types raise."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    return _build(cls, data, source)


def read_yaml(path: str | Path, section: str | None = None) -> Any:
    """The content of a YAML file (or of its top-level ``section``); errors name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if section is not None:
        if not isinstance(data, dict) or section not in data:
            known = ", ".join(data) if isinstance(data, dict) else "none"
            raise ConfigError(f"{path}: no section '{section}' (sections: {known})")
        data = data[section]
    return data


def load_config(path: str | Path, cls: type[T], section: str | None = None) -> T:
    """Load ``cls`` from the YAML file ``path`` (optionally from its top-level ``section``)."""
    return from_dict(cls, read_yaml(path, section), source=str(path))


def to_dict(cfg: Any) -> dict:
    """Plain-dict form of a config dataclass (tuples become lists), e.g. to store inside a checkpoint."""
    def convert(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [convert(x) for x in v]
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        return v
    return {k: convert(v) for k, v in dataclasses.asdict(cfg).items()}


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted-name view (``projection.height``) of a nested config, as used by ROS node parameters."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out
