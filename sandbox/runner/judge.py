"""The judge: drives candidate processes through a job's tests and reports what it saw.

The judge never executes candidate code; it only talks to candidate processes over
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

import codec
import framing
from zygote import SpawnError

_READ = 1 << 16
_EXCERPT = 4096
_DRAIN_SECONDS = 0.5
_WINDOW = 32 << 10  # bytes of requests in flight: well under a socket buffer, so no deadlock


class CandidateFailure(Exception):
    """A proxied call did not produce a value (exception, timeout, crash...)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


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
        os.set_blocking(self.stdin_fd, False)
        if not stdin:
            self._close_stdin()
        self.status: int | None = None

    def _close_stdin(self) -> None:
        if self.stdin_fd >= 0:
            os.close(self.stdin_fd)
            self.stdin_fd = -1

    def send(self, message: Any) -> None:
        self.send_raw(framing.pack(message))

    def send_raw(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.chan, view) :]
        except OSError:
            pass  # the child died; wait() will report the EOF

    def _on_output(self, name: str, data: bytes) -> bool:
        self.output[name] += data
        excerpt = self.budget.excerpt[name]
        if len(excerpt) < _EXCERPT:
            excerpt += data[: _EXCERPT - len(excerpt)]
        self.budget.left -= len(data)
        return self.budget.left >= 0

    def wait(self, deadline: float) -> tuple[str, Any]:
        """Next event: ("reply", msg) | ("timeout",) | ("eof",) | ("output_limit",) | ("garbage",)."""
        while not self.replies:
            if not self.chan_open:
                self._drain(time.monotonic() + _DRAIN_SECONDS)
                return ("eof", None)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ("timeout", None)
            readers = [self.chan, *self.streams]
            writers = [self.stdin_fd] if self.stdin_fd >= 0 else []
            ready_r, ready_w, _ = select.select(readers, writers, [], remaining)
            if ready_w:
                self._feed_stdin()
            for fd in ready_r:
                if not self._read(fd):
                    return ("output_limit", None) if fd in self.streams else ("garbage", None)
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


def _event_record(event: str, status: dict[str, Any]) -> dict[str, Any]:
    if event == "eof":
        if status.get("signal") == signal.SIGXCPU:
            return {"kind": "timeout", "cpu": True}
        if "code" in status:
            return {"kind": "exit", **status}
        return {"kind": "crash", **status}
    return {"kind": event}


