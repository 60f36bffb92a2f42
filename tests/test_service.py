"""The service around the scoring: health, reflection, stats, auth, admission, deadlines,
streaming, worker failures, infrastructure failures, the audit trail and the contract."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sandbox import __version__
from sandbox.api import SERVICE
from sandbox.backends.bwrap import BwrapBackend
from sandbox.config import ServiceConfig
from sandbox.embedded import EmbeddedServer
from tests.conftest import start_server
from tests.helpers import call_task, healthy_task, status_name, wait_for
from trainer_plugin.client import ClientOptions, SandboxClient

REPO = Path(__file__).resolve().parent.parent
SLEEPY = "import time\n\ndef f(x, seconds):\n    time.sleep(seconds)\n    return x + 1\n"


def sleepy_task(task_id: str, seconds: float, x: int = 1) -> object:
    return call_task(task_id, SLEEPY, "f", [([x, seconds], x + 1)])


def wait_idle(client: SandboxClient, timeout: float = 10.0) -> None:
    def idle() -> bool:
        stats = client.stats()
        return stats.queued == 0 and stats.busy_workers == 0

    assert wait_for(idle, timeout), client.stats()


@pytest.fixture(scope="module")
def channel(server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as chan:
        yield chan


# ---------------------------------------------------------------- health, reflection, stats


def test_health_check(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
    with pytest.raises(grpc.RpcError) as info:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def _reflect(channel: grpc.Channel, request: reflection_pb2.ServerReflectionRequest):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    return reply


def test_reflection_lists_and_describes_the_service(channel):
    reply = _reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in reply.list_services_response.service}
    assert SERVICE in names
    assert "grpc.health.v1.Health" in names
    reply = _reflect(channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE))
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(b) for b in reply.file_descriptor_response.file_descriptor_proto
    ]
    (sandbox_file,) = [f for f in files if f.name == "rft_sandbox/v1/sandbox.proto"]
    (service,) = sandbox_file.service
    assert {m.name for m in service.method} == {"Score", "ScoreBatch", "Stats"}


def test_stats(server, client):
    before = client.stats()
    assert before.backend == server.server.backend.name
    assert before.workers == server.server.config.workers == 2
    assert before.version == __version__
    results = list(client.score_batch([healthy_task(f"stats-{i}") for i in range(3)]))
    assert [status_name(r) for r in results] == ["PASSED"] * 3
    assert all(r.backend == server.server.backend.name for r in results)
    after = client.stats()
    assert after.jobs_completed == before.jobs_completed + 3
    assert after.queued == 0 and after.busy_workers == 0


# ---------------------------------------------------------------- bearer token


@pytest.fixture(scope="module")
def token_server() -> Iterator[EmbeddedServer]:
    embedded = start_server(token="s3cret", workers=1)
    yield embedded
    embedded.stop()


@pytest.mark.parametrize("token", [None, "wrong", "s3cret ", "S3CRET"])
def test_token_rejects_missing_or_wrong(token_server, token):
    client = SandboxClient(ClientOptions(token_server.target, token=token, timeout=30))
    try:
        calls = {
            "Score": lambda: client.score(healthy_task("t")),
            "ScoreBatch": lambda: list(client.score_batch([healthy_task("t")])),
            "Stats": client.stats,
        }
        for name, call in calls.items():
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
        metadata = [("authorization", f"Bearer {token}")] if token else []
        health = health_pb2_grpc.HealthStub(client.channel)
        with pytest.raises(grpc.RpcError) as info:
            health.Check(health_pb2.HealthCheckRequest(service=""), metadata=metadata, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        client.close()


def test_token_accepts_the_right_one(token_server):
    client = SandboxClient(ClientOptions(token_server.target, token="s3cret", timeout=60))
    try:
        result = client.score(healthy_task("authed"))
        assert status_name(result) == "PASSED" and result.score == 1.0
        results = list(client.score_batch([healthy_task("a1"), healthy_task("a2")]))
        assert sorted(r.id for r in results) == ["a1", "a2"]
        assert all(status_name(r) == "PASSED" for r in results)
        assert client.stats().jobs_completed >= 3
        health = health_pb2_grpc.HealthStub(client.channel)
        reply = health.Check(
            health_pb2.HealthCheckRequest(service=SERVICE), metadata=[("authorization", "Bearer s3cret")], timeout=10
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        client.close()


# ---------------------------------------------------------------- admission control


@pytest.fixture(scope="module")
def small_queue_server() -> Iterator[EmbeddedServer]:
    embedded = start_server(queue_limit=4, workers=1)
    yield embedded
    embedded.stop()


def test_admission_control(small_queue_server):
    client = SandboxClient(ClientOptions(small_queue_server.target, timeout=60))
    try:
        before = client.stats().jobs_completed
        received = []
        with pytest.raises(grpc.RpcError) as info:
            for result in client.score_batch([healthy_task(f"big-{i}") for i in range(10)]):
                received.append(result)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "retry" in info.value.details()
        assert received == []
        assert client.stats().jobs_completed == before, "a refused batch must not run in part"
        results = list(client.score_batch([healthy_task("small-1"), healthy_task("small-2")]))
        assert sorted(r.id for r in results) == ["small-1", "small-2"]
        assert all(status_name(r) == "PASSED" for r in results)
        results = list(client.score_batch([healthy_task(f"edge-{i}") for i in range(4)]))  # exactly the limit
        assert len(results) == 4 and all(status_name(r) == "PASSED" for r in results)
    finally:
        client.close()


# ---------------------------------------------------------------- deadlines and streaming


def test_deadline_is_honoured_and_abandoned_work_dropped(server, assert_healthy):
    client = SandboxClient(ClientOptions(server.target, timeout=0.8))
    try:
        wait_idle(client)
        before = client.stats().jobs_completed
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            list(client.score_batch([sleepy_task(f"slow-{i}", 1.0) for i in range(8)]))
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 3.0
    finally:
        client.close()
    monitor = SandboxClient(ClientOptions(server.target, timeout=30))
    try:
        # the two running jobs finish (~1 s); the six queued ones are dropped, not run
        wait_idle(monitor, timeout=3.0)
        assert monitor.stats().jobs_completed - before < 8, "abandoned jobs still ran"
    finally:
        monitor.close()
    assert_healthy()


def test_score_deadline(server, assert_healthy):
    client = SandboxClient(ClientOptions(server.target, timeout=0.5))
    try:
        with pytest.raises(grpc.RpcError) as info:
            client.score(sleepy_task("slow-single", 1.0))
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        client.close()
    assert_healthy()


def test_batch_streams_results_as_they_finish(client):
    wait_idle(client)
    arrivals: list[tuple[str, float]] = []
    started = time.monotonic()
    for result in client.score_batch([sleepy_task("slow", 1.5), sleepy_task("fast", 0.0)]):
        arrivals.append((result.id, time.monotonic() - started))
        assert status_name(result) == "PASSED", result.message
    assert [name for name, _ in arrivals] == ["fast", "slow"]
    assert arrivals[1][1] - arrivals[0][1] > 1.0, arrivals


def test_batch_echoes_ids_and_answers_each_task_once(client):
    ids = ["x", "a/b/c", "ünï-cødé", "42", "with space", "-", "id:" + "z" * 200]
    tasks = []
    for i, task_id in enumerate(ids):
        code = "def f(x):\n    return x + 1\n" if i % 2 == 0 else "def f(x):\n    return x\n"
        tasks.append(call_task(task_id, code, "f", [([i], i + 1)]))
    tasks.append(call_task("broken", "def f(x:\n", "f", [([1], 2)]))
    results = list(client.score_batch(tasks))
    assert Counter(r.id for r in results) == Counter([*ids, "broken"])
    by_id = {r.id: r for r in results}
    for i, task_id in enumerate(ids):
        assert status_name(by_id[task_id]) == ("PASSED" if i % 2 == 0 else "FAILED"), task_id
    assert status_name(by_id["broken"]) == "SYNTAX_ERROR"


# ---------------------------------------------------------------- worker failures


def _sandboxes(server: EmbeddedServer) -> dict[int, object]:
    """The live sandbox of each worker slot (a bwrap process or a Docker container)."""

    async def collect() -> dict[int, object]:
        return {
            slot: worker._sandbox for slot, worker in server.server.pool._workers.items() if worker._sandbox is not None
        }

    return server.call(collect())  # type: ignore[return-value]


def _sandbox_ids(server: EmbeddedServer) -> set[object]:
    return {s.process.pid if hasattr(s, "process") else s.container.id for s in _sandboxes(server).values()}


def _kill_sandbox(sandbox: object) -> None:
    """From outside, the way an operator or the OOM killer would: SIGKILL the bwrap process or the container."""
    if hasattr(sandbox, "process"):
        pid = sandbox.process.pid
        name, ppid = _proc_stat(pid)
        assert name == "bwrap" and ppid == os.getpid(), (pid, name, ppid)
        os.kill(pid, signal.SIGKILL)
    else:
        sandbox.container.kill()


def _proc_stat(pid: int) -> tuple[str, int]:
    """(command name, parent pid) from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    name = text[text.index("(") + 1 : text.rindex(")")]
    ppid = int(text[text.rindex(")") + 2 :].split()[1])
    return name, ppid


