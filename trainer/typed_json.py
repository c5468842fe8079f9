"""Dataclasses built from JSON objects, checked: every key known, every value of its field's type.

A field's JSON key is its name, or ``field(metadata={"key": ...})`` where the JSON spelling
differs. A field with ``metadata={"flatten": True}`` is an option group (itself a dataclass)
whose keys sit in the enclosing object, so a flat JSON object can fill a tree of dataclasses.

Supported field types: ``bool``, ``int``, ``float`` (a whole number is accepted), ``str``,
``None``, unions of these (``X | None``), ``list[X]``, ``dict[str, X]``, ``Any`` (taken as is)
and nested dataclasses.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


class FieldError(ValueError):
    """A JSON value that does not fit its field: ``path`` (e.g. ``stages.2.way``) and the problem."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path or 'the top level'}: {problem}")
        self.path = path
        self.problem = problem


def from_json(cls: type[T], values: Any, path: str = "") -> T:
    """An instance of the dataclass ``cls`` from the JSON object ``values``.

    Raises:
        FieldError: an unknown key, a missing required key, a value of the wrong type, or a
            ``ValueError`` of the dataclass's own checks (``__post_init__``), with the path.
    """
    if not isinstance(values, Mapping):
        raise FieldError(path, f"expected an object, got {_json_type(values)}")
    remaining = dict(values)
    kwargs = _take_fields(cls, remaining, path)
    if remaining:
        unknown = sorted(remaining)[0]
        known = sorted(json_keys(cls))
        close = difflib.get_close_matches(unknown, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise FieldError(_join(path, unknown), f"unknown key ({hint}known: {', '.join(known)})")
    try:
        return cls(**kwargs)
    except FieldError:
        raise
    except ValueError as exc:
        raise FieldError(path, str(exc)) from None


def to_json(value: Any) -> Any:
    """The JSON form of a dataclass (option groups flattened, tuples as lists) or a plain value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            if not f.init:
                continue
            item = getattr(value, f.name)
            if f.metadata.get("flatten"):
                out.update(to_json(item))
            else:
                out[f.metadata.get("key", f.name)] = to_json(item)
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return copy.deepcopy(value)


def json_keys(cls: type) -> list[str]:
    """Every key a JSON object for ``cls`` may hold (option groups' keys included)."""
    hints = typing.get_type_hints(cls)
    keys: list[str] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.metadata.get("flatten"):
            keys += json_keys(hints[f.name])
        else:
            keys.append(f.metadata.get("key", f.name))
    return keys


def group_keys(cls: type, group: str) -> list[str]:
    """The JSON keys of the option group field ``group`` of ``cls``."""
    return json_keys(typing.get_type_hints(cls)[group])


def _take_fields(cls: type, remaining: dict[str, Any], path: str) -> dict[str, Any]:
    """Constructor arguments of ``cls`` taken (and removed) from ``remaining``."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.metadata.get("flatten"):
            group = hints[f.name]
            try:
                kwargs[f.name] = group(**_take_fields(group, remaining, path))
            except FieldError:
                raise
            except ValueError as exc:
                raise FieldError(path, str(exc)) from None
            continue
        key = f.metadata.get("key", f.name)
        if key in remaining:
            kwargs[f.name] = _convert(hints[f.name], remaining.pop(key), _join(path, key))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise FieldError(_join(path, key), "missing (required)")
    return kwargs


def _convert(tp: Any, value: Any, path: str) -> Any:
    if tp is Any:
        return copy.deepcopy(value)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, path)
            except FieldError:
                continue
        raise FieldError(path, f"expected {_describe(tp)}, got {_json_type(value)} {_short(value)}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise FieldError(path, f"expected {_describe(tp)}, got {_json_type(value)} {_short(value)}")
        return [_convert(item, v, _join(path, str(i))) for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise FieldError(path, f"expected {_describe(tp)}, got {_json_type(value)} {_short(value)}")
        return {str(k): _convert(item, v, _join(path, str(k))) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_json(tp, value, path)
    if _fits(tp, value):
        return float(value) if tp is float else value
    raise FieldError(path, f"expected {_describe(tp)}, got {_json_type(value)} {_short(value)}")


def _fits(tp: Any, value: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is type(None):
        return value is None
    raise TypeError(f"typed_json: unsupported field type {tp!r}")


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list ({_describe(typing.get_args(tp)[0])} each)"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "an object"
    return {bool: "true/false", int: "a whole number", float: "a number", str: "a string",
            type(None): "null"}.get(tp, str(tp))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
