"""The plugin's one client of the v1 API: a shared core, an async face and a sync face.

Both faces make the same calls from the same `ClientOptions` (the httpx model):
  - `score`, `score_batch`, `stats`: the plain RPCs, to one endpoint; a refusal or a
    transport failure is raised as `grpc.RpcError` (for tools, tests, benchmarks);
  - `score_all`: what a reward function needs and a raw RPC does not give:
      - one result per task, in the caller's order, whatever happens: a task the service
        could not score comes back as a client-made SANDBOX_ERROR result (the trainer drops
        it), never as an exception that kills the training step and never as a 0;
      - identical tasks (same code, same tests) scored once;
      - a batch split into ScoreBatch calls, as many as may be in flight per process (a cap
        shared by every client on the event loop), spread over several endpoints round-robin
        (a `ray://` fleet's replicas among them), an endpoint that fails resting a while
        (fail-over), each call in flight on a connection of its own (so `serve --processes`
        spreads them); a `dns:` target is one endpoint whose calls gRPC itself spreads over
        every address of the name (`_balancing`);
      - retries with jittered backoff on transport failures only (unavailable, overloaded,
        reset): a verdict is never retried, and results already streamed back are kept;
      - an overall deadline for the whole batch.
`score_all` is written once, with asyncio (`AsyncSandboxClient`); the sync face runs it on a
private event loop thread. Channels are created lazily per process (and event loop) and
never pickled, so reward objects holding a client travel to trainer worker processes (Ray,
spawn) and reconnect there.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from sandbox.api import CLIENT_CHANNEL_ARGS, METADATA_CALLER, METADATA_RUN, METADATA_STEP, SERVICE, Stub, pb
from trainer_plugin import discovery

# Failures of the transport or of the service's capacity: the same request may succeed later.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)
_REST_SECONDS = 5.0  # how long an endpoint that failed is skipped when others are up
_MIN_CHUNK = 8  # score_all splits a batch into chunks of at least this many tasks
_semaphores: dict[tuple[int, int, int], asyncio.Semaphore] = {}  # (pid, loop, cap) -> shared cap
# A `dns:` target's channel: each call to the next address the name resolves to (round_robin),
# skipping an address whose health service says NOT_SERVING (draining, or no live worker).
_DNS_SERVICE_CONFIG = json.dumps(
    {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": SERVICE}}
)


def _balancing(target: str, channel_args: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The channel arguments a target adds: for `dns:///NAME:PORT` (or `dns://DNS_SERVER/NAME:PORT`)
    balancing over all the name's addresses, as a headless Kubernetes Service needs; gRPC
    re-resolves the name when a connection ends (the server's max connection age makes them
    end; docs/deployment-dns.md). A caller's own service config wins; other targets: none."""
    if not target.startswith("dns:") or any(name == "grpc.service_config" for name, _ in channel_args):
        return []
    return [("grpc.service_config", _DNS_SERVICE_CONFIG)]


@dataclass
class ClientOptions:
    # "HOST:PORT[,HOST:PORT...]"; "dns:///NAME:PORT": every address of NAME; "ray://NAME": a Ray fleet
    targets: tuple[str, ...] | str = ("127.0.0.1:50051",)
    token: str | None = None
    tls: bool = False
    root_certificates: bytes | None = None  # PEM; None = the system's roots (with tls)
    timeout: float = 600.0  # deadline of one call (a `score_all` is one call), seconds
    retries: int = 4  # score_all, per chunk, transport failures only
    backoff: float = 0.25  # first retry delay (seconds), doubled each time, with full jitter
    max_concurrency: int = 4  # score_all's ScoreBatch calls in flight per process
    batch_size: int = 256  # tasks per ScoreBatch call of score_all
    channel_args: tuple[tuple[str, Any], ...] = ()  # more gRPC channel arguments
    # what the service's audit trail records with every attempt (a call's step: `score_all(step=)`)
    run: str | None = None  # the training run's name
    caller: str | None = None  # who calls, e.g. "trl:rank0"

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            self.targets = tuple(t.strip() for t in self.targets.split(",") if t.strip())
        if not self.targets:
            raise ValueError("at least one target (HOST:PORT) is needed")
        if self.batch_size < 1 or self.max_concurrency < 1 or self.retries < 0 or self.timeout <= 0:
            raise ValueError("batch_size and max_concurrency must be >= 1, retries >= 0, timeout > 0")


