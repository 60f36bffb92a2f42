"""Shared fixtures: a real service over loopback gRPC with real sandboxes.

`backend_name` is the seam for running the same suites against several isolation
backends (the Docker backend adds itself to BACKENDS).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.backends.bwrap import BwrapBackend
from sandbox.config import ServiceConfig
from sandbox.embedded import EmbeddedServer
from tests.helpers import healthy_task, status_name
from trainer_plugin.client import SandboxClient

BACKENDS = {"bwrap": BwrapBackend}


def make_backend(name: str) -> BwrapBackend:
    backend = BACKENDS[name]()
    backend.check()
    return backend


def start_server(backend_name: str = "bwrap", **config: object) -> EmbeddedServer:
    settings = {"host": "127.0.0.1", "port": 0, "workers": 2, "audit_log": None}
    settings.update(config)
    return EmbeddedServer(ServiceConfig(**settings), make_backend(backend_name)).start()  # type: ignore[arg-type]


@pytest.fixture(scope="session", params=sorted(BACKENDS))
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def audit_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("audit") / "audit.jsonl")


@pytest.fixture(scope="session")
def server(backend_name: str, audit_path: str) -> Iterator[EmbeddedServer]:
    embedded = start_server(backend_name, audit_log=audit_path)
    yield embedded
    embedded.stop()


@pytest.fixture(scope="session")
def client(server: EmbeddedServer) -> Iterator[SandboxClient]:
    sandbox_client = SandboxClient(server.target, timeout=120)
    yield sandbox_client
    sandbox_client.close()


@pytest.fixture
def assert_healthy(client: SandboxClient):
    """Call after an attack: a normal task must still pass, on every worker."""

    def check() -> None:
        results = list(client.score_batch([healthy_task(f"healthy-{i}") for i in range(4)]))
        assert [status_name(r) for r in results] == ["PASSED"] * 4, results
        assert all(r.score == 1.0 for r in results)

    return check
