"""Tagged JSON: the only encoding values use to cross the isolation boundary.

Plain JSON cannot tell a tuple from a list or carry ``inf``, bytes or sets, and a
Python ``assert f(x) == (1, 2)`` depends on exactly those differences. Pickle could,
but unpickling executes code, so values travel as JSON with one-key tags, each named
after the Python type it stands for:

    {"$tuple": [...]}  {"$set": [...]}  {"$frozenset": [...]}  {"$dict": [[k, v], ...]}
    {"$bytes": "<base64>"}  {"$float": "inf" | "-inf" | "nan"}  {"$complex": [re, im]}
    {"$int": "-1f..."}                      an int too long for JSON (lower-case hex)
    {"$Counter": [[k, v], ...]}  {"$OrderedDict": [[k, v], ...]}  {"$defaultdict": [[k, v], ...]}
    {"$deque": {"items": [...], "maxlen": null | n}}
    {"$namedtuple": {"name": "P", "fields": ["x", "y"], "values": [...]}}
    {"$Fraction": [numerator, denominator]}  {"$Decimal": "1.10"}
    {"$date": [y, m, d]}  {"$time": [h, m, s, us, tz, fold]}
    {"$datetime": [y, m, d, h, mi, s, us, tz, fold]}   tz: null or a $timezone
    {"$timedelta": [days, seconds, us]}  {"$timezone": [[days, seconds, us], name | null]}
    {"$range": [start, stop, step]}
    {"$opaque": "<type name>", "repr": "...", "custom_eq": bool}

Only exact types are encoded as values (``type(v) is Counter``, never ``isinstance``),
read without calling methods a subclass could override. Two families of subclasses
are values too, because their equality is provably the base type's: namedtuple
classes (and subclasses of them) whose tuple behaviour is inherited unchanged, and
enum members mixing in int, float or str whose comparisons are the mixin's (they
cross as the plain int/float/str: equality, hashing and truth follow the mixin;
the member's name and ``str()`` do not cross). Anything else becomes ``$opaque`` and
decodes to an object that equals nothing. ``custom_eq`` says whether its class has an
``__eq__``/``__ne__`` written in the candidate's own code (compiled as
``<candidate>``): that is the always-equal cheat, a stdlib class such as ``re.Match``
or ``uuid.UUID`` is not.

Decoding builds real objects of those standard types (so ``==`` follows Python) and is
strict and bounded: anything malformed or oversized raises ValueError.

This module is stdlib-only: it runs inside the sandbox as part of the runner and on
the trusted side of the service.
"""

from __future__ import annotations

import base64
import collections
import datetime
import decimal
import enum
import fractions
import functools
import json
import keyword
import math
import re
import types
from collections.abc import Callable
from typing import Any

MAX_DEPTH = 64
MAX_INT_HEX = 1 << 20  # hex digits of one $int (4 Mibit)
MAX_FRACTION_BITS = 16_384  # each part: Fraction() runs a gcd, quadratic in the size
MAX_FRACTION_BITS_PER_VALUE = 1 << 20  # all Fractions of one decoded value together
MAX_DECIMAL_CHARS = 5_000
MAX_FIELDS = 256
MAX_NEW_CLASSES_PER_VALUE = 64  # namedtuple classes built while decoding one value
_JSON_INT_BITS = 10_000  # json writes ints with str(), which refuses more than 4300 digits
_REPR_CAP = 200
_NAME_CAP = 100
_CANDIDATE_FILE = "<candidate>"
_CANDIDATE_MODULE = "__candidate__"

Counter, OrderedDict, defaultdict, deque = (
    collections.Counter,
    collections.OrderedDict,
    collections.defaultdict,
    collections.deque,
)
Fraction, Decimal = fractions.Fraction, decimal.Decimal
date, time, dt, timedelta, timezone = (
    datetime.date,
    datetime.time,
    datetime.datetime,
    datetime.timedelta,
    datetime.timezone,
)

