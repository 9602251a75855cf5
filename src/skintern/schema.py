"""Typed dataclasses as a file schema: build them from YAML/JSON mappings, checking keys, types and values.

Configs and results.json are both read through `from_dict`, so an unknown key, a wrong type or an
out-of-range value is one error naming the file and the dotted key. Value checks live in each
dataclass's `__post_init__` (litgpt-style) and raise `SettingError` with the field's name; `from_dict`
adds the file and the section path."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

import yaml

from skintern.errors import SkinternError


class SettingError(SkinternError):
    """A bad value of one field; `from_dict` prefixes the file and section."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def check_choice(key: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise SettingError(key, f"expected one of {', '.join(map(str, allowed))}, got {value!r}")


def check_range(key: str, value: float, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> None:
    """`low <= value <= high` (`<` where open); NaN is always out of range."""
    bad = isinstance(value, float) and math.isnan(value)
    bad = bad or (low is not None and (value <= low if low_open else value < low))
    bad = bad or (high is not None and (value >= high if high_open else value > high))
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        raise SettingError(key, f"expected a value {' and '.join(p for p in (lo, hi) if p)}, got {value!r}")


def check_nonempty(key: str, value: list | dict | None) -> None:
    if value is not None and not value:
        raise SettingError(key, "expected at least one entry, got an empty list")


# ---------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """Safe YAML that rejects duplicate keys (naming the line) and reads `1e-4` as a float (YAML 1.2)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def load_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise SkinternError(f"{where}{line}: malformed YAML ({getattr(e, 'problem', e)})") from None


def parse_scalar(text: str, where: str) -> Any:
    """A `--set key=value` value, typed as the same YAML would type it."""
    return load_yaml(text, where)


# ---------------------------------------------------------------- mappings -> dataclasses

# A field whose value type is resolved per key: (mapping key) -> dataclass, for sections such as
# `methods:` whose entries have different schemas. Registered by the owner of the section.
KeyedTypes = Callable[[str], type | None]
_KEYED: dict[type, KeyedTypes] = {}


def register_keyed(base: type, resolve: KeyedTypes) -> None:
    """Values typed `dict[str, base]` are built as `resolve(key)` (None: unknown key)."""
    _KEYED[base] = resolve


def from_dict(cls: type, data: Any, where: str, prefix: str = "", strict: bool = True) -> Any:
    """Build dataclass `cls` from a mapping; errors name `where` and the dotted key path.

    `strict=False` ignores unknown keys (files written by other releases)."""
    if not isinstance(data, dict):
        raise SkinternError(f"{where}: {prefix.rstrip('.') or 'config'}: expected a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            if strict:
                raise SkinternError(f"{where}: unknown key '{prefix}{key}' (known: {', '.join(names)})")
            continue
        kwargs[key] = _coerce(hints[key], value, where, f"{prefix}{key}", strict)
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.init and required and f.name not in kwargs:
            raise SkinternError(f"{where}: {prefix.rstrip('.') + ': ' if prefix else ''}missing field {f.name!r}")
    try:
        return cls(**kwargs)
    except SettingError as e:
        raise SkinternError(f"{where}: {prefix}{e}") from None


def _show(value: Any) -> str:
    return f"{value!r}" if not isinstance(value, (dict, list)) else type(value).__name__


def _coerce(tp: Any, value: Any, where: str, key: str, strict: bool) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, prefix=f"{key}.", strict=strict)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where, key, strict)
            except SkinternError as e:
                errors.append(str(e))
        raise SkinternError(errors[-1])
    if origin is list:
        if not isinstance(value, list):
            raise SkinternError(f"{where}: {key}: expected a list, got {_show(value)}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(item_tp, v, where, f"{key}[{i}]", strict) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SkinternError(f"{where}: {key}: expected a mapping, got {_show(value)}")
        key_tp, val_tp = typing.get_args(tp)
        out = {}
        for k, v in value.items():
            item_tp = val_tp
            if val_tp in _KEYED:
                item_tp = _KEYED[val_tp](k)
                if item_tp is None:
                    raise SkinternError(f"{where}: {key}: unknown entry {k!r}")
            out[_coerce(key_tp, k, where, key, strict)] = _coerce(item_tp, v, where, f"{key}.{k}", strict)
        return out
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    if tp is Any:
        return value
    raise SkinternError(f"{where}: {key}: expected {getattr(tp, '__name__', tp)}, got {_show(value)}")


def to_dict(obj: Any, drop_none: bool = False) -> Any:
    """A dataclass (nested) as plain JSON-ready data; `drop_none` leaves out fields that are None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if drop_none and value is None:
                continue
            out[f.name] = to_dict(value, drop_none)
        return out
    if isinstance(obj, dict):
        return {k: to_dict(v, drop_none) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v, drop_none) for v in obj]
    return obj
