"""The isolation boundary behind a small interface.

A backend knows how to start one sandboxed runner agent that speaks the frame protocol
on its stdin/stdout. Everything else (warm pools, fork per job, recycling, retries) is
shared and lives in `sandbox.pool` and `sandbox.worker`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

RUNNER_DIR = Path(__file__).resolve().parent.parent / "runner"
# The wire (`sandbox.wire`), mounted read-only next to the runner's own directory in every
# sandbox: the runner finds it as its sibling `wire`, in a sandbox as in the repository.
WIRE_DIR = RUNNER_DIR.parent / "wire"
WIRE_MOUNT = "/opt/wire"

# How every backend starts the runner's interpreter: isolated (no env vars, no user site,
# no script dir on sys.path), writing no bytecode, and reading none either: measured here,
# a runner loaded from .pyc files (say, compiled by `pip install`) makes every forked job
# ~1.5 ms slower than one compiled from source at start-up.
RUNNER_FLAGS = ("-I", "-B", "-X", "pycache_prefix=/nonexistent")


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (missing binary, no permission, engine down...)."""


class SandboxProcess(Protocol):
    """One started sandbox: a byte stream to its runner and a way to end it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def prepare(self, memory_bytes: int) -> None:
        """Before a job: bound the sandbox's whole process tree by the job's memory limit
        (cheap when it is the last job's). Raises OSError if that cannot be done."""

    async def kill(self) -> None: ...


class Backend(Protocol):
    name: str
    mounts: list[tuple[str, str]]  # extra read-only (host path, sandbox path) binds, e.g. databases

    def check(self) -> None:
        """Raise BackendUnavailable with a clear reason if this backend cannot work here."""

    async def start(self, slot: int) -> SandboxProcess:
        """Start one sandbox for worker `slot` (slots may map to distinct uids)."""

    async def cleanup(self) -> None:
        """Remove what a previous (crashed) service or this one left behind."""
