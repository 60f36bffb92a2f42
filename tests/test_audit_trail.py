"""The audit trail's writing side: what the plugin sends, what a record holds, and a store
that rotates, fsyncs and survives a full disk without costing a single scoring result.

Real service over loopback (bwrap: the trail does not depend on the isolation backend), real
plugin calls (SandboxClient, the TRL reward function called as TRL calls it), honest and
cheating candidates at several steps.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rewards.model import Finding, Severity, Status, Verdict
from sandbox.api import METADATA_CALLER, METADATA_RUN, METADATA_STEP, SERVICE, Stub, pb
from sandbox.audit import AuditLog, log_files
from sandbox.audit_record import decode_blob
from sandbox.audit_store import AppendLog
from sandbox.embedded import EmbeddedServer
from sandbox.server import AUDIT_HEALTH
from tests.conftest import start_server
from tests.helpers import call_task, wait_for
from trainer_plugin.client import ClientOptions, SandboxClient
from trainer_plugin.tasks import TaskSpec
from trainer_plugin.trl import SandboxReward

HONEST = "def f(x):\n    return x + 1  # {tag}\n"
CHEAT = "class Always:\n    def __eq__(self, other):\n        return True\n\ndef f(x):\n    return Always()  # {tag}\n"
CASES = [([1], 2), ([5], 6)]
ROTATED = re.compile(r"^audit\.\d{8}T\d{6}Z(\.\d+)?\.jsonl$")


def read_records(path: str | Path) -> list[dict]:
    return [json.loads(line) for file in log_files(path) for line in file.read_text(encoding="utf-8").splitlines()]


def attempts(path: str | Path) -> list[dict]:
    return [r for r in read_records(path) if r["kind"] == "attempt"]


def batch(step: int, honest: int, cheats: int) -> list[pb.Task]:
    """Distinct candidates (the client scores identical tasks once): `honest` then `cheats`."""
    tasks = [call_task(f"h{step}-{i}", HONEST.format(tag=f"{step}-{i}"), "f", CASES) for i in range(honest)]
    tasks += [call_task(f"c{step}-{i}", CHEAT.format(tag=f"{step}-{i}"), "f", CASES) for i in range(cheats)]
    return tasks


@contextlib.contextmanager
def service(tmp_path: Path, **config: object) -> Iterator[tuple[EmbeddedServer, Path]]:
    path = Path(str(config.pop("audit_dir", tmp_path))) / "audit.jsonl"
    embedded = start_server("bwrap", audit_log=str(path), **config)
    try:
        yield embedded, path
    finally:
        embedded.stop()


def test_records_carry_the_run_step_caller_and_principal_sent(tmp_path):
    """Per-step cheat rates come out of the log as they were sent, each with its context."""
    sent = {1: (3, 1), 2: (2, 2), 3: (1, 3)}  # step: (honest, cheats)
    with service(tmp_path, audit_results=True, tokens=(("teamA", "secret-a"),)) as (embedded, path):
        options = ClientOptions(embedded.target, token="secret-a", timeout=120, run="grpo-7", caller="tester:rank0")
        client = SandboxClient(options)
        try:
            for step, (honest, cheats) in sent.items():
                results = client.score_all(batch(step, honest, cheats), step=step)
                assert [pb.Status.Name(r.status) for r in results] == ["PASSED"] * honest + ["REJECTED"] * cheats
        finally:
            client.close()
    records = attempts(path)
    assert len(records) == sum(h + c for h, c in sent.values()), "with --audit-results every attempt is written"
    assert {(r["run"], r["caller"], r["principal"]) for r in records} == {("grpo-7", "tester:rank0", "teamA")}
    cheats_by_step = Counter(r["step"] for r in records if r["status"] == "REJECTED")
    totals_by_step = Counter(r["step"] for r in records)
    assert {s: (totals_by_step[s] - cheats_by_step[s], cheats_by_step[s]) for s in sent} == sent
    for record in records:
        assert len(record["id"]) == 16 and record["v"] == 2 and record["language"] == "python"
        if record["status"] == "REJECTED":
            assert record["max_severity"] == "CRITICAL" and record["score"] == 0.0
            assert "always_equal_object" in {f["code"] for f in record["findings"]}
            code = decode_blob(record["code_z"])  # findings: the cheat's code is kept
            assert "class Always" in code and record["code_bytes"] == len(code.encode())
            task = json_format.Parse(decode_blob(record["task"]), pb.Task())
            assert task.id == record["task_id"] and task.code == "" and task.python.entry_point == "f"
            assert len(task.python.call_tests) == 2
        else:
            assert record["status"] == "PASSED" and record["score"] == 1.0 and record["findings"] == []
            assert record["components"]["tests_passed"] == 1.0 and record["max_severity"] is None
            assert record["code_z"] is None and record["task"] is None, "honest code is not kept by default"


def test_without_audit_results_only_attempts_with_findings_are_written(tmp_path):
    with service(tmp_path) as (embedded, path):
        client = SandboxClient(ClientOptions(embedded.target, timeout=120))
        try:
            client.score_all(batch(4, 3, 2), step=4)
        finally:
            client.close()
    records = attempts(path)
    assert len(records) == 2 and all(r["status"] == "REJECTED" and r["step"] == 4 for r in records)
    assert all(r["run"] is None and r["principal"] is None for r in records), "nothing sent, nothing made up"


def test_the_trl_reward_function_sends_trls_global_step(tmp_path, monkeypatch):
    """Called as TRL 1.x calls it: `trainer_state` (a transformers TrainerState) among the kwargs."""
    from transformers import TrainerState

    monkeypatch.setenv("RFT_SANDBOX_RUN", "trl-run")
    monkeypatch.setenv("RANK", "3")
    with service(tmp_path, audit_results=True) as (embedded, path):
        monkeypatch.setenv("RFT_SANDBOX_TARGETS", embedded.target)
        reward = SandboxReward(TaskSpec("python", columns={"assert_code": "tests"}), name="tests")
        rows = {"tests": [["assert f(1) == 2"]] * 2, "entry_point": ["f"] * 2, "task_id": ["good", "bad"]}
        for step in (10, 11):
            completions = [
                [{"role": "assistant", "content": f"```python\n{code.format(tag=step)}```"}] for code in (HONEST, CHEAT)
            ]
            values = reward(
                prompts=["p"] * 2,
                completions=completions,
                completion_ids=[[1]] * 2,
                trainer_state=TrainerState(global_step=step),
                log_metric=lambda *a: None,
                log_extra=lambda *a: None,
                **rows,
            )
            assert values == [1.0, 0.0]
    records = attempts(path)
    assert sorted((r["step"], r["status"]) for r in records) == [
        (10, "PASSED"),
        (10, "REJECTED"),
        (11, "PASSED"),
        (11, "REJECTED"),
    ]
    assert {(r["run"], r["caller"]) for r in records} == {("trl-run", "trl:rank3")}


def test_bad_context_metadata_is_ignored_and_the_call_scored(tmp_path):
    with service(tmp_path, audit_results=True) as (embedded, path):
        with grpc.insecure_channel(embedded.target) as channel:
            stub = Stub(channel)
            task = batch(0, 0, 1)[0]
            for metadata in (
                ((METADATA_STEP, "twelve"), (METADATA_RUN, "r" * 201), (METADATA_CALLER, "ok")),
                ((METADATA_STEP, str(2**70)), (METADATA_RUN, "fine")),
                ((METADATA_STEP, " 12 "), (METADATA_CALLER, "c" * 200)),
            ):
                result = stub.Score(pb.ScoreRequest(task=task), timeout=120, metadata=metadata)
                assert result.status == pb.REJECTED
    context = [(r["step"], r["run"], r["caller"]) for r in attempts(path)]
    assert context == [(None, None, "ok"), (None, "fine", None), (12, None, "c" * 200)]


def _verdict(findings: bool) -> Verdict:
    found = [Finding("always_equal_object", Severity.CRITICAL, "equal to anything", "__eq__")] if findings else []
    return Verdict(Status.REJECTED if findings else Status.PASSED, 0.0 if findings else 1.0, findings=found)


@pytest.mark.parametrize(
    ("policy", "kept"),
    [
        ("none", {"cheat": False, "honest": False}),
        ("findings", {"cheat": True}),
        ("all", {"cheat": True, "honest": True}),
    ],
)
def test_code_is_kept_per_the_code_policy(tmp_path, policy, kept):
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, results=policy != "findings", code=policy)
    source = batch(0, 1, 0)[0]
    audit.record("cheat", "python", "x = 1\n", _verdict(True), source=source)
    audit.record("honest", "python", "y = 2\n", _verdict(False), source=source)
    audit.close()
    records = {r["task_id"]: r for r in attempts(path)}
    assert {name: r["code_z"] is not None for name, r in records.items()} == kept
    assert all((r["task"] is not None) == (r["code_z"] is not None) for r in records.values())


def test_kept_code_is_capped_and_marked_truncated(tmp_path):
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, code="all", code_bytes=10)
    code = "é" * 20  # 40 bytes: the cap must not cut a character in half
    audit.record("long", "python", code, _verdict(True))
    audit.close()
    (record,) = attempts(path)
    assert record["code_truncated"] is True and record["code_bytes"] == 40
    assert decode_blob(record["code_z"]) == "é" * 5


def test_an_event_is_an_event_record(tmp_path):
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    audit.record_event("database_modified", "database 'company' changed")
    audit.close()
    (event,) = read_records(path)
    assert event["kind"] == "event" and event["code"] == "database_modified" and event["severity"] == "CRITICAL"


_WRITER = """
import sys
from sandbox.audit_store import AppendLog
log = AppendLog(sys.argv[1], rotate_bytes=int(sys.argv[2]))
for n in range(int(sys.argv[3])):
    assert log.append(('{"writer": %s, "n": %d, "pad": "%s"}\\n' % (sys.argv[4], n, "x" * 90)).encode())