_HEX = re.compile(r"-?[0-9a-f]+")
_DECIMAL = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|Infinity|Inf|NaN[0-9]*)", re.I)
_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_TYPENAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Read class internals through `type`'s own descriptors: a metaclass cannot intercept them.
_class_dict = type.__dict__["__dict__"].__get__
_class_mro = type.__dict__["__mro__"].__get__
_class_name = type.__dict__["__name__"].__get__
_class_qualname = type.__dict__["__qualname__"].__get__
_class_bases = type.__dict__["__bases__"].__get__
_class_flags = type.__dict__["__flags__"].__get__
_function_code = types.FunctionType.__dict__["__code__"].__get__
_HEAPTYPE = 1 << 9
_C_CALLABLES = (
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.BuiltinFunctionType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
)
# What must be the base type's own for a subclass instance to be that base's value.
_VALUE_METHODS = {
    int: ("__eq__", "__ne__", "__hash__", "__bool__"),
    float: ("__eq__", "__ne__", "__hash__", "__bool__"),
    str: ("__eq__", "__ne__", "__hash__", "__bool__", "__len__"),
    tuple: ("__eq__", "__ne__", "__hash__", "__bool__", "__len__", "__iter__", "__getitem__", "__contains__"),
}


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


# ------------------------------------------------------------------ classes


def _owner(mro: tuple[type, ...], name: str) -> tuple[type | None, Any]:
    """The class whose own dict provides `name` for instances (as attribute lookup finds it)."""
    for klass in mro:
        namespace = _class_dict(klass)
        if name in namespace:
            return klass, namespace[name]
    return None, None


def _is_in(klass: type, mro: tuple[type, ...]) -> bool:
    return any(k is klass for k in mro)


def _inherits_value_methods(mro: tuple[type, ...], base: type) -> bool:
    for name in _VALUE_METHODS[base]:
        owner, _ = _owner(mro, name)
        if owner is not None and owner is not base and owner is not object:
            return False
    return True


def _written_by_candidate(owner: type, attr: Any) -> bool:
    if not _class_flags(owner) & _HEAPTYPE:
        return False  # a static built-in type: C code
    for _ in range(8):
        kind = type(attr)
        if kind is staticmethod or kind is classmethod or kind is types.MethodType:
            attr = attr.__func__
        elif kind is functools.partial:
            attr = attr.func
        else:
            break
    kind = type(attr)
    if kind is types.FunctionType:
        filename = _function_code(attr).co_filename
        return type(filename) is str and filename == _CANDIDATE_FILE
    if attr is None or kind in _C_CALLABLES:
        return False
    module = _class_dict(owner).get("__module__")  # a callable object or a type used as __eq__
    return type(module) is str and module == _CANDIDATE_MODULE


def has_candidate_eq(klass: type) -> bool:
    """Whether instances compare with an __eq__/__ne__ the candidate wrote; True when unsure."""
    try:
        mro = _class_mro(klass)
        for name in ("__eq__", "__ne__"):
            owner, attr = _owner(mro, name)
            if owner is not None and _written_by_candidate(owner, attr):
                return True
        return False
    except BaseException:  # noqa: BLE001 - whatever a hostile class does, assume the worst
        return True


def _text(value: Any, cap: int = _REPR_CAP) -> str:
    return str.__str__(value)[:cap] if isinstance(value, str) else "?"


def _safe_repr(value: Any) -> str:
    try:
        text = object.__repr__(value)
    except BaseException:  # noqa: BLE001 - a hostile object may raise anything
        text = "<unrepresentable>"
    return text[:_REPR_CAP]


def _opaque(value: Any, custom_eq: bool = False, text: str = "") -> dict[str, Any]:
    kind = type(value)
    try:
        name = _text(_class_qualname(kind))
    except BaseException:  # noqa: BLE001
        name = "?"
    return {"$opaque": name, "repr": text or _safe_repr(value), "custom_eq": custom_eq}


