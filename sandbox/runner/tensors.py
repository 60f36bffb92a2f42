"""Tensors as tagged JSON: how inputs and outputs of Triton jobs cross the isolation boundary.

A tensor travels as ``{"$tensor": {"dtype": "float32", "shape": [2, 3], "data": "<base64>"}}``:
the raw little-endian bytes of its contiguous CPU copy. Every dtype goes bit-exact (bfloat16
as its 16-bit patterns), so the trusted side compares exactly what the sandbox computed.
Other values (the ints and floats `get_init_inputs` returns) use the runner's codec.

Runs inside the sandbox (needs torch); the trusted side decodes with numpy
(`sandbox.triton.tensors`), never with torch and never with pickle.
"""

from __future__ import annotations

import base64
from typing import Any

import codec
import torch

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
NAMES = {dtype: name for name, dtype in DTYPES.items()}


class TensorError(ValueError):
    """A value that cannot travel (unsupported dtype, not a plain tensor...)."""


def encode_tensor(tensor: torch.Tensor) -> dict[str, Any]:
    name = NAMES.get(tensor.dtype)
    if name is None:
        raise TensorError(f"unsupported dtype {tensor.dtype}")
    host = torch.Tensor.contiguous(torch.Tensor.cpu(torch.Tensor.detach(tensor)))
    raw = host.view(torch.int16) if host.dtype is torch.bfloat16 else host
    data = raw.numpy().tobytes() if raw.numel() else b""
    return {"$tensor": {"dtype": name, "shape": list(host.shape), "data": base64.b64encode(data).decode("ascii")}}


def decode_tensor(payload: dict[str, Any], device: str) -> torch.Tensor:
    dtype = DTYPES[payload["dtype"]]
    shape = [int(n) for n in payload["shape"]]
    data = bytearray(base64.b64decode(payload["data"]))
    carrier = torch.int16 if dtype is torch.bfloat16 else dtype
    flat = torch.frombuffer(data, dtype=carrier) if data else torch.empty(0, dtype=carrier)
    tensor = flat.view(dtype) if dtype is torch.bfloat16 else flat
    return tensor.reshape(shape).clone().to(device)


def encode(value: Any) -> Any:
    """Tensors tagged, tuples and lists kept apart, everything else through the codec."""
    if isinstance(value, torch.Tensor):
        return encode_tensor(value)
    if type(value) in (list, tuple):
        items = [encode(v) for v in value]
        return {"$tuple": items} if type(value) is tuple else items
    return codec.encode(value)


def decode(value: Any, device: str) -> Any:
    if isinstance(value, dict) and set(value) == {"$tensor"}:
        return decode_tensor(value["$tensor"], device)
    if isinstance(value, dict) and set(value) == {"$tuple"}:
        return tuple(decode(v, device) for v in value["$tuple"])
    if isinstance(value, list):
        return [decode(v, device) for v in value]
    return codec.decode(value)
