"""Prometheus metrics (`--metrics-port`): scraped over real HTTP on loopback, they say exactly
what the service was sent and answered; off by default, nothing listens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sandbox import __version__
from sandbox.api import pb
from sandbox.config import ServiceConfig
from sandbox.embedded import EmbeddedServer
from tests.conftest import start_server
from tests.helpers import call_task, free_port, healthy_task, status_name, wait_for
from tests.test_worker_failures import Call, _kill, _sandbox, _wait_busy, sleepy_task
from trainer_plugin.client import ClientOptions, SandboxClient

ROOT = Path(__file__).resolve().parent.parent
CHEAT = "class Always:\n    def __eq__(self, other):\n        return True\n\ndef f(x):\n    return Always()\n"
PEEK = "import inspect\n\ndef f(x):\n    inspect.currentframe()\n    return x + 1\n"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample on the exporter's page: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def by(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The samples of one name, keyed by the values of `labels`."""
    return {
        tuple(dict(key)[label] for label in labels): value for (sample, key), value in samples.items() if sample == name
    }


def plus_one(task_id: str, code: str) -> pb.Task:
    return call_task(task_id, code, "f", [([1], 2), ([5], 6)])


def _listening_ports() -> set[int]:
    """TCP ports this process listens on (its own sockets, not the machine's)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.fixture(scope="module")
def metered() -> Iterator[EmbeddedServer]:
    embedded = start_server("bwrap", metrics_port=0, workers=2)
    yield embedded
    embedded.stop()


def test_scraped_values_match_what_was_sent(metered):
    server = metered.server
    assert server.metrics is not None and server.metrics.port > 0
    tasks = [healthy_task(f"ok-{i}") for i in range(3)]
    tasks += [plus_one("wrong", "def f(x):\n    return x\n"), plus_one("cheat", CHEAT), plus_one("peek", PEEK)]
    tasks.append(plus_one("broken", "def f(x:\n    return x\n"))  # decided at intake: nothing runs
    with closing(SandboxClient(ClientOptions(metered.target, timeout=120))) as client:
        results = list(client.score_batch(tasks))
    statuses = Counter(status_name(r) for r in results)
    assert statuses == {"PASSED": 4, "FAILED": 1, "REJECTED": 1, "SYNTAX_ERROR": 1}, statuses
    findings = Counter(
        ("python", f.code, pb.Severity.Name(f.severity)) for r in results for f in r.findings
    )  # fmt: skip
    assert findings[("python", "always_equal_object", "CRITICAL")] >= 1
    assert findings[("python", "frame_introspection", "WARNING")] == 1
    assert wait_for(lambda: server.pool.stats.busy == 0, 10)

    samples = scrape(server.metrics.port)
    assert by(samples, "rft_sandbox_tasks_total", "language") == {("python",): 7}
    assert by(samples, "rft_sandbox_results_total", "language", "status") == {
        ("python", status): count for status, count in statuses.items()
    }
    assert by(samples, "rft_sandbox_findings_total", "language", "code", "severity") == dict(findings)
    ran = len(results) - 1  # all but the syntax error
    assert by(samples, "rft_sandbox_total_seconds_count", "language") == {("python",): 7}
    assert by(samples, "rft_sandbox_run_seconds_count", "language") == {("python",): ran}
    assert by(samples, "rft_sandbox_queue_wait_seconds_count", "language") == {("python",): ran}
    assert by(samples, "rft_sandbox_total_seconds_bucket", "language", "le")[("python", "+Inf")] == 7

    stats = server.pool.stats
    assert stats.jobs_completed == ran
    assert by(samples, "rft_sandbox_workers", "lane") == {("main",): 2}
    assert by(samples, "rft_sandbox_workers_busy", "lane") == {("main",): 0}
    assert by(samples, "rft_sandbox_queue_depth", "lane") == {("main",): 0}
    assert by(samples, "rft_sandbox_jobs_completed_total", "lane") == {("main",): ran}
    assert by(samples, "rft_sandbox_job_runs_total", "lane") == {("main",): ran}
    for name in ("worker_failures", "jobs_lost", "job_resends", "job_reruns", "control_jobs", "control_failures"):
        assert by(samples, f"rft_sandbox_{name}_total", "lane") == {("main",): 0}, name
    assert by(samples, "rft_sandbox_workers_recycled_total", "lane") == {("main",): stats.workers_recycled}
    assert by(samples, "rft_sandbox_build_info", "version", "backend") == {(__version__, "bwrap"): 1}
    assert by(samples, "process_cpu_seconds_total")[()] > 0


def test_each_server_counts_its_own(metered):
    """Two servers in one process: separate registries, so neither sees the other's tasks."""
    before = by(scrape(metered.server.metrics.port), "rft_sandbox_tasks_total", "language")
    other = start_server("bwrap", metrics_port=0, workers=1)
    try:
        with closing(SandboxClient(ClientOptions(other.target, timeout=120))) as client:
            assert status_name(client.score(healthy_task("other"))) == "PASSED"
        samples = scrape(other.server.metrics.port)
        assert by(samples, "rft_sandbox_tasks_total", "language") == {("python",): 1}
        assert by(samples, "rft_sandbox_workers", "lane") == {("main",): 1}
    finally:
        other.stop()
    assert by(scrape(metered.server.metrics.port), "rft_sandbox_tasks_total", "language") == before