def sandbox_error(task_id: str, message: str) -> pb.Result:
    """A result for a task the service could not score: the trainer must not learn from it."""
    return pb.Result(id=task_id, status=pb.SANDBOX_ERROR, score=0.0, message=message)


def _invalid_result(task_id: str, details: str) -> pb.Result:
    """INVALID_ARGUMENT about one task: an empty or oversized completion is the candidate's
    (score 0); anything else is a malformed task, which says nothing about the candidate."""
    field_name = details.split(":", 1)[0]
    if field_name.endswith(".code") or field_name == "code":
        return pb.Result(id=task_id, status=pb.SYNTAX_ERROR, score=0.0, message=details)
    return sandbox_error(task_id, f"invalid task: {details}")


def _task_key(task: pb.Task) -> bytes:
    anonymous = pb.Task()
    anonymous.CopyFrom(task)
    anonymous.id = ""
    return anonymous.SerializeToString(deterministic=True)


class _Core:
    """What both faces share: the options, the metadata and credentials, the endpoint pick."""

    def __init__(self, options: ClientOptions | None = None) -> None:
        self.options = options or ClientOptions()
        self._resting: dict[str, float] = {}
        self._next = 0

    def _metadata(self, step: int | None = None, caller: str | None = None) -> tuple[tuple[str, str], ...] | None:
        """The token, and the call's context for the audit trail (`caller` overrides the options')."""
        pairs = [("authorization", f"Bearer {self.options.token}")] if self.options.token else []
        context = (
            (METADATA_RUN, self.options.run),
            (METADATA_STEP, step),
            (METADATA_CALLER, caller or self.options.caller),
        )
        pairs += [(key, str(value)) for key, value in context if value is not None]
        return tuple(pairs) or None

    def _channel_args(self, target: str) -> list[tuple[str, Any]]:
        return [*CLIENT_CHANNEL_ARGS, *_balancing(target, self.options.channel_args), *self.options.channel_args]

    def _credentials(self) -> grpc.ChannelCredentials | None:
        if not self.options.tls:
            return None
        return grpc.ssl_channel_credentials(root_certificates=self.options.root_certificates)

    def _pick(self) -> str:
        """Round-robin over endpoints that have not failed lately (all of them if none has not)."""
        targets = discovery.expand(self.options.targets)  # ray://NAME: its fleet's live replicas
        now = time.monotonic()
        up = [t for t in targets if self._resting.get(t, 0.0) <= now]
        if len(up) < len(targets):  # one failed: a fleet may have moved it
            discovery.refresh(self.options.targets)
        up = up or targets
        self._next += 1
        return up[self._next % len(up)]


