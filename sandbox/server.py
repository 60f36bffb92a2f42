"""The gRPC service (grpc.aio): transport, auth, validation, admission; nothing else.

Requests arrive as raw bytes and are parsed here, so a malformed message (invalid
UTF-8 in a string, a truncated field) gets a clear INVALID_ARGUMENT instead of the
generic INTERNAL that a failing deserializer produces.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sandbox import __version__
from sandbox.api import SERVICE, pb
from sandbox.audit import AuditLog
from sandbox.backends.base import Backend
from sandbox.backends.policy import policy_for
from sandbox.config import ServiceConfig
from sandbox.pool import Overloaded, SandboxFailure, WorkerPool
from sandbox.python.plan import InvalidTask
from sandbox.scoring import ScoringService, ensure_gold, ensure_references
from sandbox.sql.plan import SqlContext
from sandbox.tasks import PreparedTask, prepare_all
from sandbox.triton.lane import TritonLane, TritonUnavailable
from sandbox.triton.plan import TritonDevice

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)


class Tokens:
    """The bearer tokens the service accepts, and whose each one is.

    A named token (`ServiceConfig.tokens`) authenticates its holder and names it: the
    caller whose line of the fair queue its jobs wait in. The single unnamed token
    (`ServiceConfig.token`) only authenticates; its holders are told apart by connection.
    """

    def __init__(self, config: ServiceConfig) -> None:
        self._entries = [(f"Bearer {secret}".encode(), name) for name, secret in config.tokens]
        if config.token:
            self._entries.append((f"Bearer {config.token}".encode(), None))

    def __bool__(self) -> bool:
        return bool(self._entries)

    def check(self, metadata: Any) -> tuple[bool, str | None]:
        """(authenticated, the token's name) for a call's invocation metadata."""
        for key, value in metadata or ():
            if key != "authorization":
                continue
            given = value.encode() if isinstance(value, str) else value
            matched, name = False, None
            for expected, owner in self._entries:  # every entry compared: the time says nothing about which
                if hmac.compare_digest(given, expected):
                    matched, name = True, name or owner  # a named token wins over the shared one
            if matched:
                return True, name
        return False, None


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Every call, health and reflection included, needs `authorization: Bearer <token>`."""

    def __init__(self, tokens: Tokens) -> None:
        self._tokens = tokens

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        if self._tokens.check(details.invocation_metadata)[0]:
            return await continuation(details)
        return self._deny


class SandboxServer:
    def __init__(self, config: ServiceConfig, backend: Backend, sql: SqlContext | None = None) -> None:
        self.config = config
        self.backend = backend
        self.sql = sql or SqlContext()
        policy = policy_for(config).with_mounts(*self.sql.registry.mounts())  # registered databases
        self.pool = WorkerPool(
            backend,
            policy,
            config.workers,
            max_jobs=config.max_jobs_per_worker,
            queue_limit=config.queue_limit,
            caller_queue_limit=config.caller_queue_limit or None,
        )
        self.tokens = Tokens(config)
        self.audit = AuditLog(config.audit_log)
        self.triton = TritonLane(backend, policy, TritonDevice(config.triton_device), config.triton_workers)
        self.scoring = ScoringService(self.pool, self.audit, backend.name, self.triton)
        self.health = health.aio.HealthServicer()
        self.port = config.port
        self._server: grpc.aio.Server | None = None
        self._monitor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.backend.cleanup()  # leftovers of a crashed predecessor
        await self.pool.start()
        interceptors = [TokenInterceptor(self.tokens)] if self.tokens else []
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", self.config.max_request_bytes),
                ("grpc.max_send_message_length", self.config.max_request_bytes),
            ],
        )
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    SERVICE,
                    {
                        "Score": grpc.unary_unary_rpc_method_handler(
                            self._score, response_serializer=pb.Result.SerializeToString
                        ),
                        "ScoreBatch": grpc.unary_stream_rpc_method_handler(
                            self._score_batch, response_serializer=pb.Result.SerializeToString
                        ),
                        "Stats": grpc.unary_unary_rpc_method_handler(
                            self._stats, response_serializer=pb.StatsReply.SerializeToString
                        ),
                    },
                )
            ]
        )
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
        await server.start()
        self._server = server
        await self._set_health(True)
        self._monitor = asyncio.create_task(self._watch_health())
        log.info(
            "serving",
            extra={
                "fields": {
                    "address": f"{self.config.host}:{self.port}",
                    "backend": self.backend.name,
                    "workers": self.config.workers,
                }
            },
        )

    async def stop(self, grace: float = 2.0) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
        await self.health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
        await self.pool.close()
        await self.triton.close()
        await self.scoring.postgres.close()
        await self.backend.cleanup()
        self.audit.close()

    async def _set_health(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE):
            await self.health.set(name, status)

    async def _watch_health(self, period: float = 1.0) -> None:
        """NOT_SERVING while no sandbox worker is alive (e.g. the container engine is down)."""
        serving = True
        while True:
            await asyncio.sleep(period)
            alive = self.pool.live_workers > 0
            if alive != serving:
                serving = alive
                log.warning("health", extra={"fields": {"serving": alive, "live_workers": self.pool.live_workers}})
                await self._set_health(alive)

    async def wait(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()

    async def _parse(self, cls: type[M], raw: bytes, context: grpc.aio.ServicerContext) -> M:
        message = cls()
        try:
            message.ParseFromString(raw)
        except (DecodeError, ValueError) as exc:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request is not a valid {cls.__name__} (strings must be UTF-8): {exc}",
            )
        return message

    def _caller(self, context: grpc.aio.ServicerContext) -> str:
        """Whose call this is, for fair scheduling: the named token's name, else the peer
        (address and port: one identity per connection, as a trainer process holds one)."""
        name = self.tokens.check(context.invocation_metadata())[1] if self.tokens else None
        return name or context.peer()

    async def _prepare(
        self, tasks: Any, context: grpc.aio.ServicerContext, single: bool, caller: str
    ) -> list[PreparedTask]:
        try:
            prepared = prepare_all(tasks, self.config, self.sql)
            self.pool.admit(caller, len(prepared))
            await ensure_gold(self.scoring, prepared, self.sql, caller)
            await ensure_references(self.scoring, prepared, caller)
        except InvalidTask as exc:
            text = str(exc).replace("tasks[0].", "task.", 1) if single else str(exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, text)
        except Overloaded as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"server busy: {exc}; retry later")
        except SandboxFailure as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"could not compute reference results: {exc}")
        except TritonUnavailable as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return prepared

    async def _score(self, raw: bytes, context: grpc.aio.ServicerContext) -> pb.Result:
        request = await self._parse(pb.ScoreRequest, raw, context)
        if not request.HasField("task"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "task: is required")
        caller = self._caller(context)
        (task,) = await self._prepare([request.task], context, single=True, caller=caller)
        result = await self.scoring.score(task, caller)
        if task.language == "sql":
            await self._verify_databases()
        return result

    async def _score_batch(self, raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.Result]:
        request = await self._parse(pb.ScoreBatchRequest, raw, context)
        caller = self._caller(context)
        prepared = await self._prepare(request.tasks, context, single=False, caller=caller)
        started = time.perf_counter()
        pending = [asyncio.ensure_future(self.scoring.score(task, caller)) for task in prepared]
        statuses: Counter[str] = Counter()
        try:
            for next_done in asyncio.as_completed(pending):
                result = await next_done
                statuses[pb.Status.Name(result.status)] += 1
                yield result
            if any(task.language == "sql" for task in prepared):
                await self._verify_databases()
        finally:
            for future in pending:
                future.cancel()
            log.info(
                "batch",
                extra={
                    "fields": {
                        "tasks": len(prepared),
                        "answered": sum(statuses.values()),
                        "statuses": dict(statuses),
                        "seconds": round(time.perf_counter() - started, 3),
                        "peer": context.peer(),
                        "caller": caller,
                    }
                },
            )

    async def _verify_databases(self) -> None:
        """Registered files must be exactly as registered: a change is a critical finding."""
        for database in self.sql.registry.databases.values():
            changed = await asyncio.to_thread(database.changed_files)
            if changed:
                log.error("database_modified", extra={"fields": {"database": database.name, "files": changed}})
                self.audit.record_event("database_modified", f"database {database.name!r} changed: {changed}")

    async def _stats(self, raw: bytes, context: grpc.aio.ServicerContext) -> pb.StatsReply:
        await self._parse(pb.StatsRequest, raw, context)
        stats = self.pool.stats
        return pb.StatsReply(
            backend=self.backend.name,
            workers=self.pool.size,
            busy_workers=stats.busy,
            queued=self.pool.queued,
            jobs_completed=stats.jobs_completed,
            workers_recycled=stats.workers_recycled,
            worker_failures=stats.worker_failures,
            version=__version__,
            job_runs=stats.job_runs,
            jobs_lost=stats.jobs_lost,
            job_reruns=stats.job_reruns,
            control_jobs=stats.control_jobs,
            control_failures=stats.control_failures,
            queued_by_caller=self.pool.queued_by_caller(),
        )
