"""Shared fixtures: a real service over loopback gRPC with real sandboxes.

Suites that use the `server`/`client` fixtures run once per isolation backend: bwrap
always, Docker when an engine answers and the sandbox image exists (scripts/test
starts one and sets RFT_REQUIRE_DOCKER=1, so in CI a missing engine is a failure,
not a skip).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from sandbox.backends.base import Backend, BackendUnavailable
from sandbox.backends.bwrap import BwrapBackend
from sandbox.backends.docker import DockerBackend
from sandbox.config import ServiceConfig
from sandbox.embedded import EmbeddedServer
from tests.helpers import healthy_task, status_name
from trainer_plugin.client import ClientOptions, SandboxClient

BACKENDS = {"bwrap": BwrapBackend, "docker": DockerBackend}


_instances = itertools.count()


def make_backend(name: str) -> Backend:
    # Each test server owns its containers: servers sharing an instance label would remove
    # each other's containers at start-up and shutdown (that is how leftovers are found).
    backend = (
        BACKENDS[name]() if name != "docker" else DockerBackend(instance=f"pytest-{os.getpid()}-{next(_instances)}")
    )
    try:
        backend.check()
    except BackendUnavailable as exc:
        if name == "docker" and not os.environ.get("RFT_REQUIRE_DOCKER"):
            pytest.skip(f"no Docker Engine here ({exc}); run scripts/docker-up")
        raise
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
    sandbox_client = SandboxClient(ClientOptions(server.target, timeout=120))
    yield sandbox_client
    sandbox_client.close()


@pytest.fixture
def assert_healthy(client: SandboxClient):  # returns a checker
    """Call after an attack: a normal task must still pass, on every worker."""

    def check() -> None:
        results = list(client.score_batch([healthy_task(f"healthy-{i}") for i in range(4)]))
        assert [status_name(r) for r in results] == ["PASSED"] * 4, results
        assert all(r.score == 1.0 for r in results)

    return check
