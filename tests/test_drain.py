"""Graceful drain: `python -m sandbox serve` stopped by SIGTERM mid-batch, over real gRPC and sandboxes.

The server is a child process this test starts; the signal goes to that PID only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sandbox.api import CLIENT_CHANNEL_ARGS, Stub, pb
from tests.helpers import call_task, limits

ROOT = Path(__file__).resolve().parent.parent
SLEEPY = "import time\n\ndef f(x, seconds):\n    time.sleep(seconds)\n    return x + 1\n"
_EXIT_SLACK_S = 30.0  # start-up of nothing, stop of the pools and sandboxes: a bound, not a measurement


def sleepy(task_id: str, seconds: float) -> pb.Task:
    return call_task(task_id, SLEEPY, "f", [([1, seconds], 2)], limits(test_ms=60_000, task_ms=60_000))


class Served:
    """A `serve` child process on an ephemeral loopback port, its address read from its log."""

    def __init__(self, tmp_path: Path, workers: int, drain_seconds: float) -> None:
        command = [sys.executable, "-m", "sandbox", "serve", "--backend", "bwrap", "--port", "0"]
        command += ["--workers", str(workers), "--drain-seconds", str(drain_seconds)]
        command += ["--audit-log", str(tmp_path / "audit.jsonl")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self.target = self._address()
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _address(self) -> str:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            entry = json.loads(line) if line.startswith("{") else {}
            if entry.get("message") == "serving":
                return str(entry["address"])
        raise AssertionError(f"the server exited before serving: {''.join(self.log)}")

    def _read_log(self) -> None:  # so a full pipe never blocks the server
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def terminate(self) -> None:
        os.kill(self.process.pid, signal.SIGTERM)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    started: list[Served] = []

    def start(workers: int, drain_seconds: float) -> Served:
        started.append(Served(tmp_path, workers, drain_seconds))
        return started[-1]

    yield start  # type: ignore[misc]
    for server in started:
        server.close()


def health_status(channel: grpc.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status


def test_sigterm_mid_batch_finishes_every_accepted_task_once_and_refuses_new_work(served):
    server = served(workers=2, drain_seconds=60)
    tasks = [sleepy(f"t{i}", 0.5) for i in range(12)]  # six rounds on two workers
    with grpc.insecure_channel(server.target, options=CLIENT_CHANNEL_ARGS) as channel:
        stub = Stub(channel)
        assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING
        stream = stub.ScoreBatch(pb.ScoreBatchRequest(tasks=tasks), timeout=120)
        results = [next(stream)]
        server.terminate()
        # the drain: NOT_SERVING at once, and a new call is refused so the client goes elsewhere
        status = health_status(channel)
        while status == health_pb2.HealthCheckResponse.SERVING:  # the signal is handled on the server's loop
            status = health_status(channel)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as refused:
            stub.Score(pb.ScoreRequest(task=sleepy("late", 0.0)), timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert refused.value.details().startswith("draining:"), refused.value.details()
        with pytest.raises(grpc.RpcError) as refused_batch:
            list(stub.ScoreBatch(pb.ScoreBatchRequest(tasks=[sleepy("late-batch", 0.0)]), timeout=30))
        assert refused_batch.value.code() == grpc.StatusCode.UNAVAILABLE
        results += list(stream)  # the accepted batch runs to its end
    ids = [r.id for r in results]
    assert sorted(ids) == sorted(t.id for t in tasks), "every accepted task answered exactly once"
    assert {pb.Status.Name(r.status) for r in results} == {"PASSED"}, [r.message for r in results]
    assert server.process.wait(timeout=60 + _EXIT_SLACK_S) == 0, "".join(server.log)
    assert any('"draining"' in line for line in server.log)


def test_a_task_longer_than_the_grace_is_answered_sandbox_error_not_dropped(served):
    server = served(workers=2, drain_seconds=1)
    tasks = [sleepy("quick", 0.0), sleepy("long", 30.0)]
    with grpc.insecure_channel(server.target, options=CLIENT_CHANNEL_ARGS) as channel:
        stream = Stub(channel).ScoreBatch(pb.ScoreBatchRequest(tasks=tasks), timeout=120)
        first = next(stream)
        assert first.id == "quick" and pb.Status.Name(first.status) == "PASSED", first
        server.terminate()
        rest = list(stream)
    assert [r.id for r in rest] == ["long"]
    assert pb.Status.Name(rest[0].status) == "SANDBOX_ERROR"
    assert "the service stopped before this task finished" in rest[0].message
    assert server.process.wait(timeout=1 + _EXIT_SLACK_S) == 0, "".join(server.log)


def test_sigterm_when_idle_exits_zero_at_once(served):
    server = served(workers=1, drain_seconds=60)
    with grpc.insecure_channel(server.target, options=CLIENT_CHANNEL_ARGS) as channel:
        result = Stub(channel).Score(pb.ScoreRequest(task=sleepy("one", 0.0)), timeout=60)
    assert pb.Status.Name(result.status) == "PASSED"
    server.terminate()
    assert server.process.wait(timeout=_EXIT_SLACK_S) == 0, "".join(server.log)
