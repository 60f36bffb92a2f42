"""The service's handle on one warm sandbox: send a job, get the harness's records back.

Anything that goes wrong at this level (the sandbox died, hung, or spoke garbage) is a
`WorkerFailure`. Whose fault it was is for the pool to find out (`sandbox.pool`): the
failure says how the worker failed and whether the runner had acknowledged the job,
that is, whether any of the candidate's code can have run.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from sandbox.backends.base import Backend, SandboxProcess
from sandbox.backends.policy import SandboxPolicy
from sandbox.wire import framing
from sandbox.wire.messages import FORGEABLE, unexpected_records

START_TIMEOUT = 30.0
_MAX_REPLY = 64 << 20
_REPLY_GRACE = 5.0
_ACK = b""  # the runner's empty frame: "I have read the job" (sandbox/runner/agent.py)


class WorkerFailure(Exception):
    """The sandbox worker failed: it died, hung, or spoke garbage.

    `delivered` is True once the runner acknowledged the job (the candidate may have run
    and may have caused the failure), False before (nothing of the job ran).
    """

    def __init__(self, message: str, kind: str = "died", delivered: bool = False) -> None:
        super().__init__(message)
        self.kind = kind  # "died", "hung" or "garbled"
        self.delivered = delivered


@dataclass
class _Progress:
    delivered: bool = False


@dataclass
class RunnerReply:
    meta: dict[str, Any]  # mode, ending, leftover_processes, elapsed_ms (runner's own view)
    records: list[Any]  # the harness's records, untrusted


def refusal(reply: RunnerReply) -> str | None:
    """Why a reply the runner sent is one of our own failures (SANDBOX_ERROR), or None.

    The runner refused the job (a mode it does not know: the service sent it), or the reply
    holds a record its mode does not produce. Only trusted code writes the records of those
    modes (`sandbox.wire.messages`), so such a record is a bug of ours, never the candidate's;
    the records of a mode the candidate can write into are checked by their scorer instead
    (`rewards.triton_report`), where a record it does not expect rejects the candidate."""
    if reply.meta.get("runner_error"):
        return f"the runner refused the job: {str(reply.meta['runner_error'])[:300]}"
    mode = reply.meta.get("mode")
    if type(mode) is str and mode in FORGEABLE:
        return None
    problem = unexpected_records(mode, reply.records)
    return f"the runner's reply is not its protocol: {problem}" if problem else None


async def _read_frame_bytes(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(framing.HEADER.size)
    (size,) = framing.HEADER.unpack(header)
    if size > _MAX_REPLY:
        raise WorkerFailure(f"runner sent a frame of {size} bytes", "garbled")
    return await reader.readexactly(size)


def _kind(exc: Exception) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "hung"
    return "garbled" if isinstance(exc, ValueError) else "died"


def _parse_records(body: bytes) -> list[Any]:
    buffer = framing.FrameBuffer(len(body) + 1)
    try:
        return buffer.feed(body)
    except framing.FrameError:
        return []  # a broken report is treated as no report: every test counts as not run


class Worker:
    def __init__(self, backend: Backend, slot: int, policy: SandboxPolicy) -> None:
        self.backend = backend
        self.slot = slot
        self.policy = policy
        self.jobs_done = 0
        self._sandbox: SandboxProcess | None = None

    @property
    def alive(self) -> bool:
        """False once the sandbox's output has ended (it died, was killed, or its engine went away)."""
        return self._sandbox is not None and not self._sandbox.reader.at_eof()

    async def start(self) -> None:
        self._sandbox = await self.backend.start(self.slot, self.policy)
        try:
            hello = json.loads(await asyncio.wait_for(_read_frame_bytes(self._sandbox.reader), START_TIMEOUT))
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, WorkerFailure) as exc:
            await self.stop()
            raise WorkerFailure(f"sandbox did not start: {exc!r}") from None
        except asyncio.CancelledError:  # the pool is closing: the half-started sandbox goes too
            await self.stop()
            raise
        if not hello.get("ready"):
            await self.stop()
            raise WorkerFailure(f"sandbox said {hello!r} instead of ready")

    async def run(self, job: bytes, secret: bytes, timeout: float, memory_bytes: int = 0) -> RunnerReply:
        """Run one job; `job` and `secret` are packed frames, `memory_bytes` the job's memory
        limit (0: leave the sandbox's as it is). Raises WorkerFailure."""
        sandbox = self._sandbox
        if sandbox is None:
            raise WorkerFailure("worker is not started")
        progress = _Progress()
        try:
            await sandbox.prepare(memory_bytes)
            sandbox.writer.write(job + secret)
            await sandbox.writer.drain()
            meta_bytes, body = await asyncio.wait_for(self._read_reply(sandbox, progress), timeout + _REPLY_GRACE)
            meta = json.loads(meta_bytes)
        except WorkerFailure as exc:
            await self.stop()
            raise WorkerFailure(str(exc), exc.kind, progress.delivered) from None
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError, ValueError) as exc:
            await self.stop()
            failure = WorkerFailure(f"sandbox worker failed during a job: {exc!r}", _kind(exc), progress.delivered)
            raise failure from None
        self.jobs_done += 1
        return RunnerReply(meta if isinstance(meta, dict) else {}, _parse_records(body))

    @staticmethod
    async def _read_reply(sandbox: SandboxProcess, progress: _Progress) -> tuple[bytes, bytes]:
        if await _read_frame_bytes(sandbox.reader) != _ACK:
            raise WorkerFailure("runner did not acknowledge the job", "garbled")
        progress.delivered = True
        meta = await _read_frame_bytes(sandbox.reader)
        body = await _read_frame_bytes(sandbox.reader)
        return meta, body

    async def stop(self) -> None:
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            await sandbox.kill()
