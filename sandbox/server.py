"""The gRPC service (grpc.aio): its parts put together, started, watched and stopped.

What a call does is in `sandbox.servicer`; who may call in `sandbox.auth`; how a task is
scored in `sandbox.driver` and the languages (`sandbox.languages`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sandbox import __version__
from sandbox.api import SERVICE
from sandbox.audit import AuditLog
from sandbox.auth import TokenInterceptor, Tokens
from sandbox.backends.base import Backend
from sandbox.backends.policy import policy_for
from sandbox.config import ServiceConfig
from sandbox.drain import STOPPED
from sandbox.driver import Driver
from sandbox.host import Host
from sandbox.lanes import Lane, PoolLane
from sandbox.language import Language
from sandbox.languages import standard_languages
from sandbox.memo import MemoStore
from sandbox.metrics import Metrics
from sandbox.pool import WorkerPool
from sandbox.servicer import Servicer
from sandbox.steps import MAIN_LANE

log = logging.getLogger(__name__)
# Its own health status: NOT_SERVING while audit records are being dropped (a full disk). Not the
# main service's: scoring goes on, and clients must keep sending work.
AUDIT_HEALTH = "rft_sandbox.v1.Audit"
_ANSWER_SECONDS = 5.0  # after the grace: for the abandoned tasks' SANDBOX_ERROR results to be sent
_UNLIMITED_MS = 2**31 - 1  # gRPC's INT_MAX: no limit


class SandboxServer:
    """`languages`: what it scores (`sandbox.languages.standard_languages()` by default)."""

    def __init__(self, config: ServiceConfig, backend: Backend, languages: Sequence[Language] | None = None) -> None:
        languages = standard_languages() if languages is None else languages
        self.config = config
        self.backend = backend
        self.languages = {language.enum: language for language in languages}
        if len(self.languages) != len(languages):
            raise ValueError(f"two languages share an enum value: {[lang.name for lang in languages]}")
        # what every sandbox is: the service's settings, and what the languages mount in it
        self.policy = policy_for(config).with_mounts(*(mount for language in languages for mount in language.mounts()))
        self.pool = WorkerPool(
            backend,
            self.policy,
            config.workers,
            max_jobs=config.max_jobs_per_worker,
            queue_limit=config.queue_limit,
            caller_queue_limit=config.caller_queue_limit or None,
        )
        self.tokens = Tokens(config)
        self.audit = AuditLog.of(config)
        host = Host(config, backend, self.policy, self.audit)
        self.lanes: dict[str, Lane] = {MAIN_LANE: PoolLane(MAIN_LANE, lambda: self.pool)}
        for language in languages:
            language.attach(host)
            for name, lane in language.lanes().items():
                if name in self.lanes:
                    raise ValueError(f"language {language.name!r} names the lane {name!r}, which is taken")
                self.lanes[name] = lane
        # off unless a port is configured: then nothing is counted and nothing listens
        self.metrics = (
            Metrics(self.lanes, __version__, backend.name, self.audit) if config.metrics_port is not None else None
        )
        self.driver = Driver(self.lanes, MemoStore(), self.audit, backend.name, self.metrics)
        self.servicer = Servicer(config, self.tokens, self.languages, self.lanes, self.driver, self.pool)
        self.health = health.aio.HealthServicer()
        self.port = config.port
        self._server: grpc.aio.Server | None = None
        self._monitor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.backend.cleanup()  # leftovers of a crashed predecessor
        for lane in self.lanes.values():
            await lane.start()
        interceptors = [TokenInterceptor(self.tokens)] if self.tokens else []
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", self.config.max_request_bytes),
                ("grpc.max_send_message_length", self.config.max_request_bytes),
                *_age_options(self.config.max_connection_age),
                ("grpc.so_reuseport", 1),  # gRPC's default on Linux, relied on by `serve --processes`
            ],
        )
        server.add_generic_rpc_handlers([self.servicer.handler()])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection([SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
        address = f"{self.config.host}:{self.config.port}"
        if self.config.tls_cert and self.config.tls_key:
            with open(self.config.tls_key, "rb") as key, open(self.config.tls_cert, "rb") as cert:
                credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
            self.port = server.add_secure_port(address, credentials)
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.config.host}:{self.config.port}")
        if self.metrics is not None:  # before serving: a port it cannot have fails the start
            self.metrics.start(self.config.host, self.config.metrics_port or 0)
        await server.start()
        self._server = server
        await self._set_health(True)
        await self._set_audit_health(self.audit.healthy)
        self._monitor = asyncio.create_task(self._watch_health())
        log.info(
            "serving",
            extra={
                "fields": {
                    "address": f"{self.config.host}:{self.port}",
                    "backend": self.backend.name,
                    "workers": self.config.workers,
                    "metrics_port": self.metrics.port if self.metrics is not None else None,
                }
            },
        )

    async def drain(self, grace: float) -> None:
        """Stop as a member of a fleet: NOT_SERVING and new calls refused (UNAVAILABLE, so
        clients go to another endpoint) at once; the calls already accepted run to their
        end for up to `grace` seconds; a task still unfinished then is answered SANDBOX_ERROR
        (never dropped, never answered twice); then `stop`."""
        if self._monitor is not None:
            self._monitor.cancel()  # it would report SERVING again while workers live
        gate = self.servicer.gate
        gate.close()
        await self._set_health(False)
        log.info("draining", extra={"fields": {"calls": gate.calls, "grace_seconds": grace}})
        if not await gate.idle(grace):
            log.warning("drain grace ended", extra={"fields": {"calls": gate.calls}})
            for lane in self.lanes.values():
                lane.abandon(STOPPED)
            await gate.idle(_ANSWER_SECONDS)
        await self.stop()

    async def stop(self, grace: float = 2.0) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
        await self.health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)
        for lane in self.lanes.values():
            await lane.close()
        await self.backend.cleanup()
        self.audit.close()

    async def _set_health(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE):
            await self.health.set(name, status)

    async def _set_audit_health(self, healthy: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if healthy else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set(AUDIT_HEALTH, status)

    async def _watch_health(self, period: float = 1.0) -> None:
        """NOT_SERVING while no sandbox worker is alive (e.g. the container engine is down);
        the audit log's status, and its fsync timer."""
        serving, audit_healthy = True, self.audit.healthy
        while True:
            await asyncio.sleep(period)
            self.audit.sync()
            if self.audit.healthy != audit_healthy:
                audit_healthy = self.audit.healthy
                await self._set_audit_health(audit_healthy)
            alive = self.pool.live_workers > 0
            if alive != serving:
                serving = alive
                log.warning("health", extra={"fields": {"serving": alive, "live_workers": self.pool.live_workers}})
                await self._set_health(alive)

    async def wait(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()


def _age_options(seconds: float) -> list[tuple[str, int]]:
    """A connection older than `seconds` (gRPC adds +-10% jitter) gets a GOAWAY: its client
    reconnects, re-resolving a `dns:` name, so clients of a headless Service find new pods.
    The grace is unlimited: a ScoreBatch stream in flight runs to its end (bounded by its
    caller's deadline), since cutting it would make its accepted tasks run again elsewhere."""
    if seconds <= 0:
        return []
    age_ms = max(int(seconds * 1000), 1)
    return [("grpc.max_connection_age_ms", age_ms), ("grpc.max_connection_age_grace_ms", _UNLIMITED_MS)]
