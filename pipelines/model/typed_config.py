"""Load YAML files into frozen dataclasses, strictly.

Every config file (environments, contracts, pipeline specs) goes through `load_typed`: an unknown key, a
missing required key or a value of the wrong type is a `ConfigError` naming the file and the key path.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pipelines.errors import ConfigError

T = TypeVar("T")

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def read_yaml(path: Path) -> Any:
    """Parse one YAML file; a missing file or a syntax error is a ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None


def load_typed(cls: type[T], path: Path) -> T:
    """Read `path` and build an instance of the frozen dataclass `cls` from it."""
    data = read_yaml(path)
    if data is None:
        data = {}
    return build(cls, data, source=str(path), key="")


def expand_env(value: str, source: str, key: str) -> str:
    """Replace `${VAR}` with the environment variable VAR; an unset variable is an error naming it."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(
                f"{source}: key '{key}' refers to environment variable {name}, which is not set: "
                f"export {name}=... before running"
            )
        return os.environ[name]

    return _ENV_REF.sub(repl, value)


def refers_to_env(value: object) -> bool:
    """True when a raw config value takes (part of) its text from an environment variable."""
    return isinstance(value, str) and bool(_ENV_REF.search(value))


def build(tp: Any, data: Any, source: str, key: str) -> Any:
    """Convert plain YAML data into `tp` (a dataclass, primitive, Optional, tuple or mapping type)."""
    label = key or "<top level>"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if tp is Any:
        return data
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return build(inner[0], data, source, key)
        # several types (e.g. `str | tuple[str, ...]`): the one whose shape the data has, else the first
        by_shape = [a for a in inner if (typing.get_origin(a) is tuple) == isinstance(data, list)]
        return build((by_shape or inner)[0], data, source, key)
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, data, source, key)
    if origin in (tuple,):
        if not isinstance(data, list):
            raise ConfigError(f"{source}: key '{label}' must be a list, got {_kind(data)}")
        item_tp = args[0]
        return tuple(build(item_tp, v, source, f"{key}[{i}]") for i, v in enumerate(data))
    if origin in (Mapping, dict, typing.Mapping) or tp in (dict, Mapping):
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: key '{label}' must be a mapping, got {_kind(data)}")
        val_tp = args[1] if args else Any
        out = {}
        for k, v in data.items():
            if not isinstance(k, str):
                raise ConfigError(f"{source}: key '{label}' has a non-text key {k!r}")
            out[k] = build(val_tp, v, source, f"{key}.{k}" if key else k)
        return types.MappingProxyType(out)
    if tp is bool:
        if not isinstance(data, bool):
            raise ConfigError(f"{source}: key '{label}' must be true or false, got {_kind(data)}")
        return data
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise ConfigError(f"{source}: key '{label}' must be an integer, got {_kind(data)}")
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise ConfigError(f"{source}: key '{label}' must be a number, got {_kind(data)}")
        return float(data)
    if tp is str:
        if isinstance(data, bool) or not isinstance(data, (str, int, float)):
            raise ConfigError(f"{source}: key '{label}' must be text, got {_kind(data)}")
        return expand_env(str(data), source, label)
    raise TypeError(f"unsupported config type {tp} at {label}")


def _build_dataclass(cls: Any, data: Any, source: str, key: str) -> Any:
    label = key or "<top level>"
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: key '{label}' must be a mapping, got {_kind(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for k in data:
        if k not in fields:
            where = f"{key}.{k}" if key else str(k)
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{source}: unknown key '{where}' (known keys here: {known})")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{key}.{name}" if key else name
        if name in data:
            kwargs[name] = build(hints[name], data[name], source, sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key '{sub}'")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: key '{label}': {exc}") from None


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean"}.get(
        type(value), f"{type(value).__name__} {value!r}"
    )
