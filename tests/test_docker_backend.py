"""The Docker backend against a real engine: hardening, life cycle, engine failures.

The suites that use the `client` fixture (hostile candidates included) already run on
both backends; this file covers what is specific to containers.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sandbox.backends.base import BackendUnavailable
from sandbox.backends.docker import LABEL, DockerBackend
from sandbox.backends.policy import SandboxPolicy
from sandbox.backends.select import make_backend
from sandbox.config import ServiceConfig
from sandbox.embedded import EmbeddedServer
from tests.conftest import make_backend as fixture_backend
from tests.helpers import call_task, healthy_task, limits, status_name
from trainer_plugin.client import ClientOptions, SandboxClient

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def docker_backend() -> DockerBackend:
    backend = fixture_backend("docker")
    assert isinstance(backend, DockerBackend)
    return backend


def _serve(backend: DockerBackend, **config: object) -> EmbeddedServer:
    settings = {"host": "127.0.0.1", "port": 0, "workers": 2, "audit_log": None, **config}
    return EmbeddedServer(ServiceConfig(**settings), backend).start()  # type: ignore[arg-type]


def _containers(backend: DockerBackend) -> list:
    return backend.docker.containers.list(all=True, filters={"label": f"{LABEL}={backend.instance}"})


@pytest.fixture
def docker_server(docker_backend: DockerBackend) -> Iterator[EmbeddedServer]:
    backend = DockerBackend(instance="test-lifecycle")
    embedded = _serve(backend)
    yield embedded
    embedded.stop()


def test_every_container_is_hardened(docker_server):
    backend, policy = docker_server.server.backend, docker_server.server.pool.policy
    containers = _containers(backend)
    assert len(containers) == 2
    for container in containers:
        container.reload()
        host = container.attrs["HostConfig"]
        assert host["NetworkMode"] == "none"
        assert host["ReadonlyRootfs"] is True
        assert host["IpcMode"] == "none"  # no /dev/shm to leave things in
        assert host["CapDrop"] == ["ALL"]
        assert sorted(host["CapAdd"]) == sorted(["SETUID", "SETGID", "KILL", "DAC_OVERRIDE", "FOWNER", "CHOWN"])
        assert "no-new-privileges" in host["SecurityOpt"]
        assert not any("seccomp=unconfined" in opt for opt in host["SecurityOpt"])  # the default profile applies
        assert host["Memory"] == policy.memory_bytes and host["MemorySwap"] == policy.memory_bytes
        assert host["NanoCpus"] == policy.cpus * 1e9 and host["PidsLimit"] == policy.pids_limit
        assert host["Privileged"] is False
        mounts = container.attrs["Mounts"]
        assert sorted((m["Destination"], m["RW"]) for m in mounts) == [("/opt/rft-runner", False), ("/opt/wire", False)]
        assert not any("docker.sock" in m["Source"] for m in mounts)
        assert "/tmp" in host["Tmpfs"] and "size=" in host["Tmpfs"]["/tmp"]
        assert container.attrs["Config"]["Env"] in (None, []) or all(
            not e.startswith("RFT_") for e in container.attrs["Config"]["Env"]
        )


def test_candidates_run_unprivileged_inside(docker_server):
    code = (
        "import os\ndef f():\n"
        "    status = open('/proc/self/status').read()\n"
        "    caps = [l.split()[1] for l in status.splitlines() if l.startswith('CapEff')][0]\n"
        "    nnp = [l.split()[1] for l in status.splitlines() if l.startswith('NoNewPrivs')][0]\n"
        "    return [os.getuid() != 0, caps == '0000000000000000', nnp == '1', os.path.exists('/dev/shm')]\n"
    )
    client = SandboxClient(ClientOptions(docker_server.target))
    result = client.score(call_task("uid", code, "f", [([], [True, True, True, False])]))
    assert status_name(result) == "PASSED", result
    assert result.backend == "docker"


def test_leftovers_are_removed_on_start_and_containers_on_shutdown(docker_backend):
    backend = DockerBackend(instance="test-leftovers")
    stray = backend.docker.containers.create(
        backend.image, entrypoint=["sleep", "600"], labels={LABEL: backend.instance}, network_mode="none"
    )
    embedded = _serve(backend, workers=1)
    try:
        ids = {c.id for c in _containers(backend)}
        assert stray.id not in ids and len(ids) == 1  # the crashed service's container is gone, ours runs
    finally:
        embedded.stop()
    assert _containers(backend) == []


def test_killed_containers_mid_batch_give_one_result_each_and_no_second_draw(docker_server):
    """A job whose container is killed under it gets a candidate verdict (the fresh container
    passes its control job); a job that had not reached its container runs on a fresh one."""
    client = SandboxClient(ClientOptions(docker_server.target, timeout=120))
    code = "import time\ndef f(x):\n    time.sleep(0.3)\n    return x\n"
    tasks = [call_task(f"kill-{i}", code, "f", [([i], i)]) for i in range(10)]
    before = client.stats()
    stream = client.score_batch(tasks)
    first = next(stream)
    for container in _containers(docker_server.server.backend):
        container.kill()
    results = [first, *stream]
    assert Counter(r.id for r in results) == Counter(t.id for t in tasks)
    lost = [r for r in results if status_name(r) != "PASSED"]
    assert len(lost) <= 2, [(r.id, r.message) for r in results]
    assert all(
        status_name(r) == "RUNTIME_ERROR" and "sandbox_worker_crashed" in {f.code for f in r.findings} for r in lost
    )
    after = client.stats()
    assert after.worker_failures >= 1
    assert after.job_runs - before.job_runs == len(tasks), "a job ran twice"


def test_auto_prefers_docker_and_falls_back_to_bwrap(docker_backend, monkeypatch):
    assert make_backend("auto").name == "docker"
    assert make_backend("docker").name == "docker"
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert make_backend("auto").name == "bwrap"
    with pytest.raises(BackendUnavailable, match="no Docker Engine"):
        make_backend("docker")


def test_missing_image_and_runtime_are_clear_errors(docker_backend):
    with pytest.raises(BackendUnavailable, match="image"):
        DockerBackend(image="rft-sandbox:no-such-tag").check()
    backend = DockerBackend(instance="test-runtime", runtime="no-such-runtime")
    backend.check()  # the image exists; the runtime is only known when a container starts
    with pytest.raises(Exception, match=r"sandbox did not start|runtime"):
        _serve(backend, workers=1)
    backend.remove_leftovers()


def test_runtime_is_passed_through(docker_backend):
    backend = DockerBackend(instance="test-runc", runtime="runc")
    embedded = _serve(backend, workers=1)
    try:
        (container,) = _containers(backend)
        assert container.attrs["HostConfig"]["Runtime"] == "runc"
        result = SandboxClient(ClientOptions(embedded.target)).score(healthy_task("runc"))
        assert status_name(result) == "PASSED"
    finally:
        embedded.stop()


def _health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status


def _docker_up() -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "docker-up")], check=True, capture_output=True, timeout=300)


def test_engine_down_means_sandbox_error_and_not_serving_then_recovery(docker_server):
    """Stop dockerd in the middle: no wrong answers, no hang, health says so; start it: service recovers."""
    client = SandboxClient(ClientOptions(docker_server.target, timeout=120))
    assert status_name(client.score(healthy_task("before"))) == "PASSED"
    subprocess.run(["bash", str(ROOT / "scripts" / "docker-down")], check=True, timeout=60)
    try:
        started = time.monotonic()
        tasks = [healthy_task(f"down-{i}") for i in range(3)]
        tasks.append(call_task("down-wrong", "def add(a, b):\n    return 0\n", "add", [([1, 2], 3)]))
        results = list(client.score_batch(tasks))
        assert time.monotonic() - started < 60
        assert Counter(r.id for r in results) == Counter(t.id for t in tasks)
        assert {status_name(r) for r in results} == {"SANDBOX_ERROR"}, [(r.id, r.message) for r in results]
        assert all(r.score == 0.0 for r in results)
        deadline = time.monotonic() + 15
        while _health(docker_server.target) != health_pb2.HealthCheckResponse.NOT_SERVING:
            assert time.monotonic() < deadline, "health never said NOT_SERVING with the engine down"
            time.sleep(0.5)
    finally:
        _docker_up()
    results = list(client.score_batch([healthy_task(f"after-{i}") for i in range(4)]))
    assert [status_name(r) for r in results] == ["PASSED"] * 4, [r.message for r in results]
    deadline = time.monotonic() + 15
    while _health(docker_server.target) != health_pb2.HealthCheckResponse.SERVING:
        assert time.monotonic() < deadline, "health never came back to SERVING"
        time.sleep(0.5)


TRITON_KERNEL = """
import os
os.environ["TRITON_INTERPRET"] = "1"
import torch
import triton
import triton.language as tl