def valid_typename(name: Any) -> bool:
    return (
        type(name) is str and len(name) <= _NAME_CAP and bool(_TYPENAME.fullmatch(name)) and not keyword.iskeyword(name)
    )


def valid_fields(fields: Any) -> bool:
    """namedtuple field names both sides accept: ASCII identifiers, no leading _, no keyword."""
    return (
        type(fields) is tuple
        and len(fields) <= MAX_FIELDS
        and all(
            type(f) is str and len(f) <= _NAME_CAP and _FIELD.fullmatch(f) and not keyword.iskeyword(f) for f in fields
        )
        and len(set(fields)) == len(fields)
    )


# ------------------------------------------------------------------ encoding


def _pairs(items: Any, depth: int) -> list[list[Any]]:
    return [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in items]


def _encode_int(value: int) -> Any:
    if int.bit_length(value) <= _JSON_INT_BITS:
        return value
    text = format(value, "x")
    if len(text) > MAX_INT_HEX + 1:
        return _opaque(value, text=f"<int of {int.bit_length(value)} bits>")
    return {"$int": text}


def _encode_float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def _offset(delta: timedelta) -> list[int]:
    return [delta.days, delta.seconds, delta.microseconds]


def _encode_timezone(tz: timezone) -> dict[str, Any]:
    offset = timezone.utcoffset(tz, None)
    name = timezone.tzname(tz, None)
    return {"$timezone": [_offset(offset), None if name == timezone(offset).tzname(None) else name]}


def _encode_tzinfo(value: time | dt) -> Any:
    """A tzinfo as a fixed $timezone: its offset at this value (a zone's rules cannot cross)."""
    tz = value.tzinfo
    if tz is None:
        return None
    if type(tz) is timezone:
        return _encode_timezone(tz)
    offset = value.utcoffset()
    if type(offset) is not timedelta:
        raise ValueError("no fixed offset")
    name = value.tzname()
    fixed = timezone(offset, name) if type(name) is str and len(name) <= _NAME_CAP else timezone(offset)
    return _encode_timezone(fixed)


def _encode_time(value: time, depth: int) -> Any:
    try:
        tz = _encode_tzinfo(value)
    except BaseException:  # noqa: BLE001 - a tzinfo of the candidate's may do anything
        return _opaque(value)
    return {"$time": [value.hour, value.minute, value.second, value.microsecond, tz, value.fold]}


def _encode_datetime(value: dt, depth: int) -> Any:
    try:
        tz = _encode_tzinfo(value)
    except BaseException:  # noqa: BLE001
        return _opaque(value)
    fields = [value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond]
    return {"$datetime": [*fields, tz, value.fold]}


def _encode_fraction(value: Fraction, depth: int) -> Any:
    numerator, denominator = value.numerator, value.denominator
    if type(numerator) is not int or type(denominator) is not int:
        return _opaque(value)
    if max(int.bit_length(numerator), int.bit_length(denominator)) > MAX_FRACTION_BITS:
        return _opaque(value, text="<Fraction too large>")
    return {"$Fraction": [_encode_int(numerator), _encode_int(denominator)]}


def _encode_decimal(value: Decimal, depth: int) -> Any:
    text = Decimal.__str__(value)
    if len(text) > MAX_DECIMAL_CHARS or not _DECIMAL.fullmatch(text):
        return _opaque(value, text=text[:_REPR_CAP])  # too long, or a signalling NaN
    return {"$Decimal": text}


