"""`serve --processes N` (sandbox/multiproc.py): N real service processes on one loopback port.

Each test starts its own supervisor subprocess; signals go to the PIDs it started (the
supervisor, and a child it names in its log), never by name.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from rewards.model import Finding, Severity, Status, Verdict
from sandbox.api import CLIENT_CHANNEL_ARGS, Stub, pb
from sandbox.audit import AuditLog
from sandbox.multiproc import worker_shares
from tests.helpers import call_task, free_port, limits
from tests.test_metrics import by, scrape
from trainer_plugin.client import ClientOptions, SandboxClient

ROOT = Path(__file__).resolve().parent.parent
# stdout says which sandbox ran the job: its uid is the node-wide slot (61000 + slot)
WHOAMI = "import os\n\ndef f(x):\n    print('uid', os.getuid())\n    return x + 1\n"
SLEEPY = "import time\n\ndef f(x, seconds):\n    time.sleep(seconds)\n    return x + 1\n"
# a channel of its own TCP connection: channels with equal arguments share one otherwise
OWN_CONNECTION = (*CLIENT_CHANNEL_ARGS, ("grpc.use_local_subchannel_pool", 1))
CONNECTIONS = 16  # all on one of two processes by chance: 2 ** -15
_EXIT_S = 90.0  # drain of every process, stop of pools and sandboxes: a bound, not a measurement


def whoami(task_id: str) -> pb.Task:
    return call_task(task_id, WHOAMI, "f", [([1], 2)])


def sleepy(task_id: str, seconds: float) -> pb.Task:
    return call_task(task_id, SLEEPY, "f", [([1, seconds], 2)], limits(test_ms=60_000, task_ms=60_000))


def _free_port_pair() -> int:
    """A port P with P+1 free too (the metrics of process 0 and 1)."""
    for _ in range(50):
        port = free_port()
        if port < 65535:
            try:
                import socket

                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise AssertionError("no two consecutive free ports")


class Node:
    """A `serve --processes N` supervisor; its log (stderr, JSON lines) read as it comes."""

    def __init__(self, tmp_path: Path, *options: str) -> None:
        command = [sys.executable, "-m", "sandbox", "serve", "--backend", "bwrap", "--port", "0", *options]
        command += ["--audit-log", str(tmp_path / "audit.jsonl")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
        self.entries: list[dict] = []
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                if line.startswith("{"):
                    self.entries.append(json.loads(line))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, message: str, count: int, timeout: float = 120.0) -> list[dict]:
        """The first `count` log entries with this message, once there are that many."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [entry for entry in self.entries if entry.get("message") == message]
                if len(found) >= count:
                    return found[:count]
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"no {count} x {message!r}: {''.join(self.lines)}")
                self._changed.wait(1.0)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.wait_for('supervising', 1)[0]['port']}"

    def children(self) -> list[int]:
        return [entry["pid"] for entry in self.entries if entry.get("message") == "process started"]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for pid in self.children():  # they drain on the supervisor's death (PDEATHSIG); make sure
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def node(tmp_path: Path) -> Iterator:
    started: list[Node] = []

    def start(*options: str) -> Node:
        started.append(Node(tmp_path, *options))
        return started[-1]

    yield start
    for each in started:
        each.close()


def _batches(target: str, batches: list[list[pb.Task]]) -> list[pb.Result]:
    """Each batch on a connection of its own, all at once."""
    results: list[pb.Result] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def send(tasks: list[pb.Task]) -> None:
        try:
            with grpc.insecure_channel(target, options=OWN_CONNECTION) as channel:
                got = list(Stub(channel).ScoreBatch(pb.ScoreBatchRequest(tasks=tasks), timeout=300))
            with lock:
                results.extend(got)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(tasks,)) for tasks in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def test_tasks_over_many_connections_are_each_scored_once_and_spread_over_both_processes(node):
    metrics = _free_port_pair()
    ports = (metrics, metrics + 1)
    server = node("--processes", "2", "--workers", "2", "--metrics-port", str(metrics))
    server.wait_for("serving", 2)
    batches = [[whoami(f"c{c}-t{t}") for t in range(2)] for c in range(CONNECTIONS)]
    results = _batches(server.target, batches)
    ids = [r.id for r in results]
    assert sorted(ids) == sorted(t.id for batch in batches for t in batch), "every task answered exactly once"
    assert {pb.Status.Name(r.status) for r in results} == {"PASSED"}, [r.message for r in results]
    # the service's own counts, process by process: both took tasks, and together all of them
    counted = [by(scrape(port), "rft_sandbox_tasks_total", "language").get(("python",), 0) for port in ports]
    assert all(n > 0 for n in counted), counted
    assert sum(counted) == len(ids), counted
    # each process's one sandbox has a uid of its own (slot numbers continue across processes)
    uids = {r.stdout_excerpt.split()[1] for r in results}
    assert uids == {"61000", "61001"}, uids
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=_EXIT_S) == 0, "".join(server.lines)


def test_one_plugin_client_spreads_its_batch_over_both_processes(node):
    # one trainer process, one `score_all`: its chunks in flight go on connections of their own
    server = node("--processes", "2", "--workers", "2")
    server.wait_for("serving", 2)
    client = SandboxClient(ClientOptions(server.target, max_concurrency=CONNECTIONS, timeout=300))
    try:
        # CONNECTIONS chunks of 8 distinct tasks (the client would score equal ones once)
        tasks = [call_task(f"t{n}", f"{WHOAMI}# {n}\n", "f", [([1], 2)]) for n in range(8 * CONNECTIONS)]
        results = client.score_all(tasks)
    finally:
        client.close()
    assert [r.id for r in results] == [t.id for t in tasks]
    assert {pb.Status.Name(r.status) for r in results} == {"PASSED"}, [r.message for r in results]
    assert {r.stdout_excerpt.split()[1] for r in results} == {"61000", "61001"}, "both processes scored"
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=_EXIT_S) == 0, "".join(server.lines)


