"""Whole mode, inside the isolated harness: assert code that could not be split on the
trusted side runs here as real Python, calling the candidate by proxy.

Values cross from the candidate as data (`codec.decode`: plain built-ins, never live
objects); an object that is not data stays in the candidate's process and is seen here
as a `Remote` handle. The test's own functions passed as arguments stay here and are
called back on the candidate's request (`_OPS`). An exception the candidate raised is
re-raised as the nearest built-in class (a test may expect ValueError); anything else
that ends a call (crash, exit, timeout, limit) is a `CandidateFailure`.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any, Protocol

import candidate
import codec
from messages import CUSTOM_EQ, Kind, Tag

TEST_MODULE = "__rft_check__"  # the module the test code (and its setup code) runs as
_EXITS = ("SystemExit", "KeyboardInterrupt", "GeneratorExit")


class CandidateFailure(BaseException):
    """A proxied call ended with neither a value nor an exception: a crash, an exit, a
    timeout, a limit. A BaseException, so that test code expecting an exception (`except
    Exception:`) cannot take a crash for one; one swallowed by a bare `except:` is noticed
    too (`handled` stays False) and fails the check."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.handled = False


class Session(Protocol):
    """What whole mode needs of the harness's core (`harness.Harness`), and nothing more."""

    job: dict[str, Any]
    lives: int  # candidate processes started: a handle is valid only in its own
    deadline: float
    load_failure: dict[str, Any] | None
    on_callback: Callable[[dict[str, Any]], dict[str, Any]] | None

    @property
    def child(self) -> object | None: ...
    def report(self, record: dict[str, Any]) -> None: ...
    def ensure_loaded(self) -> dict[str, Any] | None: ...
    def send(self, message: Any) -> None: ...
    def await_reply(self) -> tuple[str, Any]: ...
    def discard_child(self, event: str) -> dict[str, Any]: ...


def run_whole(harness: Session, secret: dict[str, Any]) -> None:
    """Assert code that could not be split runs here, as real Python, calling the
    candidate by proxy (`WholeRun`); helpers come from the task's setup code."""
    run = WholeRun(harness)
    namespace = candidate.module_namespace(TEST_MODULE)
    try:
        candidate.run_code(secret.get("setup_code", ""), "<setup>", namespace)  # trusted: the task's
    except Exception as exc:  # noqa: BLE001 - the task's own code is broken: not the candidate's fault
        harness.report({"t": Tag.CHECK, "completed": False, "setup_error": f"{type(exc).__name__}: {exc}"[:300]})
        return
    entry = harness.job["entry_point"]
    namespace.update({"__rft_assert": run.seen.check_site, entry: run.proxy})
    completed, error = _run_check(run, secret, namespace)
    _report_check(harness, run.seen, completed, error)


def _run_check(run: WholeRun, secret: dict[str, Any], namespace: dict[str, Any]) -> tuple[bool, str]:
    """Whether the check code ran to its end, and why not. A `CandidateFailure` that the
    test code caught and swallowed still fails it: a crash is not an exception."""
    completed, error = False, ""
    try:
        candidate.run_code(secret["check_code"], "<tests>", namespace)
        if callable(namespace.get("check")):
            namespace["check"](run.proxy)
        completed = True
    except CandidateFailure as exc:
        exc.handled = True
        error = str(exc)
    except Exception as exc:  # noqa: BLE001
        error = _why(exc)[:300]
    swallowed = next((f for f in run.seen.failures if not f.handled), None)
    if swallowed is not None:
        completed = False
        error = f"{swallowed} inside code that caught it: a crash is not an exception"
    return completed, error


def _report_check(harness: Session, seen: Observations, completed: bool, error: str) -> None:
    if harness.load_failure is not None:
        harness.report({"t": Tag.LOAD, **harness.load_failure})
    for site, stats in sorted(seen.sites.items()):
        harness.report({"t": Tag.SITE, "site": site, **stats})
    harness.report(
        {
            "t": Tag.CHECK,
            "completed": completed,
            "error": error[:300],
            "events": seen.events,
            "evidence": seen.evidence,
        }
    )


