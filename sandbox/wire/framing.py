"""Length-prefixed JSON frames over pipes and sockets (stdlib only).

Every message between the service, the runner, the test harness and the candidate process is
one frame: a 4-byte big-endian length, then that many bytes of UTF-8 JSON. Readers
cap the length before allocating, so a peer cannot make them read without bound.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

HEADER = struct.Struct(">I")


class FrameError(Exception):
    """The peer closed the stream or sent something that is not a frame."""


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # our encoders never write NaN/Infinity literals


def _finite(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # 1e999 parses as inf: no encoder of ours writes it either
        raise ValueError(f"{text[:20]} is not a finite float")
    return value


def _loads(data: bytes) -> Any:
    """Only what `pack` can write back: a frame that could not be re-encoded is refused here,
    where it is the peer's fault, instead of breaking whoever relays it later."""
    return json.loads(data, parse_constant=_no_constants, parse_float=_finite)


def pack(message: Any) -> bytes:
    body = json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return HEADER.pack(len(body)) + body


def write(fd: int, message: Any) -> None:
    write_bytes(fd, pack(message))


def write_bytes(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_exact(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise FrameError("stream closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read(fd: int, max_bytes: int) -> Any:
    (size,) = HEADER.unpack(read_exact(fd, HEADER.size))
    if size > max_bytes:
        raise FrameError(f"frame of {size} bytes exceeds the cap of {max_bytes}")
    try:
        return _loads(read_exact(fd, size))
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"frame is not JSON: {exc}") from None


class FrameBuffer:
    """Incremental frame parser for non-blocking reads (the harness multiplexes several pipes)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        out = []
        while len(self._buf) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buf)
            if size > self.max_bytes:
                raise FrameError(f"frame of {size} bytes exceeds the cap of {self.max_bytes}")
            if len(self._buf) < HEADER.size + size:
                break
            body = bytes(self._buf[HEADER.size : HEADER.size + size])
            del self._buf[: HEADER.size + size]
            try:
                out.append(_loads(body))
            except (ValueError, RecursionError) as exc:
                raise FrameError(f"frame is not JSON: {exc}") from None
        return out