@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    tl.store(out_ptr + offsets, tl.load(x_ptr + offsets, mask=mask) + tl.load(y_ptr + offsets, mask=mask), mask=mask)

def run(n):
    x = torch.arange(n, dtype=torch.float32)
    out = torch.empty_like(x)
    add_kernel[(triton.cdiv(n, 128),)](x, x, out, n, BLOCK=128)
    return out.sum().item()
"""


def test_triton_variant_runs_kernels_in_the_sandbox():
    """The `triton` build stage: torch + triton inside the same hardened container."""
    backend = DockerBackend(image="rft-sandbox:triton", instance="test-triton")
    try:
        backend.check()
    except BackendUnavailable:
        pytest.skip("rft-sandbox:triton is not built (docker build -f Dockerfile.sandbox --target triton ...)")
    embedded = _serve(backend, workers=1)
    try:
        task = call_task(
            "triton",
            TRITON_KERNEL,
            "run",
            [([1000], float(sum(range(1000)) * 2))],
            limits(test_ms=60_000, task_ms=120_000, memory=4096 << 20),
        )
        result = SandboxClient(ClientOptions(embedded.target, timeout=180)).score(task)
        assert status_name(result) == "PASSED", (result.message, result.stderr_excerpt)
    finally:
        embedded.stop()


def test_gpu_workers_get_one_gpu_each() -> None:
    """Configuration only (no GPU here): slot n asks the engine for GPU n % gpus, no other."""
    policy = SandboxPolicy()
    requests = [DockerBackend.device_requests(slot, policy.with_gpus(2)) for slot in range(3)]
    assert [[r.device_ids for r in slot] for slot in requests] == [[["0"]], [["1"]], [["0"]]]
    assert all(r.capabilities == [["gpu"]] for slot in requests for r in slot)
    assert DockerBackend.device_requests(0, policy) is None