_ENCODERS: dict[type, Callable[[Any, int], Any]] = {
    Counter: lambda v, d: {"$Counter": _pairs(dict.items(v), d)},
    OrderedDict: lambda v, d: {"$OrderedDict": _pairs(OrderedDict.items(v), d)},
    defaultdict: lambda v, d: {"$defaultdict": _pairs(dict.items(v), d)},
    deque: lambda v, d: {"$deque": {"items": [encode(x, d + 1) for x in v], "maxlen": v.maxlen}},
    Fraction: _encode_fraction,
    Decimal: _encode_decimal,
    date: lambda v, d: {"$date": [v.year, v.month, v.day]},
    time: _encode_time,
    dt: _encode_datetime,
    timedelta: lambda v, d: {"$timedelta": _offset(v)},
    timezone: lambda v, d: _encode_timezone(v),
    range: lambda v, d: {"$range": [_encode_int(v.start), _encode_int(v.stop), _encode_int(v.step)]},
    type({}.keys()): lambda v, d: {"$dict_keys": [encode(x, d + 1) for x in v]},
    type({}.values()): lambda v, d: {"$dict_values": [encode(x, d + 1) for x in v]},
    type({}.items()): lambda v, d: {"$dict_items": [[encode(k, d + 1), encode(x, d + 1)] for k, x in v]},
    collections.UserList: lambda v, d: _encode_user(v, list, "$UserList", d),
    collections.UserDict: lambda v, d: _encode_user(v, dict, "$UserDict", d),
    collections.UserString: lambda v, d: _encode_user(v, str, "$UserString", d),
}


def _encode_user(value: Any, kind: type, tag: str, depth: int) -> Any:
    """collections.UserList/UserDict/UserString: their `data` (an instance attribute, read from
    the instance's own dict), when it is of the wrapped type."""
    data = object.__getattribute__(value, "__dict__").get("data")
    return {tag: encode(data, depth + 1)} if type(data) is kind else _opaque(value)


def _encode_namedtuple(value: tuple, kind: type, mro: tuple[type, ...], depth: int) -> Any:
    """A namedtuple (or a subclass) whose tuple behaviour is tuple's own; else None."""
    maker, fields = _owner(mro, "_fields")
    if maker is None or not valid_fields(fields):
        return None
    bases = _class_bases(maker)
    if len(bases) != 1 or bases[0] is not tuple:
        return None
    name = _class_name(kind)
    namespace = _class_dict(maker)
    if not all(n in namespace for n in ("_make", "_replace", "_asdict")) or not valid_typename(name):
        return None
    if not _inherits_value_methods(mro, tuple) or tuple.__len__(value) != len(fields):
        return None
    values = [encode(item, depth + 1) for item in tuple.__iter__(value)]
    return {"$namedtuple": {"name": name, "fields": list(fields), "values": values}}


def _encode_other(value: Any, kind: type, depth: int) -> Any:
    try:
        mro = _class_mro(kind)
        if _is_in(tuple, mro):
            encoded = _encode_namedtuple(value, kind, mro, depth)
            if encoded is not None:
                return encoded
        if _is_in(enum.Enum, mro):
            for base, plain in ((int, int.__int__), (float, float.__float__), (str, str.__str__)):
                if _is_in(base, mro) and _inherits_value_methods(mro, base):
                    return encode(plain(value), depth + 1)
    except (ValueError, RecursionError):
        raise
    except BaseException:  # noqa: BLE001 - a hostile class: not a value
        pass
    return _opaque(value, has_candidate_eq(kind))


