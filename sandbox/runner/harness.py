"""The test harness, inside the sandbox: drives candidate processes through a job's tests
and reports what it saw. It runs in the runner itself for calls and io jobs, and in an
isolated process of its own for whole-mode jobs (`agent._harness_isolated`). Not to be
confused with the trusted scorer, which judges its records on the service's side.

The harness never executes candidate code; it only talks to candidate processes over
pipes and sees their answers as decoded plain data. That is what lets it hold
assert-style test code that could not be split on the trusted side, and it is made
non-dumpable so a candidate of the same uid cannot read its memory or its pipes.
It reports observations (values, exceptions, output, timings), never verdicts on
split tests: those are made by the service, which alone knows the expected values.
"""

from __future__ import annotations

import collections
import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any, Protocol

import candidate
import codec
import framing
from messages import CUSTOM_EQ, Kind, Mode, Tag
from zygote import SpawnError

_READ = 1 << 16
_EXCERPT = 4096
_DRAIN_SECONDS = 0.5
_WINDOW = 32 << 10  # bytes of requests in flight: well under a socket buffer, so no deadlock
TEST_MODULE = "__rft_check__"  # the module the test code (and its setup code) runs as
REPORT_CAP = 32 << 20  # bytes of records one job may report: well under the runner's and service's caps


class CandidateFailure(BaseException):
    """A proxied call ended with neither a value nor an exception: a crash, an exit, a
    timeout, a limit. A BaseException, so that test code expecting an exception (`except
    Exception:`) cannot take a crash for one; one swallowed by a bare `except:` is noticed
    too (`handled` stays False) and fails the check."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.handled = False


class OutputBudget:
    """Bytes of stdout+stderr the whole job may still produce."""

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.excerpt = {"stdout": bytearray(), "stderr": bytearray()}


class Spawner(Protocol):
    def spawn(self) -> tuple[int, list[int]]: ...
    def reap(self, pid: int) -> int: ...


class Child:
    """One live candidate process, seen through its channel and its output pipes."""

    def __init__(self, spawner: Spawner, budget: OutputBudget, stdin: bytes = b"") -> None:
        self.spawner = spawner
        self.pid, (self.chan, out_fd, err_fd, self.stdin_fd) = spawner.spawn()
        self.streams = {out_fd: "stdout", err_fd: "stderr"}
        self.output = {"stdout": bytearray(), "stderr": bytearray()}
        self.budget = budget
        self.frames = framing.FrameBuffer(budget.left + (1 << 20))
        self.replies: list[Any] = []
        self.pending_stdin = stdin
        self.chan_open = True
        self.pending: str | None = None  # an event found while sending, for the next wait
        os.set_blocking(self.chan, False)
        os.set_blocking(self.stdin_fd, False)
        if not stdin:
            self._close_stdin()
        self.status: int | None = None

    def _close_stdin(self) -> None:
        if self.stdin_fd >= 0:
            os.close(self.stdin_fd)
            self.stdin_fd = -1

    def send(self, message: Any, deadline: float) -> None:
        self.send_raw(framing.pack(message), deadline)

    def send_raw(self, data: bytes, deadline: float) -> None:
        """Write requests, reading the child's output meanwhile. A candidate that does not
        take them by the deadline has timed out (the next `wait` says so): a blocking write
        would hang the whole job instead."""
        view = memoryview(data)
        while view and self.pending is None:
            try:
                view = view[os.write(self.chan, view) :]
                continue
            except BlockingIOError:
                pass
            except OSError:
                return  # the child died; wait() will report the EOF
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.pending = Kind.TIMEOUT
                return
            ready, _, _ = select.select(list(self.streams), [self.chan], [], remaining)
            for fd in ready:
                if not self._read(fd):
                    self.pending = Kind.OUTPUT_LIMIT

    def _on_output(self, name: str, data: bytes) -> bool:
        self.output[name] += data
        excerpt = self.budget.excerpt[name]
        if len(excerpt) < _EXCERPT:
            excerpt += data[: _EXCERPT - len(excerpt)]
        self.budget.left -= len(data)
        return self.budget.left >= 0

    def wait(self, deadline: float) -> tuple[str, Any]:
        """Next event: ("reply", msg) | ("timeout",) | ("eof",) | ("output_limit",) | ("garbage",)."""
        if self.pending is not None and not self.replies:
            return (self.pending, None)
        while not self.replies:
            if not self.chan_open:
                self._drain(time.monotonic() + _DRAIN_SECONDS)
                return ("eof", None)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return (Kind.TIMEOUT, None)
            readers = [self.chan, *self.streams]
            writers = [self.stdin_fd] if self.stdin_fd >= 0 else []
            ready_r, ready_w, _ = select.select(readers, writers, [], remaining)
            if ready_w:
                self._feed_stdin()
            for fd in ready_r:
                if not self._read(fd):
                    return (Kind.OUTPUT_LIMIT, None) if fd in self.streams else (Kind.GARBAGE, None)
        return ("reply", self.replies.pop(0))

    def _feed_stdin(self) -> None:
        try:
            written = os.write(self.stdin_fd, self.pending_stdin[:_READ])
        except BlockingIOError:
            return
        except OSError:  # the program closed its stdin: the rest is not wanted
            written = len(self.pending_stdin)
        self.pending_stdin = self.pending_stdin[written:]
        if not self.pending_stdin:
            self._close_stdin()

    def _read(self, fd: int) -> bool:
        try:
            data = os.read(fd, _READ)
        except OSError:
            data = b""
        if fd == self.chan:
            if not data:
                self.chan_open = False
                return True
            try:
                frames = self.frames.feed(data)
            except framing.FrameError:
                return False
            if not all(isinstance(frame, dict) for frame in frames):
                return False  # only the candidate itself could have written that
            self.replies.extend(frames)
            return True
        if not data:
            del self.streams[fd]
            os.close(fd)
            return True
        return self._on_output(self.streams[fd], data)

    def _drain(self, deadline: float) -> None:
        """Collect output still in the pipes of a child that has gone."""
        while self.streams and time.monotonic() < deadline:
            ready, _, _ = select.select(list(self.streams), [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                return
            for fd in ready:
                if not self._read(fd):
                    return

    def finish(self) -> dict[str, Any]:
        """Kill the child's process group, reap it, and describe how it ended."""
        self.status = self.spawner.reap(self.pid)
        for fd in [self.chan, *self.streams]:
            try:
                os.close(fd)
            except OSError:
                pass
        self.streams = {}
        self._close_stdin()
        return describe_status(self.status)


