"""Tensors from a sandbox, decoded on the trusted side: numpy only, sizes checked first.

The sandbox sends the raw bytes of each tensor with its dtype and shape (see
`sandbox/runner/tensors.py`). Nothing here trusts them: the dtype must be one we know,
the shape must be non-negative and small enough, and the byte count must match it
exactly before a single element is looked at.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_ELEMENTS = 1 << 26  # 64 Mi elements per tensor
_MAX_DIMS = 16

_NUMPY = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),  # bit patterns; widened to float32 by `values`
    "float64": np.dtype("<f8"),
    "int8": np.dtype("i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("?"),
}
FLOATS = {"float32", "float16", "bfloat16", "float64"}


class TensorError(ValueError):
    """What the sandbox sent is not a well-formed tensor."""


@dataclass(frozen=True)
class Tensor:
    dtype: str
    shape: tuple[int, ...]
    array: np.ndarray  # float64 for float dtypes, the integer/bool dtype otherwise

    def describe(self) -> str:
        return f"{self.dtype}{list(self.shape)}"


def decode(value: Any) -> Tensor:
    if not (isinstance(value, dict) and set(value) == {"$tensor"} and isinstance(value["$tensor"], dict)):
        raise TensorError("not a tensor")
    body = value["$tensor"]
    dtype, shape, data = body.get("dtype"), body.get("shape"), body.get("data")
    if dtype not in _NUMPY:
        raise TensorError(f"unknown dtype {str(dtype)[:40]!r}")
    if not isinstance(shape, list) or len(shape) > _MAX_DIMS or not all(type(n) is int and n >= 0 for n in shape):
        raise TensorError("malformed shape")
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise TensorError(f"{count} elements exceed the cap of {MAX_ELEMENTS}")
    if not isinstance(data, str):
        raise TensorError("malformed data")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise TensorError("data is not base64") from None
    layout = _NUMPY[dtype]
    if len(raw) != count * layout.itemsize:
        raise TensorError(f"{len(raw)} bytes do not make a {dtype}{shape}")
    array = np.frombuffer(raw, dtype=layout).reshape(shape)
    if dtype == "bfloat16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    if dtype in FLOATS:
        array = array.astype(np.float64)
    return Tensor(dtype, tuple(shape), array)


def decode_list(value: Any, limit: int = 64) -> list[Tensor]:
    if not isinstance(value, list) or not value or len(value) > limit:
        raise TensorError("expected a non-empty list of tensors")
    return [decode(v) for v in value]


DEFAULT_TOLERANCE = {"float32": 1e-4, "float64": 1e-4, "float16": 1e-2, "bfloat16": 1e-2}


@dataclass(frozen=True)
class Comparison:
    equal: bool
    message: str = ""
    max_abs_error: float = 0.0


def compare(expected: Tensor, got: Tensor, atol: float | None, rtol: float | None) -> Comparison:
    """`got` matches `expected`: same dtype and shape; floats |got - exp| <= atol + rtol*|exp|
    elementwise (NaN where and only where expected has NaN; infinities equal), other dtypes exact."""
    if got.dtype != expected.dtype or got.shape != expected.shape:
        return Comparison(False, f"expected {expected.describe()}, got {got.describe()}")
    if expected.dtype not in FLOATS:
        wrong = int(np.count_nonzero(expected.array != got.array))
        return Comparison(wrong == 0, f"{wrong} of {expected.array.size} elements differ" if wrong else "")
    default = DEFAULT_TOLERANCE[expected.dtype]
    a_tol = default if atol is None else atol
    r_tol = a_tol if rtol is None else rtol
    exp, out = expected.array, got.array
    nan_exp, nan_out = np.isnan(exp), np.isnan(out)
    with np.errstate(invalid="ignore", over="ignore"):
        close = (exp == out) | (np.abs(out - exp) <= a_tol + r_tol * np.abs(exp))
    close = np.where(np.isinf(exp) | np.isinf(out), exp == out, close)  # inf - (-inf) is no small error
    close = np.where(nan_exp | nan_out, nan_exp & nan_out, close)
    wrong = int(np.count_nonzero(~close))
    if not wrong:
        return Comparison(True)
    finite = ~(nan_exp | nan_out) & np.isfinite(exp) & np.isfinite(out)
    worst = float(np.max(np.abs(out[finite] - exp[finite]), initial=0.0))
    return Comparison(
        False,
        f"{wrong} of {exp.size} elements differ beyond atol={a_tol:g}, rtol={r_tol:g} (max abs error {worst:.3g})",
        worst,
    )


def compare_all(expected: list[Tensor], got: list[Tensor], atol: float | None, rtol: float | None) -> Comparison:
    if len(expected) != len(got):
        return Comparison(False, f"expected {len(expected)} outputs, got {len(got)}")
    for number, (exp, out) in enumerate(zip(expected, got, strict=True)):
        result = compare(exp, out, atol, rtol)
        if not result.equal:
            prefix = f"output {number}: " if len(expected) > 1 else ""
            return Comparison(False, prefix + result.message, result.max_abs_error)
    return Comparison(True)