def encode(value: Any, depth: int = 0) -> Any:
    """Turn a value into JSON-ready data; never calls methods a subclass could override."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return _encode_int(value)
    if kind is float:
        return _encode_float(value)
    if kind is list:
        return [encode(item, depth + 1) for item in value]
    if kind is tuple:
        return {"$tuple": [encode(item, depth + 1) for item in value]}
    if kind is dict:
        return {"$dict": _pairs(value.items(), depth)}
    if kind is set or kind is frozenset:
        tag = "$set" if kind is set else "$frozenset"
        return {tag: [encode(item, depth + 1) for item in value]}
    if kind is bytes or kind is bytearray:
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if kind is complex:
        return {"$complex": [_encode_float(value.real), _encode_float(value.imag)]}
    encoder = _ENCODERS.get(kind)
    if encoder is not None:
        return encoder(value, depth)
    return _encode_other(value, kind, depth)


# ------------------------------------------------------------------ decoding


@functools.lru_cache(maxsize=256)
def _namedtuple_class(name: str, fields: tuple[str, ...]) -> type:
    return collections.namedtuple(name, fields, module="rft.values")


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _int(value: Any, what: str) -> int:
    _need(type(value) is int, f"{what} must be an integer")
    return value


def _small_ints(payload: Any, count: int, what: str) -> list[int]:
    _need(type(payload) is list and len(payload) == count, f"{what} needs {count} integers")
    return [_int(v, what) for v in payload]


_MAX_COLLISIONS = 32  # keys of one container sharing a hash: past it, building it turns quadratic


def _spread(key: Any, collisions: Counter[int]) -> Any:
    """A hashable key whose hash few others of its container share: ints k * (2**61 - 1) all
    hash alike, and a set of 40,000 of them takes the decoder (and the service) a minute."""
    try:
        digest = hash(key)
    except TypeError:
        raise ValueError(f"unhashable key or set element of type {type(key).__name__}") from None
    collisions[digest] += 1
    _need(collisions[digest] <= _MAX_COLLISIONS, "too many keys with one hash (crafted collisions)")
    return key


class _Decoder:
    """One top-level decode: depth, plus budgets for the work some payloads could cost."""

    def __init__(self) -> None:
        self.fraction_bits = 0
        self.new_classes = 0

    def value(self, data: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ValueError("value nested too deeply")
        kind = type(data)
        if data is None or kind is bool or kind is int or kind is str or kind is float:
            return data
        if kind is list:
            return [self.value(item, depth + 1) for item in data]
        if kind is not dict:
            raise ValueError(f"unexpected JSON type {kind.__name__}")
        tagged = [k for k in data if type(k) is str and k.startswith("$")]
        if not tagged:
            return {k: self.value(v, depth + 1) for k, v in data.items()}
        tag = tagged[0]
        if tag == "$opaque":
            return self.opaque(data)
        method = _TAGS.get(tag)
        _need(method is not None and len(data) == 1, f"unknown tag in {sorted(data)[:3]}")
        return method(self, data[tag], depth + 1)

    def items(self, payload: Any, depth: int) -> list[Any]:
        _need(type(payload) is list, "tag payload must be a list")
        return [self.value(item, depth + 1) for item in payload]

    def pairs(self, payload: Any, depth: int, into: dict[Any, Any]) -> dict[Any, Any]:
        _need(type(payload) is list, "a mapping needs a list of [key, value] pairs")
        collisions: Counter[int] = Counter()
        for pair in payload:
            _need(type(pair) is list and len(pair) == 2, "a mapping needs [key, value] pairs")
            key = _spread(self.value(pair[0], depth + 1), collisions)
            _need(key not in into, "duplicate key in a mapping")
            into[key] = self.value(pair[1], depth + 1)
        return into

    def members(self, payload: Any, depth: int) -> list[Any]:
        """Set elements (or dict-view keys), hashable and without crafted hash collisions."""
        collisions: Counter[int] = Counter()
        return [_spread(x, collisions) for x in self.items(payload, depth)]

    def opaque(self, data: dict[str, Any]) -> Opaque:
        name, text, custom_eq = data.get("$opaque"), data.get("repr", ""), data.get("custom_eq", False)
        _need(set(data) <= {"$opaque", "repr", "custom_eq"}, "unexpected keys in $opaque")
        _need(type(name) is str and type(text) is str and type(custom_eq) is bool, "malformed $opaque")
        return Opaque(name[:_REPR_CAP], text[:_REPR_CAP], custom_eq)

    def big_int(self, payload: Any, depth: int) -> int:
        _need(type(payload) is str and len(payload) <= MAX_INT_HEX + 1, "$int needs hex text of a bounded length")
        _need(bool(_HEX.fullmatch(payload)), "$int needs lower-case hex digits")
        return int(payload, 16)

    def number(self, data: Any, depth: int) -> int:
        """An int field: a JSON integer or an $int."""
        value = self.value(data, depth)
        return _int(value, "a range or Fraction part")

    def complex(self, payload: Any, depth: int) -> complex:
        parts = self.items(payload, depth)
        _need(len(parts) == 2 and all(type(p) in (int, float) for p in parts), "$complex needs [re, im]")
        return complex(parts[0], parts[1])

    def float(self, payload: Any, depth: int) -> float:
        _need(payload in ("inf", "-inf", "nan"), f"bad $float {str(payload)[:20]!r}")
        return float(payload)

    def bytes(self, payload: Any, depth: int) -> bytes:
        _need(type(payload) is str, "$bytes needs base64 text")
        return base64.b64decode(payload, validate=True)

    def deque(self, payload: Any, depth: int) -> collections.deque:
        _need(type(payload) is dict and set(payload) == {"items", "maxlen"}, '$deque needs {"items", "maxlen"}')
        items, maxlen = self.items(payload["items"], depth), payload["maxlen"]
        _need(maxlen is None or (type(maxlen) is int and len(items) <= maxlen), "bad $deque maxlen")
        return deque(items, maxlen)

    def namedtuple(self, payload: Any, depth: int) -> tuple:
        _need(type(payload) is dict and set(payload) == {"name", "fields", "values"}, "malformed $namedtuple")
        name, fields = payload["name"], payload["fields"]
        fields = tuple(fields) if type(fields) is list else None
        _need(valid_typename(name), "bad $namedtuple name")
        _need(valid_fields(fields), "bad $namedtuple field names")
        values = self.items(payload["values"], depth)
        _need(len(values) == len(fields), "$namedtuple needs one value per field")
        before = _namedtuple_class.cache_info().misses
        klass = _namedtuple_class(name, fields)
        self.new_classes += _namedtuple_class.cache_info().misses - before
        _need(self.new_classes <= MAX_NEW_CLASSES_PER_VALUE, "too many distinct namedtuple types")
        return tuple.__new__(klass, values)

    def fraction(self, payload: Any, depth: int) -> Fraction:
        _need(type(payload) is list and len(payload) == 2, "$Fraction needs [numerator, denominator]")
        numerator, denominator = (self.number(p, depth) for p in payload)
        _need(denominator > 0, "$Fraction needs a positive denominator")
        bits = int.bit_length(numerator) + int.bit_length(denominator)
        _need(max(int.bit_length(numerator), int.bit_length(denominator)) <= MAX_FRACTION_BITS, "$Fraction too large")
        self.fraction_bits += bits
        _need(self.fraction_bits <= MAX_FRACTION_BITS_PER_VALUE, "too many large Fractions")
        return Fraction(numerator, denominator)

    def decimal(self, payload: Any, depth: int) -> Decimal:
        _need(type(payload) is str and len(payload) <= MAX_DECIMAL_CHARS, "$Decimal needs text of a bounded length")
        _need(bool(_DECIMAL.fullmatch(payload)), "$Decimal needs a number, Infinity or NaN")
        try:
            return Decimal(payload)
        except decimal.DecimalException:
            raise ValueError("$Decimal out of range") from None

    def timezone(self, payload: Any, depth: int) -> timezone:
        _need(type(payload) is list and len(payload) == 2, "$timezone needs [offset, name]")
        offset, name = self.timedelta(payload[0], depth), payload[1]
        _need(name is None or (type(name) is str and len(name) <= _NAME_CAP), "bad $timezone name")
        return timezone(offset) if name is None else timezone(offset, name)  # ValueError past ±24 h

    def tzinfo(self, data: Any, depth: int) -> timezone | None:
        tz = None if data is None else self.value(data, depth)
        _need(tz is None or type(tz) is timezone, "tz must be null or a $timezone")
        return tz

    def timedelta(self, payload: Any, depth: int) -> timedelta:
        days, seconds, micro = _small_ints(payload, 3, "$timedelta")
        _need(0 <= seconds < 86400 and 0 <= micro < 10**6, "$timedelta fields out of range")
        try:
            return timedelta(days, seconds, micro)
        except OverflowError:
            raise ValueError("$timedelta out of range") from None

    def time(self, payload: Any, depth: int) -> time:
        _need(type(payload) is list and len(payload) == 6, "$time needs [h, m, s, us, tz, fold]")
        hour, minute, second, micro, fold = _small_ints([*payload[:4], payload[5]], 5, "$time")
        return time(hour, minute, second, micro, self.tzinfo(payload[4], depth), fold=fold)

    def datetime(self, payload: Any, depth: int) -> dt:
        _need(type(payload) is list and len(payload) == 9, "$datetime needs [y, m, d, h, mi, s, us, tz, fold]")
        fields = _small_ints([*payload[:7], payload[8]], 8, "$datetime")
        return dt(*fields[:7], tzinfo=self.tzinfo(payload[7], depth), fold=fields[7])

    def date(self, payload: Any, depth: int) -> date:
        return date(*_small_ints(payload, 3, "$date"))

    def range(self, payload: Any, depth: int) -> range:
        _need(type(payload) is list and len(payload) == 3, "$range needs [start, stop, step]")
        start, stop, step = (self.number(p, depth) for p in payload)
        _need(step != 0, "$range step must not be zero")
        return range(start, stop, step)


_TAGS: dict[str, Callable[[_Decoder, Any, int], Any]] = {
    "$tuple": lambda d, p, depth: tuple(d.items(p, depth)),
    "$set": lambda d, p, depth: set(d.members(p, depth)),
    "$frozenset": lambda d, p, depth: frozenset(d.members(p, depth)),
    "$dict_keys": lambda d, p, depth: dict.fromkeys(d.members(p, depth)).keys(),
    "$dict_values": lambda d, p, depth: dict(enumerate(d.items(p, depth))).values(),
    "$dict_items": lambda d, p, depth: d.pairs(p, depth, {}).items(),
    "$UserList": lambda d, p, depth: collections.UserList(_typed(d.value(p, depth), list)),
    "$UserDict": lambda d, p, depth: collections.UserDict(_typed(d.value(p, depth), dict)),
    "$UserString": lambda d, p, depth: collections.UserString(_typed(d.value(p, depth), str)),
    "$dict": lambda d, p, depth: d.pairs(p, depth, {}),
    "$Counter": lambda d, p, depth: d.pairs(p, depth, Counter()),
    "$OrderedDict": lambda d, p, depth: d.pairs(p, depth, OrderedDict()),
    "$defaultdict": lambda d, p, depth: d.pairs(p, depth, defaultdict()),
    "$bytes": _Decoder.bytes,
    "$float": _Decoder.float,
    "$complex": _Decoder.complex,
    "$int": _Decoder.big_int,
    "$deque": _Decoder.deque,
    "$namedtuple": _Decoder.namedtuple,
    "$Fraction": _Decoder.fraction,
    "$Decimal": _Decoder.decimal,
    "$date": _Decoder.date,
    "$time": _Decoder.time,
    "$datetime": _Decoder.datetime,
    "$timedelta": _Decoder.timedelta,
    "$timezone": _Decoder.timezone,
    "$range": _Decoder.range,
}


def _typed(value: Any, kind: type) -> Any:
    _need(type(value) is kind, f"expected a {kind.__name__}")
    return value


def decode(data: Any, depth: int = 0) -> Any:
    """Rebuild Python values from tagged JSON; anything malformed raises ValueError."""
    try:
        return _Decoder().value(data, depth)
    except OverflowError as exc:  # e.g. a year or a complex part past what C accepts
        raise ValueError(f"value out of range: {exc}") from None


def find_custom_eq(value: Any, depth: int = 0) -> Opaque | None:
    """The first Opaque standing for an object with its own __eq__, anywhere in a decoded value."""
    if isinstance(value, Opaque):
        return value if value.custom_eq else None
    if depth > MAX_DEPTH:
        return None
    items: Any = ()
    if isinstance(value, (list, tuple, set, frozenset, deque)):
        items = value
    elif isinstance(value, dict):
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