class Judge:
    def __init__(self, job: dict[str, Any], spawner: Spawner, report: Callable[[dict[str, Any]], None]) -> None:
        limits = job["limits"]
        self.job = job
        self.spawner = spawner
        self.report = report
        self.test_seconds = limits["test_ms"] / 1000
        self.deadline = time.monotonic() + limits["task_ms"] / 1000
        self.budget = OutputBudget(limits["output_bytes"])
        self.child: Child | None = None
        self.load_failure: dict[str, Any] | None = None  # loading fails the same way every time

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
        except SpawnError as exc:
            self.load_failure = {"kind": "harness_killed", "msg": str(exc)}
            return self.load_failure
        event, reply = self.child.wait(self._test_deadline())
        if event == "reply" and reply.get("ready"):
            return None
        if event == "reply" and isinstance(reply.get("load_error"), dict):
            self._discard_child("eof")
            error = reply["load_error"]
            self.load_failure = {
                "kind": "load_error",
                "type": str(error.get("type", ""))[:100],
                "msg": str(error.get("msg", ""))[:500],
            }
        else:
            self.load_failure = self._discard_child(event if event != "reply" else "garbage")
        return self.load_failure

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request to the candidate process; the observation as a record."""
        assert self.child is not None
        self.child.send(request)
        return self._await_answer()

    def _await_answer(self) -> dict[str, Any]:
        assert self.child is not None
        event, reply = self.child.wait(self._test_deadline())
        if event == "reply" and "ok" in reply:
            return {"kind": "value", "value": reply["ok"]}
        if event == "reply" and "exc" in reply and isinstance(reply["exc"], dict):
            exc = reply["exc"]
            return {"kind": "exception", "type": str(exc.get("type", ""))[:100], "msg": str(exc.get("msg", ""))[:500]}
        return self._discard_child(event if event != "reply" else "garbage")

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
                self.report({"t": "test", "i": index, "kind": "not_run"})
                index += 1
                continue
            started = time.monotonic()
            failure = self._ensure_loaded()
            if failure is not None:
                self.report({"t": "load", **failure})
                for rest in range(index, len(requests)):
                    self.report({"t": "test", "i": rest, "kind": "not_run"})
                return
            assert self.child is not None
            end = index
            window = 0
            while end < len(requests) and (end == index or window + len(encoded[end]) <= _WINDOW):
                window += len(encoded[end])
                end += 1
            self.child.send_raw(b"".join(encoded[index:end]))
            while index < end:
                record = self._await_answer()
                now = time.monotonic()
                record["ms"] = round((now - started) * 1000, 3)
                started = now
                self.report({"t": "test", "i": index, **record})
                index += 1
                if self.child is None:
                    break  # the process was lost with this test: respawn, resend the rest

    def run_io(self) -> None:
        """stdin/stdout tests: a fresh process per test, running the program as __main__."""
        for index, request in enumerate(self.job["requests"]):
            if time.monotonic() >= self.deadline:
                self.report({"t": "test", "i": index, "kind": "not_run"})
                continue
            started = time.monotonic()
            try:
                child = Child(self.spawner, self.budget, request["stdin"].encode("utf-8"))
            except SpawnError as exc:
                self.report({"t": "test", "i": index, "kind": "harness_killed", "msg": str(exc)})
                continue
            event, reply = child.wait(self._test_deadline())
            if event == "reply":
                child._drain(self._test_deadline())
            stdout = bytes(child.output["stdout"]).decode("utf-8", "replace")
            status = child.finish()
            if event == "reply" and reply.get("done"):
                record: dict[str, Any] = {"kind": "io", "stdout": stdout}
            elif event == "reply" and isinstance(reply.get("exc"), dict):
                record = {
                    "kind": "exception",
                    "type": str(reply["exc"].get("type", ""))[:100],
                    "msg": str(reply["exc"].get("msg", ""))[:500],
                }
            elif event == "eof" and status.get("code") == 0:
                record = {"kind": "io", "stdout": stdout}  # os._exit(0) after printing is legal here
            else:
                record = _event_record(event, status)
            record["ms"] = round((time.monotonic() - started) * 1000, 3)
            self.report({"t": "test", "i": index, **record})

    def run_whole(self, secret: dict[str, Any]) -> None:
        """Assert code that could not be split: it runs here, calling the candidate by proxy."""
        sites: dict[int, dict[str, Any]] = {}
        events: dict[str, int] = {}
        evidence: dict[str, str] = {}

        def note(event: str) -> None:
            events[event[:120]] = events.get(event[:120], 0) + 1

        def proxy_for(name: str) -> Callable[..., Any]:
            def proxy(*args: Any, **kwargs: Any) -> Any:
                if time.monotonic() >= self.deadline:
                    raise CandidateFailure("not_run", "task time limit reached")
                outcome = self._ensure_loaded()
                if outcome is None:
                    outcome = self._ask({"call": [codec.encode(list(args)), codec.encode(kwargs)], "fn": name})
                kind = outcome["kind"]
                if kind == "value":
                    value = codec.decode(outcome["value"])
                    cheat = codec.find_custom_eq(value)
                    if cheat is not None:
                        note("custom_eq")
                        evidence.setdefault("custom_eq", f"{cheat.type_name}: {cheat.text}")
                    return value
                note(f"exception:{outcome.get('type')}" if kind == "exception" else kind)
                raise CandidateFailure(kind, str(outcome.get("type") or outcome.get("msg") or ""))

            return proxy

        def check_site(site: int, thunk: Callable[[], Any]) -> None:
            stats = sites.setdefault(site, {"runs": 0, "fails": 0, "why": ""})
            stats["runs"] += 1
            try:
                ok, why = bool(thunk()), "assertion is false"
            except CandidateFailure as exc:
                ok, why = False, str(exc)
            except Exception as exc:  # noqa: BLE001 - the test code's own errors
                ok, why = False, f"{type(exc).__name__}: {exc}"
            if not ok:
                stats["fails"] += 1
                stats["why"] = stats["why"] or why[:300]

        entry = self.job["entry_point"]
        proxy = proxy_for(entry)
        namespace: dict[str, Any] = {name: proxy_for(name) for name in self.job.get("externals", [])}
        namespace.update({"__name__": "__rft_check__", "__rft_assert": check_site, entry: proxy})
        completed, error = False, ""
        try:
            exec(compile(secret["check_code"], "<tests>", "exec"), namespace)  # noqa: S102
            if callable(namespace.get("check")):
                namespace["check"](proxy)
            completed = True
        except CandidateFailure as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001
            error = f"{type(exc).__name__}: {exc}"[:300]
        if self.load_failure is not None:
            self.report({"t": "load", **self.load_failure})
        for site, stats in sorted(sites.items()):
            self.report({"t": "site", "site": site, **stats})
        self.report(
            {"t": "check", "completed": completed, "error": error[:300], "events": events, "evidence": evidence}
        )

    def run(self, secret: dict[str, Any]) -> None:
        mode = self.job["mode"]
        try:
            if mode == "io":
                self.run_io()
            elif mode == "whole":
                self.run_whole(secret)
            else:
                self.run_requests()
        finally:
            if self.child is not None:
                self.child.finish()
        self.report(
            {
                "t": "done",
                "stdout": bytes(self.budget.excerpt["stdout"]).decode("utf-8", "replace"),
                "stderr": bytes(self.budget.excerpt["stderr"]).decode("utf-8", "replace"),
                "deadline_hit": time.monotonic() >= self.deadline,
            }
        )
