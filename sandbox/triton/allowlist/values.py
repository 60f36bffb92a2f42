"""What the checker knows about a value in host code: a kind, not a Python value.

Every expression of a function the harness can reach gets one; an operation is allowed
only for the kinds its rule names (tensor arithmetic is not, Python int arithmetic is).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    TENSOR = "a tensor"
    SCALAR = "a Python scalar"  # int, float, bool, str, None, a dtype or a device: immutable
    SEQ = "a sequence"  # tuple, list, set, range or torch.Size (`item`: what it holds)
    DICT = "a dict"  # `item`: its values
    KERNEL = "a Triton kernel"
    LAUNCHER = "a kernel with its grid"
    GRID = "a grid function"
    FUNC = "a function of this module"
    CLASS = "a class of this module"
    INSTANCE = "an instance of a class of this module"  # `self` among them
    METHOD = "a method"  # `item`: the object it is bound to, `name`: the method
    NN = "a torch.nn module"
    CTX = "an autograd context"
    LIB = "a library object"  # `name`: its dotted path
    BUILTIN = "a Python builtin"
    PROPS = "device or dtype properties"
    EXC = "an exception"
    SUPER = "super()"
    MIXED = "a value of several kinds"
    REJECTED = "a rejected value"  # already reported: using it reports nothing more


@dataclass(frozen=True)
class Value:
    kind: Kind
    name: str = ""
    item: Value | None = None
    items: tuple[Value, ...] | None = None  # a tuple literal's elements, for unpacking
    origin: str = ""  # "module" (module-level container) or "self" (module state): never written at run time

    def __str__(self) -> str:
        return f"{self.kind.value} ({self.name})" if self.name else self.kind.value


TENSOR = Value(Kind.TENSOR)
SCALAR = Value(Kind.SCALAR)
REJECTED = Value(Kind.REJECTED)
SHAPE = Value(Kind.SEQ, item=SCALAR)
TENSORS = Value(Kind.SEQ, item=TENSOR)


def sequence(items: list[Value], origin: str = "") -> Value:
    item = join_all(items) if items else SCALAR
    return Value(Kind.SEQ, item=item, items=tuple(items), origin=origin)


def join(a: Value, b: Value) -> Value:
    """One value standing for either (branches, loop iterations, sequence elements)."""
    if a == b:
        return a
    if Kind.REJECTED in (a.kind, b.kind):
        return REJECTED
    if a.kind is b.kind:
        item = join(a.item, b.item) if a.item is not None and b.item is not None else a.item or b.item
        name = a.name if a.name == b.name else ""
        return Value(a.kind, name, item, origin=a.origin or b.origin)
    if {a.kind, b.kind} == {Kind.TENSOR, Kind.SCALAR}:  # an optional tensor is judged as a tensor
        return TENSOR if a.origin == b.origin else Value(Kind.TENSOR, origin=a.origin or b.origin)
    return Value(Kind.MIXED)


def join_all(values: list[Value]) -> Value:
    out = values[0]
    for value in values[1:]:
        out = join(out, value)
    return out


def with_origin(value: Value, origin: str) -> Value:
    return Value(value.kind, value.name, value.item, value.items, origin) if origin else value


def element(container: Value, item: Value | None) -> Value:
    """An element taken out of a container: a list inside a module-level list is shared state too."""
    item = item or SCALAR
    return with_origin(item, container.origin) if item.kind in (Kind.TENSOR, Kind.SEQ, Kind.DICT) else item


def holds_tensor(value: Value) -> bool:
    """A tensor, or a container with one inside (comparing or formatting it reads tensor values)."""
    if value.kind is Kind.TENSOR:
        return True
    parts = [*(value.items or ()), *([value.item] if value.item is not None else [])]
    return value.kind in (Kind.SEQ, Kind.DICT) and any(holds_tensor(part) for part in parts)