def test_a_dead_worker_is_counted():
    """A worker killed under a job (from outside): one worker death, one control job, one job
    lost, and the candidate's RUNTIME_ERROR with its finding."""
    embedded = start_server("bwrap", metrics_port=0, workers=1)
    try:
        server = embedded.server
        with closing(SandboxClient(ClientOptions(embedded.target, timeout=120))) as client:
            call = Call(client, sleepy_task("lost", 2.0))
            _wait_busy(client)
            _kill(_sandbox(embedded))
            result = call.join()
        assert status_name(result) == "RUNTIME_ERROR", result.message
        assert wait_for(lambda: server.pool.stats.busy == 0, 10)
        samples = scrape(server.metrics.port)
        expected = {"worker_failures": 1, "control_jobs": 1, "jobs_lost": 1, "job_reruns": 0, "job_resends": 0}
        for name, count in expected.items():
            assert by(samples, f"rft_sandbox_{name}_total", "lane") == {("main",): count}, name
        assert by(samples, "rft_sandbox_results_total", "language", "status") == {("python", "RUNTIME_ERROR"): 1}
        findings = by(samples, "rft_sandbox_findings_total", "language", "code", "severity")
        assert findings == {("python", "sandbox_worker_crashed", "WARNING"): 1}
    finally:
        embedded.stop()
    assert server.metrics.port not in _listening_ports()  # stop closed the exporter


def test_metrics_are_off_by_default():
    assert ServiceConfig().metrics_port is None
    before = _listening_ports()
    embedded = start_server("bwrap", workers=1)
    try:
        assert embedded.server.metrics is None and embedded.server.driver.observer is None
        assert _listening_ports() - before == {embedded.server.port}  # gRPC only
    finally:
        embedded.stop()


def test_serve_flag_exports_metrics(tmp_path):
    """`serve --metrics-port N`: the flag reaches the exporter of a real service process."""
    grpc_port, metrics_port = free_port(), free_port()
    command = [sys.executable, "-m", "sandbox", "serve", "--backend", "bwrap", "--workers", "1"]
    command += ["--port", str(grpc_port), "--metrics-port", str(metrics_port), "--audit-log", str(tmp_path / "a")]
    service = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:

        def up() -> bool:
            try:
                return bool(scrape(metrics_port))
            except OSError:
                return False

        assert wait_for(up, 60), service.stderr.read() if service.poll() is not None else "no metrics"
        samples = scrape(metrics_port)
        assert by(samples, "rft_sandbox_workers", "lane") == {("main",): 1}
        assert by(samples, "rft_sandbox_build_info", "version")[(__version__,)] == 1
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(30) == 0


def test_serve_refuses_a_negative_metrics_port(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "serve", "--metrics-port", "-1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and "--metrics-port must be >= 0" in done.stderr