class Observations:
    """What one check saw, for the service to judge: each assert site's runs and failures,
    the events of its calls, evidence of a cheat, and every `CandidateFailure` raised (one
    the test code swallowed is found here)."""

    def __init__(self) -> None:
        self.sites: dict[int, dict[str, Any]] = {}
        self.events: dict[str, int] = {}
        self.evidence: dict[str, str] = {}
        self.failures: list[CandidateFailure] = []

    def note(self, event: str) -> None:
        self.events[event[:120]] = self.events.get(event[:120], 0) + 1

    def fail(self, kind: str, detail: str = "") -> CandidateFailure:
        failure = CandidateFailure(kind, detail)
        self.failures.append(failure)
        return failure

    def check_site(self, site: int, thunk: Callable[[], Any]) -> None:
        stats = self.sites.setdefault(site, {"runs": 0, "fails": 0, "why": ""})
        stats["runs"] += 1
        try:
            ok, why = bool(thunk()), "assertion is false"
        except CandidateFailure as exc:
            exc.handled = True
            ok, why = False, str(exc)
        except Exception as exc:  # noqa: BLE001 - the test code's own errors, or the candidate's
            ok, why = False, _why(exc)
        if not ok:
            stats["fails"] += 1
            stats["why"] = stats["why"] or why[:300]

    def compared(self, type_name: str, text: str) -> None:
        """An object with the candidate's own __eq__ took part in a comparison."""
        self.note(CUSTOM_EQ)
        self.evidence.setdefault("custom_eq", f"{type_name}: {text}"[:300])