def test_killed_workers_mid_batch_cost_only_the_jobs_under_them(server, client, assert_healthy):
    """The fresh workers pass their control jobs, so the two jobs that were running get a
    candidate verdict (a retry would be a second draw, see tests/test_worker_failures.py);
    every other job passes, and none ran twice."""
    wait_idle(client)
    before = client.stats()
    tasks = [sleepy_task(f"k-{i}", 0.4, x=i) for i in range(12)]
    results: list = []
    errors: list = []

    def consume() -> None:
        try:
            results.extend(client.score_batch(tasks))
        except grpc.RpcError as exc:
            errors.append(exc)

    thread = threading.Thread(target=consume)
    thread.start()
    try:
        assert wait_for(lambda: client.stats().busy_workers == 2, timeout=10), "batch never started"
        time.sleep(0.15)  # well inside the running jobs
        killed = _sandbox_ids(server)
        sandboxes = _sandboxes(server)
        assert len(sandboxes) == 2
        for sandbox in sandboxes.values():
            _kill_sandbox(sandbox)
    finally:
        thread.join(timeout=60)
    assert not thread.is_alive() and not errors, errors
    assert Counter(r.id for r in results) == Counter(t.id for t in tasks)
    statuses = Counter(status_name(r) for r in results)
    assert statuses == {"PASSED": len(tasks) - 2, "RUNTIME_ERROR": 2}, [(r.id, r.message) for r in results]
    lost = [r for r in results if status_name(r) == "RUNTIME_ERROR"]
    assert all("sandbox_worker_crashed" in {f.code for f in r.findings} and r.score == 0.0 for r in lost)
    after = client.stats()
    assert after.worker_failures >= before.worker_failures + len(killed)
    assert after.job_runs - before.job_runs == len(tasks), "a job ran twice"
    assert _sandbox_ids(server).isdisjoint(killed), "killed workers were not replaced"
    assert_healthy()


