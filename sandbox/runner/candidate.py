"""The candidate process: the only process that executes untrusted code.

It is forked by the zygote, so its memory holds the candidate's code and the test
inputs but never a test's expected values. It answers the judge's requests over a
socket with tagged-JSON values; anything it says is data to be checked elsewhere.

In whole mode (tests that run as real Python in the judge) the judge may also hold
*handles* to objects that cannot travel as data (a generator, an instance of the
candidate's own class): the object stays here and the judge asks for what the test does
with it (iterate, call a method, read an attribute), each answer again as data. Likewise
a function the test passes in (a lambda) stays in the judge: the candidate gets a stub
that asks the judge to call it. Mutable arguments are sent back after each call, so a
function that sorts a list in place is seen to have done so.
"""

from __future__ import annotations

import builtins
import faulthandler
import itertools
import sys
import traceback
from collections.abc import Callable
from typing import Any

import codec
import framing

_MAX_REQUEST = 64 << 20
_MUTABLE = (list, dict, set, bytearray)


def _describe(exc: BaseException) -> dict[str, Any]:
    try:
        message = str(exc)[:500]
    except BaseException:  # noqa: BLE001 - str() of a hostile exception may raise
        message = "<unprintable>"
    return {"type": type(exc).__name__[:100], "msg": message, "mro": builtin_bases(type(exc))}


def builtin_bases(kind: type) -> list[str]:
    """The built-in exception classes an exception is an instance of, most specific first."""
    try:
        mro = type.mro(kind)
    except BaseException:  # noqa: BLE001
        return []
    return [c.__name__ for c in mro if isinstance(c, type) and getattr(builtins, c.__name__, None) is c][:20]


def _reply(chan: int, message: dict[str, Any]) -> None:
    try:
        framing.write(chan, message)
    except ValueError:
        # e.g. a value that json cannot serialise; say so rather than dying silently
        framing.write(chan, {"exc": {"type": "UnserializableResult", "msg": "value cannot be encoded"}})


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


class Session:
    """Answers the judge's requests about one loaded candidate module."""

    def __init__(self, chan: int, function: Callable[..., Any], handles: bool) -> None:
        self.chan = chan
        self.function = function
        self.handles = handles  # whole mode: objects that are not data stay here, by handle
        self.objects: dict[int, Any] = {}
        self.ids = itertools.count(1)

    def encode(self, value: Any) -> Any:
        """A value as data; in whole mode an object that is not data becomes a handle."""
        encoded = codec.encode(value)
        if self.handles and isinstance(encoded, dict) and "$opaque" in encoded:
            handle = next(self.ids)
            self.objects[handle] = value
            return {"$handle": handle, "type": encoded["$opaque"], "custom_eq": encoded.get("custom_eq", False)}
        return encoded

    def decode(self, data: Any) -> Any:
        """An argument from the judge: data, a handle of ours, or a function of the test's."""
        if type(data) is dict and len(data) == 1:
            if "$handle" in data:
                return self.objects[data["$handle"]]
            if "$callback" in data:
                return self._callback(int(data["$callback"]))
        return codec.decode(data)

    def _callback(self, number: int) -> Callable[..., Any]:
        def callback(*args: Any, **kwargs: Any) -> Any:
            encoded = [[self.encode(a) for a in args], {k: self.encode(v) for k, v in kwargs.items()}]
            framing.write(self.chan, {"cb": number, "args": encoded})
            while True:
                message = framing.read(self.chan, _MAX_REQUEST)
                if "cb_ok" in message:
                    return self.decode(message["cb_ok"])
                if "cb_exc" in message:
                    raise _rebuilt(message["cb_exc"])
                self.answer(message)  # the judge asked something while its function ran

        return callback

    def answer(self, request: dict[str, Any]) -> None:
        try:
            reply = self._perform(request)
        except BaseException as exc:  # noqa: BLE001 - SystemExit, MemoryError... are results too
            reply = {"exc": _describe(exc)}
        try:
            sys.stdout.flush()
        except BaseException:  # noqa: BLE001
            pass
        _reply(self.chan, reply)

    def _perform(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op", "call")
        target = self.objects[request["h"]] if "h" in request else self.function
        if op == "call":
            args_data, kwargs_data = request["call"]
            args = [self.decode(a) for a in args_data] if self.handles else codec.decode(args_data)
            kwargs = {k: self.decode(v) for k, v in kwargs_data.items()} if self.handles else codec.decode(kwargs_data)
            value = target(*args, **kwargs)
            reply: dict[str, Any] = {"ok": self.encode(value)}
            if self.handles:
                reply["wb"] = _written_back(args)
            return reply
        if op == "next":
            try:
                return {"ok": self.encode(next(target))}
            except StopIteration:
                return {"stop": True}
        if op == "getattr":
            return {"ok": self.encode(getattr(target, str(request["name"])))}
        if op == "getitem":
            return {"ok": self.encode(target[self.decode(request["key"])])}
        unary = {"iter": iter, "len": len, "bool": bool, "str": str, "repr": repr}
        if op in unary:
            return {"ok": self.encode(unary[op](target))}
        raise ValueError(f"unknown request {op!r}")


def _written_back(args: list[Any]) -> dict[str, Any]:
    """Mutable arguments as they are after the call (the judge updates its own copies)."""
    after = {}
    for index, arg in enumerate(args):
        if type(arg) in _MUTABLE:
            try:
                after[str(index)] = codec.encode(arg)
            except (ValueError, RecursionError):
                continue  # what cannot travel stays as the judge had it
    return after


def _rebuilt(described: Any) -> BaseException:
    """An exception the judge's function raised, as the nearest built-in class."""
    described = described if isinstance(described, dict) else {}
    message = str(described.get("msg", ""))[:500]
    for name in described.get("mro", []) if isinstance(described.get("mro"), list) else []:
        kind = getattr(builtins, str(name), None)
        if isinstance(kind, type) and issubclass(kind, Exception):
            try:
                return kind(message)
            except BaseException:  # noqa: BLE001, S112 - a class that wants other arguments: its base
                continue
    return Exception(message)


def serve(job: dict[str, Any], chan: int) -> None:
    """Load the candidate, then answer call requests until the judge hangs up."""
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
        session = Session(chan, namespace[entry], handles=job["mode"] == "whole")
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
        session.answer(request)