class WholeRun:
    """One whole-mode check: the proxies the test code calls, and the traffic both ways.

    The candidate's objects are `Remote` handles here; the test's objects it holds are
    numbered references (`refs`), asked of on its request (`_callback`).
    """

    def __init__(self, harness: Session) -> None:
        self.harness = harness
        self.seen = Observations()
        self.refs: list[Any] = []  # the test's objects the candidate holds, by number
        self.ref_numbers: dict[int, int] = {}  # id(object) -> number: one reference per object
        harness.on_callback = self._callback

    def proxy(self, *args: Any, **kwargs: Any) -> Any:
        return self.call(args, kwargs)

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any], handle: Remote | None = None) -> Any:
        request: dict[str, Any] = {
            "call": [[self.to_candidate(a) for a in args], {k: self.to_candidate(v) for k, v in kwargs.items()}]
        }
        if handle is not None:
            request["h"] = self._handle_of(handle)
        reply = self.exchange(request)
        passed = {**{str(i): a for i, a in enumerate(args)}, **kwargs}
        _write_back(passed, reply.get("wb"))
        same = reply.get("same")
        if isinstance(same, str) and same in passed:
            return passed[same]  # the candidate returned the very object it was given
        return self.from_candidate(reply.get("ok"))

    def ask(self, remote: Remote, op: str, **fields: Any) -> Any:
        reply = self.exchange({"op": op, "h": self._handle_of(remote), **fields})
        if op == "next" and reply.get("stop") is True:
            raise StopIteration
        return self.from_candidate(reply.get("ok"))

    def _handle_of(self, remote: Remote) -> int:
        if remote._life != self.harness.lives or self.harness.child is None:
            raise self.seen.fail(Kind.LOST, "the candidate process that held this object is gone")
        return remote._handle

    def exchange(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request; the reply that carries a value, or the exception it stands for."""
        harness, seen = self.harness, self.seen
        if time.monotonic() >= harness.deadline:
            raise seen.fail(Kind.NOT_RUN, "task time limit reached")
        failure = harness.ensure_loaded()
        if failure is not None:
            seen.note(failure["kind"])
            raise seen.fail(failure["kind"], str(failure.get("type") or failure.get("msg") or ""))
        harness.send(request)
        event, reply = harness.await_reply()
        if event == "reply" and ("ok" in reply or reply.get("stop") is True):
            return reply
        if event == "reply" and isinstance(reply.get("exc"), dict):
            raise _raised(seen, reply["exc"], str(request.get("op", "call")))
        record = (
            harness.discard_child(event if event != "reply" else Kind.GARBAGE) if harness.child else {"kind": event}
        )
        seen.note(record["kind"])
        raise seen.fail(record["kind"], str(record.get("signal") or record.get("code") or ""))

    def from_candidate(self, data: Any) -> Any:
        if type(data) is dict and "$handle" in data:
            handle = data.get("$handle")
            if type(handle) is not int:
                raise self.seen.fail(Kind.GARBAGE, "bad handle")
            remote = Remote(self, handle, str(data.get("type", "?"))[:100], data.get("custom_eq") is True)
            return _as_generator(remote) if data.get("type") == "generator" else remote
        if type(data) is dict and "$ref" in data:
            number = data.get("$ref")
            if type(number) is not int or not 0 <= number < len(self.refs):
                raise self.seen.fail(Kind.GARBAGE, "a reference to nothing")
            return self.refs[number]  # the test's own object, given back
        try:
            value = codec.decode(data)
        except (ValueError, TypeError, RecursionError):
            self.seen.note(Kind.GARBAGE)
            raise self.seen.fail(Kind.GARBAGE, "a value that cannot be decoded") from None
        cheat = codec.find_custom_eq(value)
        if cheat is not None:
            self.seen.compared(cheat.type_name, cheat.text)
        return value

    def to_candidate(self, value: Any) -> Any:
        """The test's value as the candidate gets it: data, the candidate's own object back,
        or a reference to an object of the test's (a function, a node it built)."""
        if isinstance(value, Remote):
            return {"$handle": self._handle_of(value)}
        encoded = codec.encode(value)
        if not (isinstance(encoded, dict) and "$opaque" in encoded):
            return encoded
        for base in (str, bytes, int, float, list, tuple, dict, set, frozenset):
            if isinstance(value, base) and not callable(value):  # class S(str) of the test's: its value
                try:
                    return codec.encode(base(value))
                except (ValueError, TypeError, RecursionError):
                    break
        number = self.ref_numbers.get(id(value))
        if number is None or self.refs[number] is not value:
            number = len(self.refs)
            self.refs.append(value)
            self.ref_numbers[id(value)] = number
        return {"$ref": number}

    def _callback(self, message: dict[str, Any]) -> dict[str, Any]:
        """The candidate asks something of an object of the test's (calls the function the
        test passed, walks the nodes it built). Only the object's public face is reachable
        (`_OPS`), so no path leads to the test's globals or code (and the expected values
        in them)."""
        number, op = message.get("cb"), message.get("op")
        if type(number) is not int or not 0 <= number < len(self.refs) or type(op) is not str:
            raise self.seen.fail(Kind.GARBAGE, "a request about an unknown object")
        target = self.refs[number]
        perform = _OPS.get(op)
        if perform is None:
            raise self.seen.fail(Kind.GARBAGE, f"an unknown request {op[:40]!r}")
        try:
            return {"cb_ok": self.to_candidate(perform(self, target, message))}
        except StopIteration:
            return {"cb_stop": True}
        except Exception as exc:  # noqa: BLE001 - the test's object raised: the candidate sees it
            return {"cb_exc": candidate.describe(exc)}


def _raised(seen: Observations, described: dict[str, Any], op: str) -> BaseException:
    """The candidate's exception as the test code sees it: the nearest built-in class, or
    a `CandidateFailure` where it stands for an exit or an exhausted limit."""
    kind = str(described.get("type", ""))[:100]
    message = str(described.get("msg", ""))[:500]
    seen.note(f"exception:{kind}")
    if kind in _EXITS:
        return seen.fail(Kind.EXIT, kind)
    if kind in ("MemoryError", "RecursionError"):  # limits exhausted, not a raised error
        return seen.fail(Kind.MEMORY if kind == "MemoryError" else Kind.EXCEPTION, kind)
    if kind == "UnserializableResult":
        return seen.fail(Kind.UNSERIALIZABLE, message)
    bases = candidate.exception_bases(described.get("mro"))
    if op != "next" and any(issubclass(b, StopIteration) for b in bases):
        # PEP 479's rule: a StopIteration out of a call is an error, not the end of the
        # test's own iteration (`all(map(candidate, xs))` would otherwise pass vacuously)
        bases = (RuntimeError,)
    raised = candidate.rebuild_exception(kind, bases, message, described.get("args"))
    raised._rft_candidate = kind  # type: ignore[attr-defined]
    return raised


# What the candidate may ask of an object of the test's, by op: a table, so that an op
# names a handler here and never an attribute of anything.
_Op = Callable[[WholeRun, Any, dict[str, Any]], Any]


def _op_call(run: WholeRun, target: Any, message: dict[str, Any]) -> Any:
    arguments = message.get("args")
    if type(arguments) is not list or len(arguments) != 2 or type(arguments[1]) is not dict:
        raise run.seen.fail(Kind.GARBAGE, "a malformed call of the test's function")
    args = [run.from_candidate(a) for a in arguments[0]] if type(arguments[0]) is list else []
    return target(*args, **{str(k): run.from_candidate(v) for k, v in arguments[1].items()})


def _public_name(target: Any, message: dict[str, Any]) -> str:
    """The attribute asked for, if it is in reach: one of the test's own class instances,
    never a name with an underscore."""
    name = message.get("name")
    if type(name) is not str or name.startswith("_") or type(target).__module__ != TEST_MODULE:
        raise AttributeError(f"{name!r} of the test's object is out of reach")
    return name


def _op_getattr(run: WholeRun, target: Any, message: dict[str, Any]) -> Any:
    return getattr(target, _public_name(target, message))


def _op_setattr(run: WholeRun, target: Any, message: dict[str, Any]) -> Any:
    setattr(target, _public_name(target, message), run.from_candidate(message.get("value")))
    return None


def _op_getitem(run: WholeRun, target: Any, message: dict[str, Any]) -> Any:
    return target[run.from_candidate(message.get("key"))]


def _op_contains(run: WholeRun, target: Any, message: dict[str, Any]) -> Any:
    return bool(run.from_candidate(message.get("item")) in target)


def _op_eq(run: WholeRun, target: Any, message: dict[str, Any]) -> Any:
    return bool(target == run.from_candidate(message.get("other")))


def _unary(function: Callable[[Any], Any]) -> _Op:
    return lambda run, target, message: function(target)


_UNARY: dict[str, Callable[[Any], Any]] = {
    "iter": iter, "next": next, "len": len, "bool": bool, "hash": hash, "str": str, "repr": repr,
}  # fmt: skip
_OPS: dict[str, _Op] = {
    "call": _op_call,
    "getattr": _op_getattr,
    "setattr": _op_setattr,
    "getitem": _op_getitem,
    "contains": _op_contains,
    "eq": _op_eq,
    **{op: _unary(function) for op, function in _UNARY.items()},
}


def _write_back(passed: dict[str, Any], after: Any) -> None:
    """The candidate's changes to mutable arguments, applied to the test's own objects."""
    if type(after) is not dict:
        return
    for key, data in after.items():
        target = passed.get(key) if isinstance(key, str) else None
        if type(target) not in candidate.MUTABLE:
            continue
        try:
            _update(target, codec.decode(data), 0)
        except (ValueError, TypeError, RecursionError):
            continue


def _update(target: Any, new: Any, depth: int) -> None:
    """Make `target` equal `new` in place, keeping the identity of inner mutable objects
    (a test that holds `row = grid[0]` sees the row change)."""
    if type(new) is not type(target) and not (type(target) is bytearray and type(new) is bytes):
        raise TypeError("changed type")
    if isinstance(target, (list, collections.deque, bytearray)):
        if isinstance(target, list) and len(target) == len(new) and depth < 32:
            for index, (old, value) in enumerate(zip(target, new, strict=True)):
                if type(old) in candidate.MUTABLE and type(value) is type(old):
                    _update(old, value, depth + 1)
                else:
                    target[index] = value
            return
        target.clear()
        target.extend(new)
    elif isinstance(target, dict):
        kept = {k: v for k, v in target.items() if type(v) in candidate.MUTABLE} if depth < 32 else {}
        target.clear()
        for k, value in new.items():
            old = kept.get(k)
            if old is not None and type(value) is type(old):
                _update(old, value, depth + 1)
                value = old
            target[k] = value
    else:  # set
        target.clear()
        target.update(new)


def _as_generator(remote: Remote) -> Any:
    """The candidate's generator as a real generator here (`isinstance(g, GeneratorType)`),
    each item asked of the candidate's process."""
    while True:
        try:
            item = remote.__next__()  # a generator is its own iterator: no `iter` round trip
        except StopIteration:
            return
        yield item


def _why(exc: BaseException) -> str:
    """Why a check failed: an exception the candidate raised is its runtime error (status
    RUNTIME_ERROR), one of the test code's own is a failed assertion."""
    kind = getattr(exc, "_rft_candidate", None)
    if isinstance(kind, str):
        return f"exception: {kind}: {exc}"
    return f"{type(exc).__name__}: {exc}"


class Remote:
    """An object of the candidate's (a generator, an instance of its class) seen from the harness.

    What the test does with it is asked of the candidate's process, each answer again as
    data. It equals nothing but itself: its __eq__ is never the candidate's."""

    __slots__ = ("_custom_eq", "_handle", "_life", "_run", "_type")

    def __init__(self, run: WholeRun, handle: int, type_name: str, custom_eq: bool) -> None:
        self._run = run
        self._handle = handle
        self._type = type_name
        self._custom_eq = custom_eq
        self._life = run.harness.lives

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._run.ask(self, "getattr", name=name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._run.call(args, kwargs, handle=self)

    def __iter__(self) -> Any:
        return self._run.ask(self, "iter")

    def __next__(self) -> Any:
        return self._run.ask(self, "next")

    def __len__(self) -> int:
        size = self._run.ask(self, "len")
        if type(size) is not int or size < 0:
            raise TypeError("len() of the candidate's object is not a non-negative int")
        return size

    def __bool__(self) -> bool:
        return self._run.ask(self, "bool") is True

    def __getitem__(self, key: Any) -> Any:
        return self._run.ask(self, "getitem", key=self._run.to_candidate(key))

    def __contains__(self, item: Any) -> bool:
        # decided here, over the elements the object yields as data: a `__contains__` of the
        # candidate's that answers True for anything takes no part
        return any(element is item or element == item for element in self)

    def __str__(self) -> str:
        text = self._run.ask(self, "str")
        return text if type(text) is str else repr(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Remote) and other._run is self._run:
            # two of the candidate's own objects: its own __eq__ decides, as in Python
            return other._handle == self._handle or self._run.ask(self, "eq", other=self._run._handle_of(other)) is True
        if self._custom_eq:  # against a value of the test's: never the candidate's __eq__
            self._run.seen.compared(self._type, "compared with ==")
        return False

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __lt__(self, other: object) -> bool:
        if isinstance(other, Remote) and other._run is self._run:
            return self._run.ask(self, "lt", other=self._run._handle_of(other)) is True
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        if isinstance(other, Remote) and other._run is self._run:
            return other.__lt__(self)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("remote", self._handle))

    def __repr__(self) -> str:
        text = self._run.ask(self, "repr")
        return text if type(text) is str else f"<{self._type} object of the candidate>"
