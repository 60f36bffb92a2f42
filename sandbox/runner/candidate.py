"""The candidate process: the only process that executes untrusted code.

It is forked by the zygote, so its memory holds the candidate's code and the test
inputs but never a test's expected values. It answers the harness's requests over a
socket with tagged-JSON values; anything it says is data to be checked elsewhere.

In whole mode (tests that run as real Python in the harness) the harness may also hold
*handles* to objects that cannot travel as data (a generator, an instance of the
candidate's own class): the object stays here and the harness asks for what the test does
with it (iterate, call a method, read an attribute), each answer again as data. Likewise
a function the test passes in (a lambda) stays in the harness: the candidate gets a stub
that asks the harness to call it. Mutable arguments are sent back after each call, so a
function that sorts a list in place is seen to have done so.
"""

from __future__ import annotations

import builtins
import collections
import faulthandler
import itertools
import sys
import traceback
import types
from collections.abc import Callable
from typing import Any

import codec
import framing
from messages import Mode

_MAX_REQUEST = 64 << 20
_MAX_ARGS = 4096  # bytes of an exception's arguments sent along, as data
# arguments a call may change in place (exact types: what the codec can carry back)
MUTABLE = (list, dict, set, bytearray, collections.deque, collections.Counter, collections.OrderedDict,
            collections.defaultdict)  # fmt: skip


def describe(exc: BaseException) -> dict[str, Any]:
    try:
        message = str(exc)[:500]
    except BaseException:  # noqa: BLE001 - str() of a hostile exception may raise
        message = "<unprintable>"
    described = {"type": type(exc).__name__[:100], "msg": message, "mro": builtin_bases(type(exc))}
    try:
        args = codec.dumps(list(BaseException.args.__get__(exc)))  # type: ignore[attr-defined]
        if len(args) <= _MAX_ARGS:
            described["args"] = args  # KeyError('k').args[0] is 'k', not "'k'"
    except BaseException:  # noqa: BLE001 - arguments that are not data stay behind
        pass
    return described


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


def module_namespace(name: str) -> dict[str, Any]:
    """The globals of a real module registered under `name`: code that looks itself up in
    sys.modules (dataclasses, typing, pickle) works as it does in a file."""
    module = types.ModuleType(name)
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules[name] = module
    return module.__dict__


def run_code(code: str, filename: str, namespace: dict[str, Any]) -> None:
    """Execute source as its own module: no `from __future__` flags of ours leak into it
    (this file's `annotations` would turn every annotation into a string)."""
    exec(compile(code, filename, "exec", dont_inherit=True), namespace)  # noqa: S102 - the sandbox's job


def _run_main(code: str) -> None:
    """stdin/stdout tests: the program runs as __main__ and its output is the answer."""
    namespace = module_namespace("__main__")
    try:
        run_code(code, "<candidate>", namespace)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    finally:
        try:
            sys.stdout.flush()
        except BaseException:  # noqa: BLE001
            pass


class Session:
    """Answers the harness's requests about one loaded candidate module."""

    def __init__(self, chan: int, function: Callable[..., Any], handles: bool) -> None:
        self.chan = chan
        self.function = function
        self.handles = handles  # whole mode: objects that are not data stay here, by handle
        self.objects: dict[int, Any] = {}
        self.ids = itertools.count(1)
        self.refs: dict[int, Ref] = {}  # the test's objects, one proxy each (`a is b` holds)

    def encode(self, value: Any) -> Any:
        """A value as data; in whole mode an object that is not data becomes a handle, and an
        object of the test's goes back as its own reference."""
        if type(value) is Ref:
            return {"$ref": object.__getattribute__(value, "_number")}
        encoded = codec.encode(value)
        if self.handles and isinstance(encoded, dict) and "$opaque" in encoded:
            handle = next(self.ids)
            self.objects[handle] = value
            return {"$handle": handle, "type": encoded["$opaque"], "custom_eq": encoded.get("custom_eq", False)}
        return encoded

    def decode(self, data: Any) -> Any:
        """An argument from the harness: data, a handle of ours, or an object of the test's."""
        if type(data) is dict and len(data) == 1:
            if "$handle" in data:
                return self.objects[data["$handle"]]
            if "$ref" in data:
                number = int(data["$ref"])
                if number not in self.refs:
                    self.refs[number] = Ref(self, number)
                return self.refs[number]
        return codec.decode(data)

    def ask_harness(self, number: int, op: str, **fields: Any) -> Any:
        """Ask the harness to do `op` with its object `number`; answer the harness's own requests
        that arrive meanwhile (the object's code may call the candidate again)."""
        framing.write(self.chan, {"cb": number, "op": op, **fields})
        while True:
            message = framing.read(self.chan, _MAX_REQUEST)
            if "cb_ok" in message:
                return self.decode(message["cb_ok"])
            if message.get("cb_stop") is True:
                raise StopIteration
            if "cb_exc" in message:
                raise _rebuilt(message["cb_exc"])
            self.answer(message)

    def answer(self, request: dict[str, Any]) -> None:
        try:
            reply = self._perform(request)
        except BaseException as exc:  # noqa: BLE001 - SystemExit, MemoryError... are results too
            reply = {"exc": describe(exc)}
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
            if not self.handles:
                return {"ok": codec.encode(value)}
            passed = {**{str(i): a for i, a in enumerate(args)}, **kwargs}
            same = next((key for key, a in passed.items() if a is value and type(a) in MUTABLE), None)
            reply: dict[str, Any] = {"wb": _written_back(passed)}
            if same is None:
                reply["ok"] = self.encode(value)
            else:
                reply.update(ok=None, same=same)  # `f(xs) is xs`: the harness answers with its own object
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
        if op in ("eq", "lt"):  # between two of the candidate's own objects: its own rules
            other = self.objects[request["other"]]
            return {"ok": bool(target == other if op == "eq" else target < other)}
        unary = {"iter": iter, "len": len, "bool": bool, "str": str, "repr": repr}
        if op in unary:
            return {"ok": self.encode(unary[op](target))}
        raise ValueError(f"unknown request {op!r}")


