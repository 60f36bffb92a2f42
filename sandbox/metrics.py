"""Prometheus metrics of one service: what it scored, and its pools' live state.

The only module that imports `prometheus_client`. Each server has its own registry (never
the library's global one), so several servers in one process keep their figures apart.
Two kinds of figures:

* what the driver reports as it scores (`Metrics` is its `sandbox.driver.Observer`): tasks
  accepted, results by language and status, findings by code and severity, latency
  histograms. Counted once, where a verdict becomes a Result.
* what the pools already count (`PoolStats`, queue depths, busy workers): read at scrape
  time by `_LaneCollector`, so the pools' hot path does no work for metrics. Lanes whose
  pool is not built yet (lazy Triton lanes before their first task) are not listed. The
  audit log's records written and dropped, and whether it is writable, are read the same
  way (`_AuditCollector`).

The exporter is prometheus_client's threaded HTTP server, on a daemon thread of its own;
a scrape reads plain integers the event loop writes, so it takes no lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from rewards.model import Verdict
from sandbox.audit import AuditLog
from sandbox.lanes import Lane, PoolLane
from sandbox.pool import PoolStats

PREFIX = "rft_sandbox"
# seconds: from a cached verdict (sub-millisecond) to the longest task budget (600 s)
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

# PoolStats fields exported as counters, rft_sandbox_<field>_total: (field, help)
_POOL_COUNTERS = (
    ("jobs_completed", "Jobs the runner answered"),
    ("job_runs", "Jobs the runner started, reruns included"),
    ("jobs_lost", "Jobs whose worker died under them while a control job passed (the job's failure)"),
    ("job_resends", "Jobs sent to a fresh worker again: their worker died before they started"),
    ("job_reruns", "Jobs run once more after control jobs showed the infrastructure flaky"),
    ("control_jobs", "Control jobs run on a fresh worker after a worker died under a job"),
    ("control_failures", "Control jobs that failed"),
    ("workers_recycled", "Workers replaced after max jobs, leftover processes or a stall"),
    ("worker_failures", "Workers that died or could not be started"),
)
assert all(name in PoolStats.__dataclass_fields__ for name, _ in _POOL_COUNTERS)


class _LaneCollector:
    """Queue depth, workers and the pool counters of every lane with a pool, read live."""

    def __init__(self, lanes: Mapping[str, Lane]) -> None:
        self.lanes = lanes

    def collect(self) -> Iterable[Metric]:
        queued = GaugeMetricFamily(f"{PREFIX}_queue_depth", "Jobs waiting for a worker", labels=["lane"])
        workers = GaugeMetricFamily(f"{PREFIX}_workers", "Warm sandbox workers configured", labels=["lane"])
        busy = GaugeMetricFamily(f"{PREFIX}_workers_busy", "Workers running a job", labels=["lane"])
        counters = {
            field: CounterMetricFamily(f"{PREFIX}_{field}", text, labels=["lane"]) for field, text in _POOL_COUNTERS
        }
        for name, lane in list(self.lanes.items()):
            pool = lane.pool if isinstance(lane, PoolLane) else None
            if pool is None:
                continue
            queued.add_metric([name], pool.queued)
            workers.add_metric([name], pool.size)
            busy.add_metric([name], pool.stats.busy)
            for field, family in counters.items():
                family.add_metric([name], getattr(pool.stats, field))
        yield from (queued, workers, busy, *counters.values())


class _AuditCollector:
    """The audit log's counters (`sandbox.audit_store.StoreStats`), read live."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def collect(self) -> Iterable[Metric]:
        stats = self.audit.stats
        written = CounterMetricFamily(f"{PREFIX}_audit_records_written", "Audit log records written")
        written.add_metric([], stats.written)
        dropped = CounterMetricFamily(
            f"{PREFIX}_audit_records_dropped", "Audit log records lost to a failing write (a full disk)"
        )
        dropped.add_metric([], stats.dropped)
        rotations = CounterMetricFamily(f"{PREFIX}_audit_rotations", "Audit log files this process rotated")
        rotations.add_metric([], stats.rotations)
        healthy = GaugeMetricFamily(
            f"{PREFIX}_audit_log_healthy", "1 while the audit log is written, 0 while its records are dropped"
        )
        healthy.add_metric([], 1.0 if self.audit.healthy else 0.0)
        yield from (written, dropped, rotations, healthy)


class Metrics:
    """The registry of one server, and its exporter once `start`ed."""

    def __init__(self, lanes: Mapping[str, Lane], version: str, backend: str, audit: AuditLog | None = None) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        if audit is not None:
            registry.register(_AuditCollector(audit))
        Info(f"{PREFIX}_build", "The service's version and isolation backend", registry=registry).info(
            {"version": version, "backend": backend}
        )
        registry.register(_LaneCollector(lanes))
        ProcessCollector(registry=registry)  # CPU seconds, memory, open fds of the service process
        self.tasks = Counter(
            f"{PREFIX}_tasks", "Tasks accepted for scoring (validated and admitted)", ["language"], registry=registry
        )
        self.results = Counter(f"{PREFIX}_results", "Results answered", ["language", "status"], registry=registry)
        self.findings = Counter(
            f"{PREFIX}_findings", "Findings in answered results", ["language", "code", "severity"], registry=registry
        )

        def latency(name: str, text: str) -> Histogram:
            return Histogram(f"{PREFIX}_{name}_seconds", text, ["language"], buckets=_BUCKETS, registry=registry)

        self.queue_wait = latency("queue_wait", "Time a task's jobs waited for a worker (tasks that ran a job)")
        self.run = latency("run", "Time the runners took on a task's jobs (tasks that ran a job)")
        self.total = latency("total", "Time from a task's scoring start to its result (every result)")
        self._http: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # sandbox.driver.Observer
    def accepted(self, language: str, count: int) -> None:
        self.tasks.labels(language).inc(count)

    def scored(
        self, language: str, verdict: Verdict, ran: bool, queue_ms: float, run_ms: float, total_ms: float
    ) -> None:
        self.results.labels(language, verdict.status.name).inc()
        for finding in verdict.findings:
            self.findings.labels(language, finding.code, finding.severity.name).inc()
        if ran:
            self.queue_wait.labels(language).observe(queue_ms / 1000)
            self.run.labels(language).observe(run_ms / 1000)
        self.total.labels(language).observe(total_ms / 1000)

    def start(self, host: str, port: int) -> int:
        """Serve /metrics on `host:port` (0: an ephemeral port); the port it listens on."""
        self._http, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = int(self._http.server_port)
        return self.port

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
