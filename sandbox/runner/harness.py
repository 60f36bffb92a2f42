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

import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any, Protocol

import framing
import wholerun
from messages import Kind, Mode, Tag
from zygote import SpawnError

_READ = 1 << 16
_EXCERPT = 4096
_DRAIN_SECONDS = 0.5
_WINDOW = 32 << 10  # bytes of requests in flight: well under a socket buffer, so no deadlock
REPORT_CAP = 32 << 20  # bytes of records one job may report: well under the runner's and service's caps


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
    """The plumbing every mode shares: the job's deadlines and report, and the candidate
    process, loaded on demand and again after one is lost. Each mode's driving is a
    function over it: `run_requests`, `run_io`, `wholerun.run_whole`."""

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

    def run(self, secret: dict[str, Any]) -> None:
        mode = self.job["mode"]
        try:
            if mode == Mode.IO:
                run_io(self)
            elif mode == Mode.WHOLE:
                wholerun.run_whole(self, secret)
            else:  # Mode.CALLS: the runner dispatched only these three here
                run_requests(self)
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

    def test_deadline(self) -> float:
        return min(time.monotonic() + self.test_seconds, self.deadline)

    def send(self, message: Any) -> None:
        """One message to the live candidate process, which has the test's time to take it."""
        assert self.child is not None
        self.child.send(message, self.test_deadline())

    def discard_child(self, event: str) -> dict[str, Any]:
        assert self.child is not None
        status = self.child.finish()
        record = _event_record(event, status)
        self.child = None
        return record

    def ensure_loaded(self) -> dict[str, Any] | None:
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
        event, reply = self.child.wait(self.test_deadline())
        if event == "reply" and reply.get("ready"):
            return None
        if event == "reply" and isinstance(reply.get("load_error"), dict):
            self.discard_child("eof")
            error = reply["load_error"]
            self.load_failure = {
                "kind": Kind.LOAD_ERROR,
                "type": str(error.get("type", ""))[:100],
                "msg": str(error.get("msg", ""))[:500],
            }
        else:
            self.load_failure = self.discard_child(event if event != "reply" else Kind.GARBAGE)
        return self.load_failure

    def await_reply(self) -> tuple[str, Any]:
        """The candidate's next answer; a call of one of the test's functions that it makes
        meanwhile (whole mode) is run here and answered first."""
        while True:
            assert self.child is not None
            event, reply = self.child.wait(self.test_deadline())
            if event != "reply" or "cb" not in reply or self.on_callback is None:
                return event, reply
            answer = self.on_callback(reply)
            if self.child is None:  # the test's function called the candidate, which died
                return "eof", None
            self.send(answer)

    def await_answer(self) -> dict[str, Any]:
        event, reply = self.await_reply()
        if event == "reply" and "ok" in reply:
            return {"kind": Kind.VALUE, "value": reply["ok"]}
        if event == "reply" and "exc" in reply and isinstance(reply["exc"], dict):
            exc = reply["exc"]
            return {
                "kind": Kind.EXCEPTION,
                "type": str(exc.get("type", ""))[:100],
                "msg": str(exc.get("msg", ""))[:500],
            }
        return self.discard_child(event if event != "reply" else Kind.GARBAGE)


def run_requests(harness: Harness) -> None:
    """Function-call and split-expression tests: one request per test, pipelined.

    Requests go out in windows of up to _WINDOW bytes so the candidate never waits
    for a round trip; each test still gets its own deadline, counted from the
    moment the previous answer arrived. A failure that costs the process (timeout,
    crash) restarts it and resends the rest.
    """
    requests = harness.job["requests"]
    encoded = [framing.pack(r) for r in requests]
    index = 0
    while index < len(requests):
        if time.monotonic() >= harness.deadline:
            harness.report({"t": Tag.TEST, "i": index, "kind": Kind.NOT_RUN})
            index += 1
            continue
        started = time.monotonic()
        failure = harness.ensure_loaded()
        if failure is not None:
            harness.report({"t": Tag.LOAD, **failure})
            for rest in range(index, len(requests)):
                harness.report({"t": Tag.TEST, "i": rest, "kind": Kind.NOT_RUN})
            return
        assert harness.child is not None
        end = _window_end(encoded, index)
        harness.child.send_raw(b"".join(encoded[index:end]), harness.test_deadline())
        index = _collect_answers(harness, index, end, started)


def _window_end(encoded: list[bytes], index: int) -> int:
    """Where the window of requests from `index` ends: at least one, else up to _WINDOW bytes."""
    end = index
    window = 0
    while end < len(encoded) and (end == index or window + len(encoded[end]) <= _WINDOW):
        window += len(encoded[end])
        end += 1
    return end


def _collect_answers(harness: Harness, index: int, end: int, started: float) -> int:
    """Report the answers to the window's requests as they come; the index to go on from,
    short of `end` where the process was lost with a test (respawn, resend the rest)."""
    while index < end:
        record = harness.await_answer()
        now = time.monotonic()
        record["ms"] = round((now - started) * 1000, 3)
        started = now
        harness.report({"t": Tag.TEST, "i": index, **record})
        index += 1
        if harness.child is None:
            break  # the process was lost with this test: respawn, resend the rest
    return index


def run_io(harness: Harness) -> None:
    """stdin/stdout tests: a fresh process per test, running the program as __main__."""
    for index, request in enumerate(harness.job["requests"]):
        if time.monotonic() >= harness.deadline:
            harness.report({"t": Tag.TEST, "i": index, "kind": Kind.NOT_RUN})
            continue
        started = time.monotonic()
        try:
            child = Child(harness.spawner, harness.budget, request["stdin"].encode("utf-8"))
        except SpawnError as exc:
            harness.report({"t": Tag.TEST, "i": index, "kind": Kind.HARNESS_KILLED, "msg": str(exc)})
            continue
        record = _run_program(harness, child)
        record["ms"] = round((time.monotonic() - started) * 1000, 3)
        harness.report({"t": Tag.TEST, "i": index, **record})


def _run_program(harness: Harness, child: Child) -> dict[str, Any]:
    """One run of the program over its stdin, to its end: what it printed, or how it failed."""
    event, reply = child.wait(harness.test_deadline())
    if event == "reply":
        child._drain(harness.test_deadline())
    stdout = bytes(child.output["stdout"]).decode("utf-8", "replace")
    status = child.finish()
    if event == "reply" and reply.get("done"):
        return {"kind": Kind.IO, "stdout": stdout}
    if event == "reply" and isinstance(reply.get("exc"), dict):
        return {
            "kind": Kind.EXCEPTION,
            "type": str(reply["exc"].get("type", ""))[:100],
            "msg": str(reply["exc"].get("msg", ""))[:500],
        }
    if event == "eof" and status.get("code") == 0:
        return {"kind": Kind.IO, "stdout": stdout}  # os._exit(0) after printing is legal here
    return _event_record(event, status)
