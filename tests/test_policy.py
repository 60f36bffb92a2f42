"""One `SandboxPolicy`, translated by every backend: what a sandbox is comes from the value.

A candidate reads its sandbox from inside (hostname, its uid, the runner's capabilities
and command line, the tmpfs, the read-only binds, its rlimits) on a real bwrap sandbox and
a real Docker container of the same service configuration; each must match the policy
the service built, so both backends agree because they translate one value, not because
their constants happen to be copies. A derived (Triton) policy differs from the service's
only where it says so; a backend refuses what it cannot give.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.backends.base import BackendUnavailable
from sandbox.backends.bwrap import BwrapBackend
from sandbox.backends.policy import PACKAGES, Mount, SandboxPolicy, policy_for
from sandbox.config import ServiceConfig
from sandbox.embedded import EmbeddedServer
from sandbox.languages import standard_languages
from sandbox.sql.plan import SqlContext
from sandbox.sql.registry import Registry
from sandbox.steps import LanguageUnavailable
from sandbox.triton.lane import CANDIDATES, triton_policy
from tests.conftest import make_backend
from tests.helpers import call_task, limits, status_name
from trainer_plugin.client import ClientOptions, SandboxClient

# The kernel's capability numbers (linux/capability.h) for the names a policy uses.
CAP_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "KILL": 5, "SETGID": 6, "SETUID": 7}

PROBE = r"""
import os, resource, socket

def _status(pid):
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return fields

def _runner():
    for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[:-1]
        except OSError:
            continue
        python = argv and os.path.basename(argv[0]).startswith(b"python")  # bwrap's own argv names it too
        if python and any(a.endswith(b"/agent.py") for a in argv) and _status(pid)["Uid"][0] == "0":
            return pid, [a.decode() for a in argv]
    return None, []