def describe_status(status: int | None) -> dict[str, Any]:
    if status is None or status < 0:
        return {"status": "unknown"}
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"code": os.WEXITSTATUS(status)}


def _keys(record: dict[str, Any]) -> dict[str, Any]:
    """The parts of a record that say which test it is about."""
    return {k: record[k] for k in ("t", "i") if k in record and type(record[k]) in (str, int)}


def _event_record(event: str, status: dict[str, Any]) -> dict[str, Any]:
    if event == "eof":
        if status.get("signal") == signal.SIGXCPU:
            return {"kind": Kind.TIMEOUT, "cpu": True}
        if "code" in status:
            return {"kind": Kind.EXIT, **status}
        return {"kind": Kind.CRASH, **status}
    return {"kind": event}


class Harness:
    def __init__(self, job: dict[str, Any], spawner: Spawner, emit: Callable[[bytes], None]) -> None:
        limits = job["limits"]
        self.job = job
        self.spawner = spawner
        self.emit = emit
        self.report_left = REPORT_CAP
        self.test_seconds = limits["test_ms"] / 1000
        self.deadline = time.monotonic() + limits["task_ms"] / 1000
        self.budget = OutputBudget(limits["output_bytes"])
        self.child: Child | None = None
        self.lives = 0  # candidate processes started: a handle is valid only in its own
        self.load_failure: dict[str, Any] | None = None  # loading fails the same way every time
        self.on_callback: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def report(self, record: dict[str, Any]) -> None:
        """Emit one record. Whatever the candidate put in it, the record must reach the service
        whole: one that cannot be encoded, or that would overflow the job's report, is sent as a
        small record saying so (the candidate's failure), never as a broken report."""
        try:
            data = framing.pack(record)
        except (ValueError, TypeError, RecursionError):
            data = framing.pack({**_keys(record), "kind": Kind.GARBAGE})
        if len(data) > self.report_left - 4096 and record.get("t") == Tag.TEST:
            data = framing.pack({**_keys(record), "kind": Kind.REPORT_LIMIT})
        self.report_left -= len(data)
        self.emit(data)

    def _test_deadline(self) -> float:
        return min(time.monotonic() + self.test_seconds, self.deadline)

    def _discard_child(self, event: str) -> dict[str, Any]:
        assert self.child is not None
        status = self.child.finish()
        record = _event_record(event, status)
        self.child = None
        return record

    def _ensure_loaded(self) -> dict[str, Any] | None:
        """Start a candidate process if none is live; a record if it failed to load."""
        if self.child is not None:
            return None
        if self.load_failure is not None:
            return self.load_failure
        try:
            self.child = Child(self.spawner, self.budget)
            self.lives += 1
        except SpawnError as exc:
            self.load_failure = {"kind": Kind.HARNESS_KILLED, "msg": str(exc)}
            return self.load_failure
        event, reply = self.child.wait(self._test_deadline())
        if event == "reply" and reply.get("ready"):
            return None
        if event == "reply" and isinstance(reply.get("load_error"), dict):
            self._discard_child("eof")
            error = reply["load_error"]
            self.load_failure = {
                "kind": Kind.LOAD_ERROR,
                "type": str(error.get("type", ""))[:100],
                "msg": str(error.get("msg", ""))[:500],
            }
        else:
            self.load_failure = self._discard_child(event if event != "reply" else Kind.GARBAGE)
        return self.load_failure

    def _await_reply(self) -> tuple[str, Any]:
        """The candidate's next answer; a call of one of the test's functions that it makes
        meanwhile (whole mode) is run here and answered first."""
        while True:
            assert self.child is not None
            event, reply = self.child.wait(self._test_deadline())
            if event != "reply" or "cb" not in reply or self.on_callback is None:
                return event, reply
            answer = self.on_callback(reply)
            if self.child is None:  # the test's function called the candidate, which died
                return "eof", None
            self.child.send(answer, self._test_deadline())

    def _await_answer(self) -> dict[str, Any]:
        event, reply = self._await_reply()
        if event == "reply" and "ok" in reply:
            return {"kind": Kind.VALUE, "value": reply["ok"]}
        if event == "reply" and "exc" in reply and isinstance(reply["exc"], dict):
            exc = reply["exc"]
            return {
                "kind": Kind.EXCEPTION,
                "type": str(exc.get("type", ""))[:100],
                "msg": str(exc.get("msg", ""))[:500],
            }
        return self._discard_child(event if event != "reply" else Kind.GARBAGE)

    def run_requests(self) -> None:
        """Function-call and split-expression tests: one request per test, pipelined.

        Requests go out in windows of up to _WINDOW bytes so the candidate never waits
        for a round trip; each test still gets its own deadline, counted from the
        moment the previous answer arrived. A failure that costs the process (timeout,
        crash) restarts it and resends the rest.
        """
        requests = self.job["requests"]
        encoded = [framing.pack(r) for r in requests]
        index = 0
        while index < len(requests):
            if time.monotonic() >= self.deadline:
                self.report({"t": Tag.TEST, "i": index, "kind": Kind.NOT_RUN})
                index += 1
                continue
            started = time.monotonic()
            failure = self._ensure_loaded()
            if failure is not None:
                self.report({"t": Tag.LOAD, **failure})
                for rest in range(index, len(requests)):
                    self.report({"t": Tag.TEST, "i": rest, "kind": Kind.NOT_RUN})
                return
            assert self.child is not None
            end = index
            window = 0
            while end < len(requests) and (end == index or window + len(encoded[end]) <= _WINDOW):
                window += len(encoded[end])
                end += 1
            self.child.send_raw(b"".join(encoded[index:end]), self._test_deadline())
            while index < end:
                record = self._await_answer()
                now = time.monotonic()
                record["ms"] = round((now - started) * 1000, 3)
                started = now
                self.report({"t": Tag.TEST, "i": index, **record})
                index += 1
                if self.child is None:
                    break  # the process was lost with this test: respawn, resend the rest

    def run_io(self) -> None:
        """stdin/stdout tests: a fresh process per test, running the program as __main__."""
        for index, request in enumerate(self.job["requests"]):
            if time.monotonic() >= self.deadline:
                self.report({"t": Tag.TEST, "i": index, "kind": Kind.NOT_RUN})
                continue
            started = time.monotonic()
            try:
                child = Child(self.spawner, self.budget, request["stdin"].encode("utf-8"))
            except SpawnError as exc:
                self.report({"t": Tag.TEST, "i": index, "kind": Kind.HARNESS_KILLED, "msg": str(exc)})
                continue
            event, reply = child.wait(self._test_deadline())
            if event == "reply":
                child._drain(self._test_deadline())
            stdout = bytes(child.output["stdout"]).decode("utf-8", "replace")
            status = child.finish()
            if event == "reply" and reply.get("done"):
                record: dict[str, Any] = {"kind": Kind.IO, "stdout": stdout}
            elif event == "reply" and isinstance(reply.get("exc"), dict):
                record = {
                    "kind": Kind.EXCEPTION,
                    "type": str(reply["exc"].get("type", ""))[:100],
                    "msg": str(reply["exc"].get("msg", ""))[:500],
                }
            elif event == "eof" and status.get("code") == 0:
                record = {"kind": Kind.IO, "stdout": stdout}  # os._exit(0) after printing is legal here
            else:
                record = _event_record(event, status)
            record["ms"] = round((time.monotonic() - started) * 1000, 3)
            self.report({"t": Tag.TEST, "i": index, **record})

    def run_whole(self, secret: dict[str, Any]) -> None:
        """Assert code that could not be split runs here, as real Python, calling the
        candidate by proxy (`WholeRun`); helpers come from the task's setup code."""
        run = WholeRun(self)
        namespace = candidate.module_namespace(TEST_MODULE)
        try:
            candidate.run_code(secret.get("setup_code", ""), "<setup>", namespace)  # trusted: the task's
        except Exception as exc:  # noqa: BLE001 - the task's own code is broken: not the candidate's fault
            self.report({"t": Tag.CHECK, "completed": False, "setup_error": f"{type(exc).__name__}: {exc}"[:300]})
            return
        entry = self.job["entry_point"]
        namespace.update({"__rft_assert": run.check_site, entry: run.proxy})
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
        swallowed = next((f for f in run.failures if not f.handled), None)
        if swallowed is not None:
            completed = False
            error = f"{swallowed} inside code that caught it: a crash is not an exception"
        if self.load_failure is not None:
            self.report({"t": Tag.LOAD, **self.load_failure})
        for site, stats in sorted(run.sites.items()):
            self.report({"t": Tag.SITE, "site": site, **stats})
        self.report(
            {
                "t": Tag.CHECK,
                "completed": completed,
                "error": error[:300],
                "events": run.events,
                "evidence": run.evidence,
            }
        )

    def run(self, secret: dict[str, Any]) -> None:
        mode = self.job["mode"]
        try:
            if mode == Mode.IO:
                self.run_io()
            elif mode == Mode.WHOLE:
                self.run_whole(secret)
            else:  # Mode.CALLS: the runner dispatched only these three here
                self.run_requests()
        finally:
            if self.child is not None:
                self.child.finish()
        self.report(
            {
                "t": Tag.DONE,
                "stdout": bytes(self.budget.excerpt["stdout"]).decode("utf-8", "replace"),
                "stderr": bytes(self.budget.excerpt["stderr"]).decode("utf-8", "replace"),
                "deadline_hit": time.monotonic() >= self.deadline,
            }
        )


