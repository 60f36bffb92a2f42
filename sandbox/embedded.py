"""A service running on a background thread: for the CLI's embedded mode, tests, benchmarks.

The server gets its own event loop on a daemon thread and an ephemeral loopback port;
callers talk to it over real gRPC like any other client.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from types import TracebackType

from sandbox.backends.base import Backend
from sandbox.config import ServiceConfig
from sandbox.language import Language
from sandbox.server import SandboxServer

log = logging.getLogger(__name__)


class EmbeddedServer:
    def __init__(self, config: ServiceConfig, backend: Backend, languages: Sequence[Language] | None = None) -> None:
        self.server = SandboxServer(config, backend, languages)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rft-sandbox-server", daemon=True)

    @property
    def target(self) -> str:
        return f"{self.server.config.host}:{self.server.port}"

    def call(self, coroutine: object, timeout: float = 60.0) -> object:
        """Run a coroutine on the server's loop (e.g. to inspect or poke the pool in tests)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)  # type: ignore[arg-type]

    def start(self) -> EmbeddedServer:
        self._thread.start()
        self.call(self.server.start(), timeout=120)
        return self

    def stop(self) -> None:
        try:
            self.call(self.server.stop(), timeout=60)
        except TimeoutError:
            self._log_stuck_tasks()
            raise
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def _log_stuck_tasks(self) -> None:
        """What the server's loop is still awaiting when a stop did not finish (to find why)."""
        for task in asyncio.all_tasks(self._loop):
            stack = "".join(
                f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}\n" for frame in task.get_stack()
            )
            log.error("stop did not finish: %s awaits\n%s", task.get_name(), stack)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