log.close()
"""


def test_rotation_by_several_processes_loses_no_line(tmp_path):
    """Four processes append to one file rotated every ~2 KiB: every line is in exactly one file."""
    path = tmp_path / "audit.jsonl"
    root = Path(__file__).resolve().parent.parent
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), "2048", "300", str(w)], cwd=root) for w in range(4)
    ]
    assert [w.wait(120) for w in writers] == [0, 0, 0, 0]
    files = log_files(path)
    assert len(files) > 10, "the log should have rotated many times"
    assert all(ROTATED.match(f.name) for f in files[:-1]) and files[-1] == path
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert Counter((line["writer"], line["n"]) for line in lines) == Counter(
        (w, n) for w in range(4) for n in range(300)
    )
    assert all(f.stat().st_size <= 2048 for f in files)


def test_time_rotation_starts_a_new_file(tmp_path):
    path = tmp_path / "audit.jsonl"
    store = AppendLog(path, rotate_seconds=60)
    assert store.append(b'{"time": "2000-01-01T00:00:00.000Z"}\n')
    assert store.append(b'{"time": "now"}\n')  # the file's first line is old: rotated first
    store.close()
    assert [len(f.read_text().splitlines()) for f in log_files(path)] == [1, 1]


def test_service_rotation_keeps_every_attempt(tmp_path):
    with service(tmp_path, audit_results=True, audit_rotate_bytes=1500) as (embedded, path):
        client = SandboxClient(ClientOptions(embedded.target, timeout=120))
        try:
            for step in range(3):
                client.score_all(batch(step, 6, 4), step=step)
        finally:
            client.close()
    assert len(log_files(path)) > 2
    assert Counter(r["step"] for r in attempts(path)) == {0: 10, 1: 10, 2: 10}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs, to be filled up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mount not permitted here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as handle, contextlib.suppress(OSError):
        while handle.write(b"\0" * 512):
            pass
    return filler


def audit_health(embedded: EmbeddedServer, name: str) -> int:
    with grpc.insecure_channel(embedded.target) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def test_a_full_disk_never_costs_a_scoring_result(small_disk):
    config = {"audit_dir": small_disk, "audit_results": True, "audit_code": "all", "metrics_port": 0}
    with service(small_disk, **config) as (embedded, path):
        client = SandboxClient(ClientOptions(embedded.target, timeout=120))
        try:
            client.score_all(batch(0, 1, 1), step=0)
            filler = fill(small_disk)
            for step in (1, 2):  # every result arrives, right, while nothing can be logged
                results = client.score_all(batch(step, 4, 4), step=step)
                assert [pb.Status.Name(r.status) for r in results] == ["PASSED"] * 4 + ["REJECTED"] * 4
            audit = embedded.server.audit
            assert audit.stats.dropped >= 1 and not audit.healthy
            serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
            assert wait_for(lambda: audit_health(embedded, AUDIT_HEALTH) == not_serving, 10)
            assert audit_health(embedded, SERVICE) == serving, "clients must keep sending work"
            metrics = scrape(embedded.server.metrics.port)
            assert "rft_sandbox_audit_log_healthy 0.0" in metrics
            assert re.search(r"^rft_sandbox_audit_records_dropped_total [1-9]", metrics, re.M)

            filler.unlink()  # space returns: so does the log
            client.score_all(batch(3, 1, 1), step=3)
            assert audit.healthy
            assert wait_for(lambda: audit_health(embedded, AUDIT_HEALTH) == serving, 10)
            assert "rft_sandbox_audit_log_healthy 1.0" in scrape(embedded.server.metrics.port)
        finally:
            client.close()
        dropped, written = audit.stats.dropped, audit.stats.written
    records = attempts(path)  # every line whole: a write cut short by the full disk was taken back
    assert len(records) == written and written + dropped == 2 + 16 + 2
    assert Counter(r["step"] for r in records)[3] == 2 and Counter(r["step"] for r in records)[0] == 2


def test_a_write_cut_short_by_a_full_disk_leaves_no_half_line(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    store = AppendLog(path)
    assert store.append(b'{"n": 1}\n')
    real_write = os.write

    def full_after_seven(fd: int, data: bytes) -> int:
        if len(data) > 7:
            return real_write(fd, bytes(data[:7]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("sandbox.audit_store.os.write", full_after_seven)
    assert not store.append(b'{"n": 2, "pad": "xxxxxxxx"}\n') and not store.healthy
    monkeypatch.setattr("sandbox.audit_store.os.write", real_write)
    assert store.append(b'{"n": 3}\n') and store.healthy
    store.close()
    assert path.read_text() == '{"n": 1}\n{"n": 3}\n'
    assert (store.stats.written, store.stats.dropped) == (2, 1)


@pytest.mark.parametrize(("policy", "syncs"), [("always", 3), ("interval", 0), ("none", 0)])
def test_the_fsync_policy(tmp_path, monkeypatch, policy, syncs):
    """`always` syncs every line; `interval` leaves lines in quick succession to its timer (`sync`)."""
    calls = []
    monkeypatch.setattr("sandbox.audit_store.os.fsync", calls.append)
    store = AppendLog(tmp_path / "audit.jsonl", fsync=policy, fsync_interval=3600)
    for n in range(3):
        assert store.append(b'{"n": %d}\n' % n)
    assert len(calls) == syncs
    store.sync()  # the server's health loop, each second
    assert len(calls) == (syncs or (1 if policy == "interval" else 0))
    store.close()


def test_the_plugin_and_the_record_name_the_metadata_alike():
    """The plugin may import only `sandbox.api`, so the keys live there too: they must agree."""
    from sandbox import audit_record

    assert (METADATA_RUN, METADATA_STEP, METADATA_CALLER) == (
        audit_record.METADATA_RUN,
        audit_record.METADATA_STEP,
        audit_record.METADATA_CALLER,
    )
