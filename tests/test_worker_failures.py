"""A worker that fails under a job: whose failure was it, and a verdict is never rerolled.

The pool runs a control job on a fresh worker after a worker fails during a job. If the
control passes, what the job did cost it its worker: a verdict with score 0, and the job
never runs again. Only when the controls fail too is it SANDBOX_ERROR (the infrastructure
is broken); one failed control then a passing one means flaky infrastructure, and the job
runs once more. Real gRPC, real sandboxes. A candidate can bring its runner down where
jobs share the runner's uid (the service run as an ordinary user; the last tests); as
root it cannot, so the other failures are made from outside: SIGKILL or SIGSTOP of the
sandbox, a backend whose next starts fail.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from sandbox.audit import AuditLog
from sandbox.backends.base import Backend
from sandbox.backends.bwrap import BwrapBackend
from sandbox.backends.policy import SandboxPolicy, policy_for
from sandbox.config import ServiceConfig
from sandbox.embedded import EmbeddedServer
from sandbox.host import Host
from sandbox.pool import WorkerPool
from sandbox.triton.lane import CANDIDATES, COMPILER, triton_lanes
from sandbox.triton.plan import TritonDevice
from tests.conftest import make_backend
from tests.helpers import assert_task, call_task, finding_codes, healthy_task, limits, status_name
from trainer_plugin.client import ClientOptions, SandboxClient

SLEEPY = "import time\n\ndef f(x, seconds):\n    time.sleep(seconds)\n    return x\n"


def sleepy_task(task_id: str, seconds: float, lim=None):
    return call_task(task_id, SLEEPY, "f", [([1, seconds], 1)], lim)


class _Sabotage:
    """Mixed into a real backend: its next `failures` starts fail, as when the host or the
    container engine is in trouble."""

    failures = 0

    async def start(self, slot: int, policy: SandboxPolicy):  # type: ignore[no-untyped-def]
        if self.failures > 0:
            self.failures -= 1
            raise OSError("sandbox start sabotaged by the test")
        return await super().start(slot, policy)  # type: ignore[misc]


def _sabotageable(backend: Backend) -> Backend:
    backend.__class__ = type(f"Sabotageable{type(backend).__name__}", (_Sabotage, type(backend)), {})
    return backend


@pytest.fixture(scope="module")
def one_worker(backend_name: str) -> Iterator[EmbeddedServer]:
    config = ServiceConfig(host="127.0.0.1", port=0, workers=1, audit_log=None)
    embedded = EmbeddedServer(config, _sabotageable(make_backend(backend_name))).start()
    yield embedded
    embedded.stop()


def _sandbox(server: EmbeddedServer) -> object:
    async def current() -> object:
        return server.server.pool._workers[0]._sandbox

    sandbox = server.call(current())
    assert sandbox is not None
    return sandbox


def _ppid(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2 :].split()[1])


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = _ppid(int(entry))
            except (OSError, ValueError):
                pass
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _kill(sandbox: object) -> None:
    """From outside, as an operator or the OOM killer would: SIGKILL the bwrap process or the container."""
    if hasattr(sandbox, "process"):
        os.kill(sandbox.process.pid, signal.SIGKILL)
    else:
        sandbox.container.kill()


def _freeze(sandbox: object) -> None:
    """SIGSTOP everything inside the sandbox: the runner stops answering (a hung worker)."""
    if hasattr(sandbox, "process"):
        for pid in _descendants(sandbox.process.pid):
            os.kill(pid, signal.SIGSTOP)
    else:
        sandbox.container.pause()


class Call:
    """One Score call on a thread of its own."""

    def __init__(self, client: SandboxClient, task) -> None:
        self.result = None
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._run, args=(client, task))
        self.thread.start()

    def _run(self, client: SandboxClient, task) -> None:
        try:
            self.result = client.score(task)
        except grpc.RpcError as exc:
            self.error = exc

    def join(self) -> object:
        self.thread.join(90)
        assert not self.thread.is_alive() and self.error is None, self.error
        return self.result


def _wait_busy(client: SandboxClient) -> None:
    deadline = time.monotonic() + 20
    while client.stats().busy_workers == 0:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.02)
    time.sleep(0.3)  # well inside the job


def _delta(client: SandboxClient, before) -> dict[str, int]:
    after = client.stats()
    names = ("job_runs", "jobs_lost", "job_reruns", "control_jobs", "control_failures")
    return {name: getattr(after, name) - getattr(before, name) for name in names}


@pytest.fixture
def client(one_worker: EmbeddedServer) -> Iterator[SandboxClient]:
    sandbox_client = SandboxClient(ClientOptions(one_worker.target, timeout=90))
    yield sandbox_client
    one_worker.server.backend.failures = 0
    assert status_name(sandbox_client.score(healthy_task("after"))) == "PASSED"  # the service recovered
    sandbox_client.close()


def test_a_worker_lost_under_a_job_is_the_jobs_failure_and_never_rerun(one_worker, client):
    before = client.stats()
    call = Call(client, sleepy_task("lost", 2.0))  # would pass if it were run again
    _wait_busy(client)
    _kill(_sandbox(one_worker))
    result = call.join()
    assert status_name(result) == "RUNTIME_ERROR" and result.score == 0.0, (status_name(result), result.message)
    assert "sandbox_worker_crashed" in finding_codes(result)
    assert "control job" in result.message
    assert _delta(client, before) == {
        "job_runs": 1,
        "jobs_lost": 1,
        "job_reruns": 0,
        "control_jobs": 1,
        "control_failures": 0,
    }


def test_a_hung_worker_is_the_jobs_timeout(one_worker, client):
    before = client.stats()
    call = Call(client, sleepy_task("hung", 0.8, limits(test_ms=1000, task_ms=1000)))
    _wait_busy(client)
    _freeze(_sandbox(one_worker))  # the pool gives up on it at the job's timeout + grace (~8 s)
    result = call.join()
    assert status_name(result) == "TIMEOUT" and result.score == 0.0, (status_name(result), result.message)
    assert "sandbox_worker_hung" in finding_codes(result)
    assert _delta(client, before)["job_runs"] == 1
    assert _delta(client, before)["control_jobs"] == 1


def test_controls_that_fail_too_mean_sandbox_error(one_worker, client):
    before = client.stats()
    call = Call(client, sleepy_task("broken", 2.0))
    _wait_busy(client)
    one_worker.server.backend.failures = 6  # no fresh sandbox starts: both controls fail (3 starts each)
    _kill(_sandbox(one_worker))
    result = call.join()
    assert status_name(result) == "SANDBOX_ERROR" and result.score == 0.0, (status_name(result), result.message)
    assert "control job" in result.message
    assert _delta(client, before) == {
        "job_runs": 1,
        "jobs_lost": 0,
        "job_reruns": 0,
        "control_jobs": 2,
        "control_failures": 2,
    }


def test_flaky_infrastructure_runs_the_job_once_more(one_worker, client):
    before = client.stats()
    call = Call(client, sleepy_task("flaky", 1.0))
    _wait_busy(client)
    one_worker.server.backend.failures = 3  # the first control cannot start a sandbox, the second can
    _kill(_sandbox(one_worker))
    result = call.join()
    assert status_name(result) == "PASSED", (status_name(result), result.message)
    assert _delta(client, before) == {
        "job_runs": 2,
        "jobs_lost": 0,
        "job_reruns": 1,
        "control_jobs": 2,
        "control_failures": 1,
    }


def test_a_worker_lost_between_jobs_costs_no_job_anything(one_worker, client):
    """Killed while idle: the next job never reached a runner, so it simply goes to a fresh one."""
    assert status_name(client.score(healthy_task("warm"))) == "PASSED"
    before = client.stats()
    _kill(_sandbox(one_worker))
    deadline = time.monotonic() + 10
    while one_worker.server.pool.live_workers:  # its end seen, as the pool sees it before the next job
        assert time.monotonic() < deadline, "the killed sandbox never ended"
        time.sleep(0.01)
    results = [client.score(healthy_task(f"next-{i}")) for i in range(3)]
    assert [status_name(r) for r in results] == ["PASSED"] * 3, [r.message for r in results]
    delta = _delta(client, before)
    assert delta["job_runs"] == 3 and delta["control_jobs"] == 0 and delta["jobs_lost"] == 0, delta


def test_a_batch_loses_only_the_job_under_the_killed_worker(one_worker, client):
    before = client.stats()
    tasks = [sleepy_task(f"batch-{i}", 1.0) for i in range(4)]
    results: list = []
    consumer = threading.Thread(target=lambda: results.extend(client.score_batch(tasks)))
    consumer.start()
    _wait_busy(client)
    _kill(_sandbox(one_worker))
    consumer.join(90)
    assert Counter(r.id for r in results) == Counter(t.id for t in tasks)
    statuses = Counter(status_name(r) for r in results)
    assert statuses == {"PASSED": 3, "RUNTIME_ERROR": 1}, [(r.id, r.message) for r in results]
    assert _delta(client, before)["job_runs"] == 4  # each job ran exactly once


def test_the_control_job_passes_in_every_kind_of_runner():
    """Python/SQL runners, and the Triton interpreter and compiler runners (torch preloaded,
    a large address space under the control's memory limit) all answer the control job."""
    pytest.importorskip("torch")
    pytest.importorskip("triton")

    async def controls() -> list[bool]:
        backend, policy = BwrapBackend(), policy_for(ServiceConfig())
        pool = WorkerPool(backend, policy, 1)
        host = Host(ServiceConfig(triton_workers=1, audit_log=None), backend, policy, AuditLog(None))
        lanes = triton_lanes(host, TritonDevice("cpu"), 1)
        await pool.start()
        triton = [await lanes[name]._start() for name in (CANDIDATES, COMPILER)]
        try:
            pools = [pool, *triton]
            return [await p._control(0) is not None and p.stats.control_failures == 0 for p in pools]
        finally:
            await pool.close()
            for lane in lanes.values():
                await lane.close()

    assert asyncio.run(controls()) == [True, True, True]


# ---------------------------------------------------------------- a candidate that kills its runner

KILL_RUNNER = "import os, signal\n\ndef f(x):\n    os.kill(2, signal.SIGKILL)  # the runner is pid 2\n    return x\n"


class _SharedUid(BwrapBackend):
    """Jobs run as the runner's uid, as when the service runs as an ordinary user (bubblewrap
    then adds a user namespace and has no other uid to give jobs): a candidate can kill its
    runner. As root (the other tests) it cannot."""

    def runner_argv(self, slot: int, policy: SandboxPolicy) -> list[str]:
        argv = super().runner_argv(slot, policy)
        if "--job-uid" in argv:
            at = argv.index("--job-uid")
            del argv[at : at + 2]
        return argv


@pytest.fixture(scope="module")
def unprivileged_server() -> Iterator[str]:
    config = ServiceConfig(host="127.0.0.1", port=0, workers=1, audit_log=None)
    embedded = EmbeddedServer(config, _SharedUid()).start()
    yield embedded.target
    embedded.stop()


@pytest.mark.parametrize("mode", ["calls", "whole"])
def test_a_candidate_that_kills_its_runner_gets_zero_once_not_sandbox_error(unprivileged_server, mode):
    client = SandboxClient(ClientOptions(unprivileged_server, timeout=60))
    try:
        if mode == "calls":
            task = call_task("killer", KILL_RUNNER, "f", [([1], 1)])
        else:
            task = assert_task("killer", KILL_RUNNER, "f", "def check(candidate):\n    assert candidate(1) == 1\n")
        before = client.stats()
        result = client.score(task)
        assert status_name(result) == "RUNTIME_ERROR" and result.score == 0.0, (status_name(result), result.message)
        assert "sandbox_worker_crashed" in finding_codes(result)
        delta = _delta(client, before)
        assert delta["job_runs"] == 1 and delta["jobs_lost"] == 1 and delta["control_failures"] == 0, delta
        assert status_name(client.score(healthy_task("after"))) == "PASSED"
    finally:
        client.close()