def _broken_backend_error_or_results(backend: BwrapBackend) -> None:
    """A backend that cannot start any sandbox: the server refuses to start, promptly and clearly,
    or it starts and answers SANDBOX_ERROR promptly; it never hangs or blames the candidate."""
    config = ServiceConfig(host="127.0.0.1", port=0, workers=1, audit_log=None)
    started = time.monotonic()
    embedded = EmbeddedServer(config, backend)
    try:
        embedded.start()
    except Exception as exc:  # refusing to start is an acceptable answer
        assert time.monotonic() - started < 30
        assert "sandbox" in str(exc).lower(), exc
        embedded.stop()  # ends the server's event loop thread
        return
    try:
        client = SandboxClient(ClientOptions(embedded.target, timeout=60))
        result = client.score(healthy_task("infra"))
        assert status_name(result) == "SANDBOX_ERROR" and result.score == 0.0
        client.close()
    finally:
        embedded.stop()
    assert time.monotonic() - started < 30


def test_backend_that_never_starts_fails_clearly():
    _broken_backend_error_or_results(BwrapBackend(python="/nonexistent/python"))


@pytest.fixture
def breakable_server() -> Iterator[EmbeddedServer]:
    embedded = start_server(workers=2)
    yield embedded
    embedded.stop()


def test_infrastructure_failure_is_never_a_wrong_answer(breakable_server):
    """Sandboxes die and cannot be restarted: results are SANDBOX_ERROR, quickly, not FAILED."""
    client = SandboxClient(ClientOptions(breakable_server.target, timeout=60))
    try:
        assert status_name(client.score(healthy_task("before"))) == "PASSED"
        breakable_server.server.backend.python = "/nonexistent/python"  # every restart now fails
        for sandbox in _sandboxes(breakable_server).values():
            _kill_sandbox(sandbox)
        before = client.stats().worker_failures
        started = time.monotonic()
        tasks = [healthy_task(f"infra-{i}") for i in range(3)] + [
            call_task("infra-wrong", "def add(a, b):\n    return 0\n", "add", [([1, 2], 3)])
        ]
        results = list(client.score_batch(tasks))
        elapsed = time.monotonic() - started
        assert Counter(r.id for r in results) == Counter(t.id for t in tasks)
        for result in results:
            assert status_name(result) == "SANDBOX_ERROR", (result.id, status_name(result), result.message)
            assert result.score == 0.0
            assert result.message
        assert elapsed < 20, f"took {elapsed:.1f}s"
        assert client.stats().worker_failures > before
    finally:
        client.close()