class AsyncSandboxClient(_Core):
    """The async face, and the one implementation of `score_all`."""

    def __init__(self, options: ClientOptions | None = None) -> None:
        super().__init__(options)
        self._channels: dict[tuple[int, int, str, int], grpc.aio.Channel] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["options"])  # type: ignore[misc]

    def _stub(self, target: str, lane: int = 0) -> Stub:
        """A channel per (target, lane), each its own TCP connection (a local subchannel pool):
        `score_all`'s chunks in flight use different lanes, so the kernel can give them to
        different processes of a `serve --processes N` endpoint (it balances connections)."""
        key = (os.getpid(), id(asyncio.get_running_loop()), target, lane % self.options.max_concurrency)
        channel = self._channels.get(key)
        if channel is None:
            credentials = self._credentials()
            options = [*self._channel_args(target), ("grpc.use_local_subchannel_pool", 1)]
            if credentials is not None:
                channel = grpc.aio.secure_channel(target, credentials, options=options)
            else:
                channel = grpc.aio.insecure_channel(target, options=options)
            self._channels[key] = channel
        return Stub(channel)

    async def score(self, task: pb.Task, *, step: int | None = None) -> pb.Result:
        stub = self._stub(self._pick())
        return await stub.Score(pb.ScoreRequest(task=task), timeout=self.options.timeout, metadata=self._metadata(step))

    async def score_batch(self, tasks: Iterable[pb.Task], *, step: int | None = None) -> AsyncIterator[pb.Result]:
        """Results in completion order; each carries its task's id."""
        stub = self._stub(self._pick())
        call = stub.ScoreBatch(
            pb.ScoreBatchRequest(tasks=list(tasks)), timeout=self.options.timeout, metadata=self._metadata(step)
        )
        try:
            async for result in call:
                yield result
        finally:
            call.cancel()  # a caller that stops reading abandons the batch's remaining jobs

    async def stats(self) -> pb.StatsReply:
        stub = self._stub(self._pick())
        return await stub.Stats(pb.StatsRequest(), timeout=self.options.timeout, metadata=self._metadata())

    def _semaphore(self) -> asyncio.Semaphore:
        key = (os.getpid(), id(asyncio.get_running_loop()), self.options.max_concurrency)
        if key not in _semaphores:
            _semaphores[key] = asyncio.Semaphore(self.options.max_concurrency)
        return _semaphores[key]

    async def score_all(
        self, tasks: Sequence[pb.Task], *, step: int | None = None, caller: str | None = None
    ) -> list[pb.Result]:
        """One result per task, in order, each with the task's id; never raises for the service.
        `step` (the trainer's global step) and `caller` go to the service's audit trail."""
        metadata = self._metadata(step, caller)
        deadline = time.monotonic() + self.options.timeout
        unique: dict[bytes, int] = {}
        slots: list[int] = []
        first: list[pb.Task] = []
        sent: set[str] = set()
        for task in tasks:
            key = _task_key(task)
            if key not in unique:
                unique[key] = len(first)
                copy = pb.Task()
                copy.CopyFrom(task)
                # sent under its own id (the service's audit trail names it so), unless another
                # distinct task of the batch has it already: then one made unique
                if not copy.id or copy.id in sent:
                    copy.id = f"{copy.id}#{len(first)}"
                sent.add(copy.id)
                first.append(copy)
            slots.append(unique[key])
        # as many chunks as may be in flight (of at least _MIN_CHUNK tasks, at most batch_size):
        # a step's batch is spread over the endpoints (a fleet's replicas) and connections
        size = min(self.options.batch_size, max(_MIN_CHUNK, -(-len(first) // self.options.max_concurrency)))
        chunks = [first[i : i + size] for i in range(0, len(first), size)]
        scored: dict[str, pb.Result] = {}
        await asyncio.gather(
            *(self._score_chunk(chunk, deadline, scored, metadata, n) for n, chunk in enumerate(chunks))
        )
        results = []
        for task, slot in zip(tasks, slots, strict=True):
            result = pb.Result()
            result.CopyFrom(scored.get(first[slot].id) or sandbox_error("", "no result (client error)"))
            result.id = task.id
            results.append(result)
        return results

    async def _score_chunk(
        self, chunk: list[pb.Task], deadline: float, scored: dict[str, pb.Result], metadata: Any, lane: int
    ) -> None:
        pending = {task.id: task for task in chunk}
        why = "not sent"
        for attempt in range(self.options.retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                why = "the overall deadline passed"
                break
            target = self._pick()
            try:
                async with self._semaphore():
                    await self._stream(target, lane, list(pending.values()), deadline, pending, scored, metadata)
                return
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
                why = f"{code.name} from {target}: {details[:300]}"
                if code == grpc.StatusCode.INVALID_ARGUMENT:  # a verdict on the request, not the transport
                    alone = list(pending.values())
                    if len(alone) == 1:
                        scored[alone[0].id] = _invalid_result(alone[0].id, details)
                        return
                    # one bad task refuses the whole batch: each alone, so it costs only itself
                    await asyncio.gather(
                        *(
                            self._score_chunk([task], deadline, scored, metadata, lane + n)
                            for n, task in enumerate(alone)
                        )
                    )
                    return
                if code not in RETRYABLE and code != grpc.StatusCode.DEADLINE_EXCEEDED:
                    break  # unauthenticated, failed precondition...: retrying cannot help
                if code == grpc.StatusCode.UNAVAILABLE:
                    self._resting[target] = time.monotonic() + _REST_SECONDS
            delay = random.uniform(0, self.options.backoff * 2**attempt)  # noqa: S311 - jitter, not crypto
            await asyncio.sleep(min(delay, max(deadline - time.monotonic(), 0)))
        for task_id in pending:
            scored[task_id] = sandbox_error(task_id, f"could not be scored: {why}")

    async def _stream(
        self,
        target: str,
        lane: int,
        tasks: list[pb.Task],
        deadline: float,
        pending: dict[str, pb.Task],
        scored: dict[str, pb.Result],
        metadata: Any,
    ) -> None:
        stream = self._stub(target, lane).ScoreBatch(
            pb.ScoreBatchRequest(tasks=tasks), timeout=deadline - time.monotonic(), metadata=metadata
        )
        async for result in stream:
            if result.id in pending:  # kept even if the stream breaks later
                del pending[result.id]
                scored[result.id] = result
        for task_id in list(pending):  # the stream ended cleanly but left some out
            scored[task_id] = sandbox_error(task_id, "the service sent no result for this task")
            del pending[task_id]

    async def close(self) -> None:
        mine = [key for key in self._channels if key[0] == os.getpid()]
        for key in mine:
            await self._channels.pop(key).close()


class SandboxClient(_Core):
    """The sync face: the plain RPCs on blocking channels, `score_all` by the async face on a
    private event loop thread (started lazily in each process)."""

    def __init__(self, options: ClientOptions | None = None) -> None:
        super().__init__(options)
        self._channels: dict[tuple[int, str], grpc.Channel] = {}
        self._async = AsyncSandboxClient(self.options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["options"])  # type: ignore[misc]

    def channel_to(self, target: str) -> grpc.Channel:
        """This process's channel to one endpoint (also for its other services, e.g. health)."""
        key = (os.getpid(), target)
        channel = self._channels.get(key)
        if channel is None:
            credentials = self._credentials()
            if credentials is not None:
                channel = grpc.secure_channel(target, credentials, options=self._channel_args(target))
            else:
                channel = grpc.insecure_channel(target, options=self._channel_args(target))
            self._channels[key] = channel
        return channel

    @property
    def channel(self) -> grpc.Channel:
        """The channel to the first endpoint."""
        return self.channel_to(discovery.expand(self.options.targets)[0])

    def _stub(self) -> Stub:
        return Stub(self.channel_to(self._pick()))

    def score(self, task: pb.Task, *, step: int | None = None) -> pb.Result:
        request = pb.ScoreRequest(task=task)
        return self._stub().Score(request, timeout=self.options.timeout, metadata=self._metadata(step))

    def score_batch(self, tasks: Iterable[pb.Task], *, step: int | None = None) -> Iterator[pb.Result]:
        """Results in completion order; each carries its task's id."""
        request = pb.ScoreBatchRequest(tasks=list(tasks))
        yield from self._stub().ScoreBatch(request, timeout=self.options.timeout, metadata=self._metadata(step))

    def stats(self) -> pb.StatsReply:
        return self._stub().Stats(pb.StatsRequest(), timeout=self.options.timeout, metadata=self._metadata())

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="rft-sandbox-client", daemon=True).start()
            self._loop, self._pid = loop, os.getpid()
        return self._loop

    def score_all(
        self, tasks: Sequence[pb.Task], *, step: int | None = None, caller: str | None = None
    ) -> list[pb.Result]:
        """One result per task, in order, each with the task's id; never raises for the service."""
        call = self._async.score_all(tasks, step=step, caller=caller)
        return asyncio.run_coroutine_threadsafe(call, self._running_loop()).result()

    def close(self) -> None:
        for key in [key for key in self._channels if key[0] == os.getpid()]:
            self._channels.pop(key).close()
        if self._loop is not None and self._pid == os.getpid():
            asyncio.run_coroutine_threadsafe(self._async.close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop = None
