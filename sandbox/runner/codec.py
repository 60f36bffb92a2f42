"""Tagged JSON: the only encoding values use to cross the isolation boundary.

Plain JSON cannot tell a tuple from a list or carry ``inf``, bytes or sets, and a
Python ``assert f(x) == (1, 2)`` depends on exactly those differences. Pickle could,
but unpickling executes code, so values travel as JSON with a few one-key tags:

    {"$tuple": [...]}  {"$set": [...]}  {"$frozenset": [...]}  {"$dict": [[k, v], ...]}
    {"$bytes": "<base64>"}  {"$float": "inf" | "-inf" | "nan"}  {"$complex": [re, im]}
    {"$opaque": "<type name>", "repr": "...", "custom_eq": bool}

Only exact built-in types are encoded as values (``type(v) is int``, never
``isinstance``): a subclass with an always-true ``__eq__`` becomes ``$opaque`` and
decodes to an object that equals nothing. Decoding builds only plain built-ins.

This module is stdlib-only: it runs inside the sandbox as part of the runner and on
the trusted side of the service.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

MAX_DEPTH = 64
_REPR_CAP = 200


class Opaque:
    """A value the sandbox could not express as data; it equals nothing, not even itself."""

    __slots__ = ("custom_eq", "text", "type_name")

    def __init__(self, type_name: str, text: str, custom_eq: bool = False) -> None:
        self.type_name = type_name
        self.text = text
        self.custom_eq = custom_eq

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<{self.type_name}: {self.text}>"


def _safe_repr(value: Any) -> str:
    try:
        text = object.__repr__(value)
    except BaseException:  # noqa: BLE001 - a hostile object may raise anything
        text = "<unrepresentable>"
    return text[:_REPR_CAP]


def _has_custom_eq(value: Any) -> bool:
    try:
        return type(value).__eq__ is not object.__eq__
    except BaseException:  # noqa: BLE001
        return True


def encode(value: Any, depth: int = 0) -> Any:
    """Turn a value into JSON-ready data; never calls the value's own methods."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if kind is list:
        return [encode(item, depth + 1) for item in value]
    if kind is tuple:
        return {"$tuple": [encode(item, depth + 1) for item in value]}
    if kind is dict:
        return {"$dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if kind is set or kind is frozenset:
        tag = "$set" if kind is set else "$frozenset"
        return {tag: [encode(item, depth + 1) for item in value]}
    if kind is bytes or kind is bytearray:
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if kind is complex:
        return {"$complex": [encode(value.real, depth + 1), encode(value.imag, depth + 1)]}
    return {
        "$opaque": kind.__qualname__[:_REPR_CAP] if isinstance(kind.__qualname__, str) else "?",
        "repr": _safe_repr(value),
        "custom_eq": _has_custom_eq(value),
    }


def _decode_float(text: Any) -> float:
    if text not in ("inf", "-inf", "nan"):
        raise ValueError(f"bad $float {text!r}")
    return float(text)


def decode(data: Any, depth: int = 0) -> Any:
    """Rebuild plain Python values from tagged JSON; anything malformed raises ValueError."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    kind = type(data)
    if data is None or kind in (bool, int, str):
        return data
    if kind is float:
        return data
    if kind is list:
        return [decode(item, depth + 1) for item in data]
    if kind is not dict:
        raise ValueError(f"unexpected JSON type {kind.__name__}")
    if len(data) == 1 or "$opaque" in data:
        ((tag, payload),) = list(data.items())[:1]
        if tag == "$tuple":
            return tuple(_decode_list(payload, depth))
        if tag == "$set":
            return set(_decode_list(payload, depth))
        if tag == "$frozenset":
            return frozenset(_decode_list(payload, depth))
        if tag == "$dict":
            pairs = _decode_list(payload, depth)
            if not all(type(p) is list and len(p) == 2 for p in pairs):
                raise ValueError("$dict needs [key, value] pairs")
            return {_hashable(k): v for k, v in pairs}
        if tag == "$bytes":
            if type(payload) is not str:
                raise ValueError("$bytes needs base64 text")
            return base64.b64decode(payload, validate=True)
        if tag == "$float":
            return _decode_float(payload)
        if tag == "$complex":
            parts = _decode_list(payload, depth)
            if len(parts) != 2 or not all(type(p) in (int, float) for p in parts):
                raise ValueError("$complex needs [re, im]")
            return complex(parts[0], parts[1])
        if tag == "$opaque":
            return Opaque(
                str(payload)[:_REPR_CAP], str(data.get("repr", ""))[:_REPR_CAP], bool(data.get("custom_eq", False))
            )
    if any(type(k) is str and k.startswith("$") for k in data):
        raise ValueError(f"unknown tag in {sorted(data)[:3]}")
    return {k: decode(v, depth + 1) for k, v in data.items()}


def _decode_list(payload: Any, depth: int) -> list[Any]:
    if type(payload) is not list:
        raise ValueError("tag payload must be a list")
    return [decode(item, depth + 1) for item in payload]


def _hashable(key: Any) -> Any:
    if type(key) is list:
        raise ValueError("unhashable dict key")
    return key


def find_custom_eq(value: Any, depth: int = 0) -> Opaque | None:
    """The first Opaque standing for an object with its own __eq__, anywhere in a decoded value."""
    if isinstance(value, Opaque):
        return value if value.custom_eq else None
    if depth > MAX_DEPTH:
        return None
    items: Any = ()
    if type(value) in (list, tuple, set, frozenset):
        items = value
    elif type(value) is dict:
        items = [*value.keys(), *value.values()]
    for item in items:
        found = find_custom_eq(item, depth + 1)
        if found is not None:
            return found
    return None


def dumps(value: Any) -> str:
    return json.dumps(encode(value), separators=(",", ":"), allow_nan=False)


def loads(text: str | bytes) -> Any:
    return decode(json.loads(text))