_EXITS = ("SystemExit", "KeyboardInterrupt", "GeneratorExit")


class WholeRun:
    """One whole-mode check: the proxies the test code calls, and what they observed.

    Values cross from the candidate as data (`codec.decode`: plain built-ins, never live
    objects); an object that is not data stays in the candidate's process and is seen here
    as a `Remote` handle. The test's own functions passed as arguments stay here and are
    called back on the candidate's request. An exception the candidate raised is re-raised
    as the nearest built-in class (a test may expect ValueError); anything else that ends a
    call (crash, exit, timeout, limit) is a `CandidateFailure`.
    """

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.sites: dict[int, dict[str, Any]] = {}
        self.events: dict[str, int] = {}
        self.evidence: dict[str, str] = {}
        self.failures: list[CandidateFailure] = []
        self.refs: list[Any] = []  # the test's objects the candidate holds, by number
        self.ref_numbers: dict[int, int] = {}  # id(object) -> number: one reference per object
        harness.on_callback = self._callback

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
            raise self.fail(Kind.LOST, "the candidate process that held this object is gone")
        return remote._handle

    def exchange(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request; the reply that carries a value, or the exception it stands for."""
        harness = self.harness
        if time.monotonic() >= harness.deadline:
            raise self.fail(Kind.NOT_RUN, "task time limit reached")
        failure = harness._ensure_loaded()
        if failure is not None:
            self.note(failure["kind"])
            raise self.fail(failure["kind"], str(failure.get("type") or failure.get("msg") or ""))
        assert harness.child is not None
        harness.child.send(request, harness._test_deadline())
        event, reply = harness._await_reply()
        if event == "reply" and ("ok" in reply or reply.get("stop") is True):
            return reply
        if event == "reply" and isinstance(reply.get("exc"), dict):
            raise self._exception(reply["exc"], str(request.get("op", "call")))
        record = (
            harness._discard_child(event if event != "reply" else Kind.GARBAGE) if harness.child else {"kind": event}
        )
        self.note(record["kind"])
        raise self.fail(record["kind"], str(record.get("signal") or record.get("code") or ""))

    def _exception(self, described: dict[str, Any], op: str) -> BaseException:
        kind = str(described.get("type", ""))[:100]
        message = str(described.get("msg", ""))[:500]
        self.note(f"exception:{kind}")
        if kind in _EXITS:
            return self.fail(Kind.EXIT, kind)
        if kind in ("MemoryError", "RecursionError"):  # limits exhausted, not a raised error
            return self.fail(Kind.MEMORY if kind == "MemoryError" else Kind.EXCEPTION, kind)
        if kind == "UnserializableResult":
            return self.fail(Kind.UNSERIALIZABLE, message)
        bases = candidate.exception_bases(described.get("mro"))
        if op != "next" and any(issubclass(b, StopIteration) for b in bases):
            # PEP 479's rule: a StopIteration out of a call is an error, not the end of the
            # test's own iteration (`all(map(candidate, xs))` would otherwise pass vacuously)
            bases = (RuntimeError,)
        raised = candidate.rebuild_exception(kind, bases, message, described.get("args"))
        raised._rft_candidate = kind  # type: ignore[attr-defined]
        return raised

    def from_candidate(self, data: Any) -> Any:
        if type(data) is dict and "$handle" in data:
            handle = data.get("$handle")
            if type(handle) is not int:
                raise self.fail(Kind.GARBAGE, "bad handle")
            remote = Remote(self, handle, str(data.get("type", "?"))[:100], data.get("custom_eq") is True)
            return _as_generator(remote) if data.get("type") == "generator" else remote
        if type(data) is dict and "$ref" in data:
            number = data.get("$ref")
            if type(number) is not int or not 0 <= number < len(self.refs):
                raise self.fail(Kind.GARBAGE, "a reference to nothing")
            return self.refs[number]  # the test's own object, given back
        try:
            value = codec.decode(data)
        except (ValueError, TypeError, RecursionError):
            self.note(Kind.GARBAGE)
            raise self.fail(Kind.GARBAGE, "a value that cannot be decoded") from None
        cheat = codec.find_custom_eq(value)
        if cheat is not None:
            self.compared(cheat.type_name, cheat.text)
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

    def compared(self, type_name: str, text: str) -> None:
        """An object with the candidate's own __eq__ took part in a comparison."""
        self.note(CUSTOM_EQ)
        self.evidence.setdefault("custom_eq", f"{type_name}: {text}"[:300])

    def _callback(self, message: dict[str, Any]) -> dict[str, Any]:
        """The candidate asks something of an object of the test's (calls the function the
        test passed, walks the nodes it built). Only the object's public face is reachable:
        attributes of the test's own class instances, never a name with an underscore, so no
        path leads to the test's globals or code (and the expected values in them)."""
        number, op = message.get("cb"), message.get("op")
        if type(number) is not int or not 0 <= number < len(self.refs) or type(op) is not str:
            raise self.fail(Kind.GARBAGE, "a request about an unknown object")
        target = self.refs[number]
        try:
            return {"cb_ok": self.to_candidate(self._perform(target, op, message))}
        except StopIteration:
            return {"cb_stop": True}
        except Exception as exc:  # noqa: BLE001 - the test's object raised: the candidate sees it
            return {"cb_exc": candidate.describe(exc)}

    def _perform(self, target: Any, op: str, message: dict[str, Any]) -> Any:
        if op == "call":
            arguments = message.get("args")
            if type(arguments) is not list or len(arguments) != 2 or type(arguments[1]) is not dict:
                raise self.fail(Kind.GARBAGE, "a malformed call of the test's function")
            args = [self.from_candidate(a) for a in arguments[0]] if type(arguments[0]) is list else []
            return target(*args, **{str(k): self.from_candidate(v) for k, v in arguments[1].items()})
        if op in ("getattr", "setattr"):
            name = message.get("name")
            if type(name) is not str or name.startswith("_") or type(target).__module__ != TEST_MODULE:
                raise AttributeError(f"{name!r} of the test's object is out of reach")
            if op == "getattr":
                return getattr(target, name)
            setattr(target, name, self.from_candidate(message.get("value")))
            return None
        if op in ("getitem", "contains", "eq"):
            other = self.from_candidate(message.get({"getitem": "key", "contains": "item", "eq": "other"}[op]))
            return target[other] if op == "getitem" else bool(other in target if op == "contains" else target == other)
        unary: dict[str, Callable[[Any], Any]] = {
            "iter": iter, "next": next, "len": len, "bool": bool, "hash": hash, "str": str, "repr": repr,
        }  # fmt: skip
        if op not in unary:
            raise self.fail(Kind.GARBAGE, f"an unknown request {op[:40]!r}")
        return unary[op](target)


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
            self._run.compared(self._type, "compared with ==")
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