def probe(workdir, expected):
    # what differs from `expected`, as seen from here
    pid, argv = _runner()
    mounts = {}
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        mounts[fields[4]] = "ro" in fields[5].split(",")
    tmp = os.statvfs(workdir)
    rlimits = (resource.RLIMIT_NPROC, resource.RLIMIT_NOFILE, resource.RLIMIT_FSIZE)
    seen = {
        "hostname": socket.gethostname(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "job_caps": int(_status("self")["CapEff"][0], 16),
        "runner_caps": int(_status(pid)["CapEff"][0], 16) if pid else None,
        "runner_argv": argv[1:],
        "tmp_bytes": tmp.f_blocks * tmp.f_frsize,
        "binds": {target: mounts.get(target) for target in expected["binds"]},
        "rlimits": [resource.getrlimit(r)[0] for r in rlimits],
    }
    return {key: value for key, value in seen.items() if value != expected[key]}
"""


def _expected(policy: SandboxPolicy, slot: int = 0) -> dict[str, object]:
    """What a job of worker `slot` must see in a sandbox of `policy` (the service runs as root)."""
    runner = policy.runner
    return {
        "hostname": policy.hostname,
        "uid": policy.job_uid(slot),
        "gid": policy.job_uid(slot),
        "job_caps": 0,
        "runner_caps": sum(1 << CAP_BITS[cap] for cap in policy.capabilities),
        "runner_argv": [*runner.interpreter_args(), *runner.agent_args(policy.workdir, policy.job_uid(slot))],
        "tmp_bytes": policy.tmp_bytes,
        "binds": {mount.target: True for mount in policy.binds},
        "rlimits": [policy.rlimits.max_processes, policy.rlimits.max_open_files, policy.rlimits.max_file_bytes],
    }


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    path = tmp_path_factory.mktemp("policy-db") / "tiny.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    return Registry.from_specs([f"tiny={path}?variants=none"])


# A policy unlike the default in every field a sandbox can be read by from inside (the
# capabilities stay: the runner needs each of them).
UNLIKE = {"hostname": "elsewhere", "job_uid_base": 62000, "workdir": "/scratch", "tmp_bytes": 96 << 20}


class _Reconfigured:
    """Mixed into a real backend: every sandbox it starts has `override` applied to the
    pool's policy, so the translation alone decides what the sandbox is."""

    override: dict[str, object] = {}

    async def start(self, slot: int, policy: SandboxPolicy):  # type: ignore[no-untyped-def]
        return await super().start(slot, dataclasses.replace(policy, **self.override))  # type: ignore[misc]


@pytest.fixture(scope="module", params=["default", "unlike"])
def policy_server(request, backend_name: str, registry: Registry) -> Iterator[tuple[EmbeddedServer, SandboxPolicy]]:
    backend = make_backend(backend_name)
    override = UNLIKE if request.param == "unlike" else {}
    backend.__class__ = type(f"Reconfigured{type(backend).__name__}", (_Reconfigured, type(backend)), {})
    backend.override = override  # type: ignore[attr-defined]
    config = ServiceConfig(host="127.0.0.1", port=0, workers=1, audit_log=None)
    embedded = EmbeddedServer(config, backend, standard_languages(sql=SqlContext(registry=registry))).start()
    yield embedded, dataclasses.replace(embedded.server.pool.policy, **override)
    embedded.stop()


def test_the_service_policy_is_its_config_plus_its_databases(policy_server, registry):
    pytest.importorskip("torch")  # the Triton lane's policy mounts it
    server = policy_server[0].server
    assert server.pool.policy == policy_for(server.config).with_mounts(*registry.mounts())
    triton = server.lanes[CANDIDATES]
    assert triton.admit("probe", 1) is None and triton.pool is not None  # built (not started) on admission
    assert dataclasses.replace(triton.pool.policy, mounts=server.policy.mounts, runner=server.policy.runner) == (
        server.policy
    ), "the Triton lane's policy is the service's, derived"
    assert [m.target for m in server.pool.policy.mounts] == ["/db/tiny/tiny.sqlite"]


def test_a_sandbox_is_what_its_policy_says_on_every_backend(policy_server):
    """Read from inside: hostname, uids, capabilities, the runner's command, the tmpfs, the
    binds and the rlimits are the policy's, on bwrap and on Docker, default or not."""
    embedded, policy = policy_server
    task = call_task("policy", PROBE, "probe", [([policy.workdir, _expected(policy)], {})], limits(test_ms=5000))
    client = SandboxClient(ClientOptions(embedded.target, timeout=60))
    try:
        result = client.score(task)
    finally:
        client.close()
    assert status_name(result) == "PASSED", result


def test_a_derived_triton_policy_differs_only_in_its_mounts_runner_options_and_gpus():
    pytest.importorskip("torch")
    pytest.importorskip("triton")
    base = policy_for(ServiceConfig()).with_mounts(Mount("/srv/db.sqlite", "/db/x/db.sqlite"))
    for engine, mode, gpus in (("bwrap", "cpu", 0), ("docker", "compile", 0), ("docker", "cuda", 3)):
        derived = triton_policy(base, engine, mode, 3)
        assert dataclasses.replace(derived, mounts=base.mounts, runner=base.runner, gpus=base.gpus) == base
        assert derived.mounts[: len(base.mounts)] == base.mounts
        added = derived.mounts[len(base.mounts) :]
        assert added and all(Path(m.target).parent == Path(PACKAGES) for m in added), added
        assert dataclasses.replace(derived.runner, options=()) == base.runner
        assert derived.runner.options == ("--triton", mode) and derived.gpus == gpus
    assert base.mounts == (Mount("/srv/db.sqlite", "/db/x/db.sqlite"),), "deriving changed the base policy"
    with pytest.raises(LanguageUnavailable, match="docker"):
        triton_policy(base, "bwrap", "cuda", 1)


def test_bwrap_refuses_a_policy_with_gpus_rather_than_start_without_them():
    backend = BwrapBackend()
    backend.check()
    with pytest.raises(BackendUnavailable, match="GPU"):
        asyncio.run(backend.start(0, SandboxPolicy().with_gpus(1)))
    assert not (backend.cgroup_tree and backend.cgroup_tree.live), "the refused sandbox left a cgroup"
