"""The v1 API's handlers: parse, validate, admit, score; a thin layer over the driver.

Requests arrive as raw bytes and are parsed here, so a malformed message (invalid
UTF-8 in a string, a truncated field) gets a clear INVALID_ARGUMENT instead of the
generic INTERNAL that a failing deserializer produces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from sandbox import __version__
from sandbox.api import SERVICE, pb
from sandbox.auth import Tokens
from sandbox.call_context import CallContext, from_metadata
from sandbox.config import ServiceConfig
from sandbox.drain import Gate
from sandbox.driver import Driver, Started
from sandbox.intake import Prepared, prepare_all
from sandbox.lanes import Lane
from sandbox.language import Language
from sandbox.pool import Overloaded, SandboxFailure, WorkerPool
from sandbox.steps import InvalidTask, LanguageUnavailable

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)


class Servicer:
    def __init__(
        self,
        config: ServiceConfig,
        tokens: Tokens,
        languages: Mapping[int, Language],
        lanes: Mapping[str, Lane],
        driver: Driver,
        pool: WorkerPool,
    ) -> None:
        self.config = config
        self.tokens = tokens
        self.languages = languages
        self.lanes = lanes
        self.driver = driver
        self.pool = pool  # the main lane's: what Stats reports
        self.gate = Gate()  # closed by a drain: Score and ScoreBatch refused, accepted calls counted

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
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

    def _caller(self, context: grpc.aio.ServicerContext) -> tuple[str, CallContext]:
        """Whose call this is, for fair scheduling: the named token's name, else the peer
        (address and port: one identity per connection, as a trainer process holds one);
        and the call's context for the audit trail."""
        metadata = context.invocation_metadata()
        name = self.tokens.check(metadata)[1] if self.tokens else None
        return name or context.peer(), from_metadata(metadata, name)

    async def _prepare(self, tasks: Any, context: grpc.aio.ServicerContext, single: bool, caller: str) -> list[Started]:
        """The request's tasks, validated, admitted by every lane they queue on, and with their
        prerequisites computed; or the call aborted with why."""
        try:
            prepared = prepare_all(tasks, self.config, self.languages)
            self._admit(prepared, caller)
            return await self.driver.start(prepared, caller)
        except InvalidTask as exc:
            text = str(exc).replace("tasks[0].", "task.", 1) if single else str(exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, text)
        except Overloaded as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"server busy: {exc}; retry later")
        except SandboxFailure as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"could not compute reference results: {exc}")
        except LanguageUnavailable as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        raise AssertionError("abort raises")

    def _admit(self, prepared: list[Prepared], caller: str) -> None:
        """Refuse a whole request up front rather than half of it later (raises Overloaded)."""
        counts = Counter(task.language.admission_lane for task in prepared)
        for lane, count in counts.items():
            self.lanes[lane].admit(caller, count)

    async def _refuse_if_draining(self, context: grpc.aio.ServicerContext) -> None:
        if self.gate.refusal is not None:  # UNAVAILABLE: the client sends it to another endpoint
            await context.abort(grpc.StatusCode.UNAVAILABLE, self.gate.refusal)

    async def _score(self, raw: bytes, context: grpc.aio.ServicerContext) -> pb.Result:
        await self._refuse_if_draining(context)
        with self.gate.call():
            return await self._score_one(raw, context)

    async def _score_one(self, raw: bytes, context: grpc.aio.ServicerContext) -> pb.Result:
        request = await self._parse(pb.ScoreRequest, raw, context)
        if not request.HasField("task"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "task: is required")
        caller, call = self._caller(context)
        (task,) = await self._prepare([request.task], context, single=True, caller=caller)
        result = await self.driver.score(task, caller, call, request.task)
        await task.task.language.after_batch()
        return result

    async def _score_batch(self, raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.Result]:
        await self._refuse_if_draining(context)
        with self.gate.call():
            async with contextlib.aclosing(self._stream_batch(raw, context)) as results:
                async for result in results:
                    yield result

    async def _stream_batch(self, raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.Result]:
        request = await self._parse(pb.ScoreBatchRequest, raw, context)
        caller, call = self._caller(context)
        started_tasks = await self._prepare(request.tasks, context, single=False, caller=caller)
        started = time.perf_counter()
        pending = [
            asyncio.ensure_future(self.driver.score(task, caller, call, source))
            for task, source in zip(started_tasks, request.tasks, strict=True)
        ]
        statuses: Counter[str] = Counter()
        try:
            for next_done in asyncio.as_completed(pending):
                result = await next_done
                statuses[pb.Status.Name(result.status)] += 1
                yield result
            for language in {id(t.task.language): t.task.language for t in started_tasks}.values():
                await language.after_batch()
        finally:
            for future in pending:
                future.cancel()
            log.info(
                "batch",
                extra={
                    "fields": {
                        "tasks": len(started_tasks),
                        "answered": sum(statuses.values()),
                        "statuses": dict(statuses),
                        "seconds": round(time.perf_counter() - started, 3),
                        "peer": context.peer(),
                        "caller": caller,
                    }
                },
            )

    async def _stats(self, raw: bytes, context: grpc.aio.ServicerContext) -> pb.StatsReply:
        await self._parse(pb.StatsRequest, raw, context)
        stats = self.pool.stats
        return pb.StatsReply(
            backend=self.driver.backend_name,
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