def test_sigterm_mid_batch_loses_nothing_on_any_process(node):
    server = node("--processes", "2", "--workers", "2", "--drain-seconds", "60")
    server.wait_for("serving", 2)
    streams: list[tuple[grpc.Channel, object, list[pb.Result]]] = []
    sent: list[str] = []
    for c in range(8):
        tasks = [sleepy(f"c{c}-t{t}", 0.3) for t in range(3)]
        sent += [t.id for t in tasks]
        channel = grpc.insecure_channel(server.target, options=OWN_CONNECTION)
        stream = Stub(channel).ScoreBatch(pb.ScoreBatchRequest(tasks=tasks), timeout=300)
        streams.append((channel, stream, []))
    for _, stream, got in streams:  # a first result: the batch was accepted by its process
        got.append(next(stream))
    server.process.send_signal(signal.SIGTERM)
    for channel, stream, got in streams:
        got += list(stream)
        channel.close()
    results = [r for _, _, got in streams for r in got]
    assert sorted(r.id for r in results) == sorted(sent), "every accepted task answered exactly once"
    assert {pb.Status.Name(r.status) for r in results} == {"PASSED"}, [r.message for r in results]
    assert server.process.wait(timeout=60 + _EXIT_S) == 0, "".join(server.lines)
    assert len(server.wait_for("draining", 2)) == 2, "both processes drained"
    assert [e["code"] for e in server.entries if e.get("message") == "process exited"] == [0, 0]


def test_a_killed_process_is_started_again_and_the_node_keeps_scoring(node):
    server = node("--processes", "2", "--workers", "2")
    server.wait_for("serving", 2)
    victim = server.children()[0]
    os.kill(victim, signal.SIGKILL)
    died = server.wait_for("process died", 1)[0]
    assert died["pid"] == victim and died["code"] == -signal.SIGKILL
    restarted = server.wait_for("process started", 3)[2]
    assert restarted["index"] == died["index"] and restarted["pid"] != victim
    server.wait_for("serving", 3)
    results = _batches(server.target, [[whoami(f"c{c}")] for c in range(CONNECTIONS)])
    assert sorted(r.id for r in results) == sorted(f"c{c}" for c in range(CONNECTIONS))
    assert {pb.Status.Name(r.status) for r in results} == {"PASSED"}, [r.message for r in results]
    assert {r.stdout_excerpt.split()[1] for r in results} == {"61000", "61001"}, "the restarted one serves"
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=_EXIT_S) == 0, "".join(server.lines)


def test_flags_that_cannot_work_are_refused_before_any_process_starts(node):
    for options, why in (
        (("--processes", "3", "--workers", "2"), "--workers (2) must be at least --processes (3)"),
        (("--processes", "0"), "--processes must be >= 1"),
        (("--processes", "2", "--triton-device", "cuda", "--backend", "docker"), "--triton-device cuda"),
    ):
        server = node(*options)
        assert server.process.wait(timeout=60) != 0
        assert why in "".join(server.lines), "".join(server.lines)
        assert not server.children()


def test_worker_shares_split_the_node_evenly():
    assert worker_shares(5, 2) == [3, 2]
    assert worker_shares(4, 4) == [1, 1, 1, 1]
    with pytest.raises(ValueError):
        worker_shares(1, 2)


def _verdict(evidence: str) -> Verdict:
    finding = Finding("always_equal_object", Severity.CRITICAL, "an object equal to anything", evidence)
    return Verdict(Status.REJECTED, 0.0, findings=[finding])


def _code(entry: dict) -> str:
    """An event's code, or an attempt's (first) finding's."""
    return entry["code"] if entry["kind"] == "event" else entry["findings"][0]["code"]


def test_an_audit_record_written_in_short_writes_is_whole(tmp_path, monkeypatch):
    """write() may write less than asked: the record's tail must not be lost."""
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    real_write = os.write
    monkeypatch.setattr("sandbox.audit_store.os.write", lambda fd, data: real_write(fd, bytes(data[:7])))
    audit.record("t1", "python", "code", _verdict("x" * 300))
    audit.record_event("database_modified", "company")
    audit.close()
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [_code(e) for e in entries] == ["always_equal_object", "database_modified"]
    assert entries[0]["findings"][0]["evidence"] == "x" * 300


def test_an_audit_record_waits_for_another_writers_lock(tmp_path):
    """Processes sharing the file take turns: a record is not written while another holds the lock."""
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    other = os.open(path, os.O_WRONLY | os.O_APPEND)  # another open file: flock treats it as another writer
    fcntl.flock(other, fcntl.LOCK_EX)
    writer = threading.Thread(target=audit.record, args=("t1", "python", "code", _verdict("e")))
    writer.start()
    writer.join(0.5)
    assert writer.is_alive() and path.read_text() == "", "the record waited for the lock"
    os.write(other, b'{"from": "the other writer"}\n')
    fcntl.flock(other, fcntl.LOCK_UN)
    writer.join(30)
    os.close(other)
    audit.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line).get("from") or _code(json.loads(line)) for line in lines] == [
        "the other writer",
        "always_equal_object",
    ]