class Ref:
    """An object of the test's (a function it passed, a linked-list node it built) seen from
    the candidate. It lives in the harness; what the candidate does with it is asked there, and
    what comes back is again data, a reference, or one of the candidate's own objects."""

    __slots__ = ("_number", "_session")

    def __init__(self, session: Session, number: int) -> None:
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_number", number)

    def _ask(self, op: str, **fields: Any) -> Any:
        session = object.__getattribute__(self, "_session")
        return session.ask_harness(object.__getattribute__(self, "_number"), op, **fields)

    def _encode(self, value: Any) -> Any:
        return object.__getattribute__(self, "_session").encode(value)

    def __getattr__(self, name: str) -> Any:
        return self._ask("getattr", name=name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._ask("setattr", name=name, value=self._encode(value))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        arguments = [[self._encode(a) for a in args], {k: self._encode(v) for k, v in kwargs.items()}]
        return self._ask("call", args=arguments)

    def __iter__(self) -> Any:
        return self._ask("iter")

    def __next__(self) -> Any:
        return self._ask("next")

    def __len__(self) -> int:
        return self._ask("len")

    def __bool__(self) -> bool:
        return self._ask("bool") is True

    def __getitem__(self, key: Any) -> Any:
        return self._ask("getitem", key=self._encode(key))

    def __contains__(self, item: Any) -> bool:
        return self._ask("contains", item=self._encode(item)) is True

    def __eq__(self, other: object) -> bool:
        return self._ask("eq", other=self._encode(other)) is True

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return self._ask("hash")

    def __str__(self) -> str:
        return self._ask("str")

    def __repr__(self) -> str:
        return self._ask("repr")


def _written_back(passed: dict[str, Any]) -> dict[str, Any]:
    """Mutable arguments (by position or keyword) as they are after the call: the harness
    updates its own objects."""
    after = {}
    for key, arg in passed.items():
        if type(arg) in MUTABLE:
            try:
                after[key] = codec.encode(arg)
            except (ValueError, RecursionError):
                continue  # what cannot travel stays as the harness had it
    return after


def exception_bases(mro: Any) -> tuple[type[Exception], ...]:
    """The built-in exception classes the candidate's exception derives from, most derived
    only (`class E(ValueError, TypeError)` gives both)."""
    found = [getattr(builtins, str(n), None) for n in (mro if isinstance(mro, list) else [])[:20]]
    kinds = [k for k in found if isinstance(k, type) and issubclass(k, Exception) and k is not MemoryError]
    return tuple(k for k in kinds if not any(o is not k and issubclass(o, k) for o in kinds)) or (Exception,)


_SYNTHETIC: dict[tuple[str, tuple[type, ...]], type] = {}


def rebuild_exception(kind: str, bases: tuple[type[Exception], ...], message: str, args_data: Any) -> Exception:
    """An exception like the candidate's: its built-in classes, its name, its arguments as data."""
    try:
        args = codec.loads(args_data) if isinstance(args_data, str) else None
    except (ValueError, TypeError, RecursionError):
        args = None
    cls: type = bases[0]
    if len(bases) > 1 or bases[0].__name__ != kind:
        key = (kind, bases)
        if key not in _SYNTHETIC and len(_SYNTHETIC) < 256:
            try:
                _SYNTHETIC[key] = type(kind if kind.isidentifier() else "CandidateError", bases, {})
            except TypeError:  # bases whose layouts conflict (OSError and ValueError): the first
                _SYNTHETIC[key] = type(kind if kind.isidentifier() else "CandidateError", bases[:1], {})
        cls = _SYNTHETIC.get(key, bases[0])
    for attempt in ((*args,) if isinstance(args, list) else None, (message,), ()):
        if attempt is None:
            continue
        try:
            return cls(*attempt)
        except Exception:  # noqa: BLE001,S112 - a class that wants other arguments: try fewer
            continue
    return Exception(f"{kind}: {message}")


def _rebuilt(described: Any) -> BaseException:
    """An exception one of the harness's objects raised, as the candidate sees it."""
    described = described if isinstance(described, dict) else {}
    kind = str(described.get("type", "Exception"))[:100]
    bases = exception_bases(described.get("mro"))
    return rebuild_exception(kind, bases, str(described.get("msg", ""))[:500], described.get("args"))


def serve(job: dict[str, Any], chan: int) -> None:
    """Load the candidate, then answer call requests until the harness hangs up."""
    faulthandler.enable()
    sys.dont_write_bytecode = True
    code = job["code"]
    if job["mode"] == Mode.IO:
        try:
            _run_main(code)
        except BaseException as exc:  # noqa: BLE001
            traceback.print_exc()
            sys.stderr.flush()
            _reply(chan, {"exc": describe(exc)})
            return
        _reply(chan, {"done": True})
        return

    namespace = module_namespace("__candidate__")
    try:
        run_code(code, "<candidate>", namespace)
        entry = job["entry_point"]
        if entry not in namespace:
            raise NameError(f"the candidate does not define {entry!r}")
        session = Session(chan, namespace[entry], handles=job["mode"] == Mode.WHOLE)
    except BaseException as exc:  # noqa: BLE001
        traceback.print_exc()
        _reply(chan, {"load_error": describe(exc)})
        return
    _reply(chan, {"ready": True})

    while True:
        try:
            request = framing.read(chan, _MAX_REQUEST)
        except framing.FrameError:
            return
        session.answer(request)