# ---------------------------------------------------------------- audit log

CHEAT = "class Always:\n    def __eq__(self, other):\n        return True\n\ndef f(x):\n    return Always()\n"


def _audit_entries(path: str, task_id: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [e for e in map(json.loads, handle) if e.get("task_id") == task_id]


def test_audit_log_records_cheating(client, audit_path):
    task_id = f"cheat-{time.time_ns()}"
    result = client.score(call_task(task_id, CHEAT, "f", [([1], 2), ([2], 3)]))
    assert status_name(result) == "REJECTED" and result.score == 0.0
    assert "always_equal_object" in {f.code for f in result.findings}
    (entry,) = _audit_entries(audit_path, task_id)  # v2: one record per attempt, its findings nested
    assert entry["kind"] == "attempt" and entry["v"] == 2
    assert entry["language"] == "python" and entry["status"] == "REJECTED" and entry["max_severity"] == "CRITICAL"
    assert entry["code_sha256"] == hashlib.sha256(CHEAT.encode()).hexdigest()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"]), entry["time"]
    cheats = [f for f in entry["findings"] if f["code"] == "always_equal_object"]
    assert cheats and all(f["severity"] == "CRITICAL" for f in cheats), entry
    # the static finding quotes the offending source
    assert any("def __eq__(self, other)" in f["evidence"] for f in cheats), cheats
    clean_id = f"clean-{time.time_ns()}"
    assert status_name(client.score(healthy_task(clean_id))) == "PASSED"
    assert _audit_entries(audit_path, clean_id) == [], "clean candidates leave no audit entries"


# ---------------------------------------------------------------- the contract


def test_generated_proto_code_is_current(tmp_path):
    pytest.importorskip("grpc_tools")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            "proto/rft_sandbox/v1/sandbox.proto",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    committed = REPO / "sandbox" / "_proto"
    fresh = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert fresh == {Path("rft_sandbox/v1/sandbox_pb2.py"), Path("rft_sandbox/v1/sandbox_pb2.pyi")}
    for relative in fresh:
        assert (tmp_path / relative).read_bytes() == (committed / relative).read_bytes(), (
            f"{relative} is stale: regenerate sandbox/_proto from proto/"
        )
