"""The candidate process: the only process that executes untrusted code.

It is forked by the zygote, so its memory holds the candidate's code and the test
inputs but never a test's expected values. It answers the judge's requests over a
socket with tagged-JSON values; anything it says is data to be checked elsewhere.
"""

from __future__ import annotations

import builtins
import faulthandler
import sys
import traceback
from typing import Any

import codec
import framing

_MAX_REQUEST = 64 << 20


def _describe(exc: BaseException) -> dict[str, Any]:
    try:
        message = str(exc)[:500]
    except BaseException:  # noqa: BLE001 - str() of a hostile exception may raise
        message = "<unprintable>"
    return {"type": type(exc).__name__[:100], "msg": message}


def _reply(chan: int, message: dict[str, Any]) -> None:
    try:
        framing.write(chan, message)
    except ValueError:
        # e.g. a value that json cannot serialise; say so rather than dying silently
        framing.write(chan, {"exc": {"type": "UnserializableResult", "msg": "value cannot be encoded"}})


def _encode_reply(value: Any) -> dict[str, Any]:
    try:
        return {"ok": codec.encode(value)}
    except (ValueError, RecursionError) as exc:
        return {"exc": {"type": "UnserializableResult", "msg": str(exc)[:200]}}


def _run_main(code: str) -> None:
    """stdin/stdout tests: the program runs as __main__ and its output is the answer."""
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(code, "<candidate>", "exec"), namespace)  # noqa: S102 - we are the sandbox
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    finally:
        try:
            sys.stdout.flush()
        except BaseException:  # noqa: BLE001
            pass


def serve(job: dict[str, Any], chan: int) -> None:
    """Load the candidate, then answer call/expression requests until the judge hangs up."""
    faulthandler.enable()
    sys.dont_write_bytecode = True
    code = job["code"]
    if job["mode"] == "io":
        try:
            _run_main(code)
        except BaseException as exc:  # noqa: BLE001
            traceback.print_exc()
            sys.stderr.flush()
            _reply(chan, {"exc": _describe(exc)})
            return
        _reply(chan, {"done": True})
        return

    namespace: dict[str, Any] = {"__name__": "__candidate__", "__builtins__": builtins}
    try:
        exec(compile(code, "<candidate>", "exec"), namespace)  # noqa: S102
        entry = job["entry_point"]
        if entry not in namespace:
            raise NameError(f"the candidate does not define {entry!r}")
        function = namespace[entry]
    except BaseException as exc:  # noqa: BLE001
        traceback.print_exc()
        _reply(chan, {"load_error": _describe(exc)})
        return
    _reply(chan, {"ready": True})

    while True:
        try:
            request = framing.read(chan, _MAX_REQUEST)
        except framing.FrameError:
            return
        try:
            args, kwargs = request["call"]
            value = function(*codec.decode(args), **codec.decode(kwargs))
            reply = _encode_reply(value)
        except BaseException as exc:  # noqa: BLE001 - SystemExit, MemoryError... are results too
            reply = {"exc": _describe(exc)}
        try:
            sys.stdout.flush()
        except BaseException:  # noqa: BLE001
            pass
        _reply(chan, reply)
