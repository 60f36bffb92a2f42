"""The isolation boundary behind a small interface.

A backend knows how to start one sandboxed runner agent that speaks the frame protocol
on its stdin/stdout, as a `SandboxPolicy` (`sandbox.backends.policy`) describes it.
Everything else (warm pools, fork per job, recycling, retries) is shared and lives in
`sandbox.pool` and `sandbox.worker`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from sandbox.backends.policy import SandboxPolicy


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (missing binary, no permission, engine down...), or
    cannot give a sandbox what its policy asks for."""


class SandboxProcess(Protocol):
    """One started sandbox: a byte stream to its runner and a way to end it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def prepare(self, memory_bytes: int) -> None:
        """Before a job: bound the sandbox's whole process tree by the job's memory limit
        (cheap when it is the last job's). Raises OSError if that cannot be done."""

    async def kill(self) -> None: ...


class Backend(Protocol):
    """An isolation engine: its own state (a client, an image, a runtime, a cgroup tree)
    and a translation of `SandboxPolicy` into a running sandbox. That translation is all a
    new backend (Firecracker, gVisor-only...) implements: what a sandbox holds, which uids
    and capabilities, which limits, and how the runner starts are the policy's, never the
    backend's. Where an engine cannot honour a field (bubblewrap has no GPUs to pass), its
    `start` raises BackendUnavailable rather than start a weaker sandbox; where it has no
    way to enforce one at all (uids, when bubblewrap runs unprivileged), its module says so.
    """

    name: str

    def check(self) -> None:
        """Raise BackendUnavailable with a clear reason if this backend cannot work here."""

    async def start(self, slot: int, policy: SandboxPolicy) -> SandboxProcess:
        """Start one sandbox, as `policy` says, for worker `slot` (slot n runs its jobs as
        `policy.job_uid(n)`, and gets GPU n % `policy.gpus`)."""

    async def cleanup(self) -> None:
        """Remove what a previous (crashed) service or this one left behind."""
