"""The trainer plugin's client (`score_all`) against real services over loopback gRPC.

Order and ids kept, duplicates scored once, bad tasks costing only themselves, dead
endpoints failed over, an outage turned into SANDBOX_ERROR results (never an exception
and never a 0), a restart ridden out by retries, and a client that survives pickling into
a fresh process.
"""

from __future__ import annotations

import json
import multiprocessing
import pickle
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.api import pb
from sandbox.embedded import EmbeddedServer
from tests.conftest import start_server
from tests.helpers import call_task, free_port
from trainer_plugin.client import ClientOptions, SandboxClient
from trainer_plugin.tasks import TaskBuildError, TaskSpec, completion_text

GOOD = "def add(a, b):\n    return a + b\n"
BAD = "def add(a, b):\n    return a - b\n"


def add_task(task_id: str, code: str) -> pb.Task:
    return call_task(task_id, code, "add", [([1, 2], 3), ([2, 2], 4)])


@pytest.fixture(scope="module")
def service() -> Iterator[EmbeddedServer]:
    server = start_server("bwrap", token="s3cret")
    yield server
    server.stop()


def scorer_for(*targets: str, **options: object) -> SandboxClient:
    return SandboxClient(ClientOptions(targets=targets, token="s3cret", **options))  # type: ignore[arg-type]


def test_results_in_order_with_ids_and_duplicates_scored_once(service: EmbeddedServer) -> None:
    scorer = scorer_for(service.target, batch_size=3)
    tasks = [add_task(f"t{n}", GOOD if n % 2 else BAD) for n in range(10)]
    before = service.server.pool.stats.jobs_completed
    results = scorer.score_all(tasks)
    assert [r.id for r in results] == [t.id for t in tasks]
    assert [r.score for r in results] == [0.0 if n % 2 == 0 else 1.0 for n in range(10)]
    assert service.server.pool.stats.jobs_completed - before == 2  # two distinct tasks
    scorer.close()


def test_tasks_are_sent_under_their_own_ids_made_unique_only_when_they_clash(tmp_path: Path) -> None:
    # the service's audit trail names an attempt by the id it was sent with
    log = tmp_path / "audit.jsonl"
    server = start_server("bwrap", audit_log=str(log), audit_results=True)
    scorer = SandboxClient(ClientOptions(server.target, timeout=60))
    try:
        tasks = [add_task("alpha", GOOD), add_task("same", GOOD + "# 1\n"), add_task("same", BAD)]
        results = scorer.score_all(tasks)
    finally:
        scorer.close()
        server.stop()
    assert [(r.id, r.score) for r in results] == [("alpha", 1.0), ("same", 1.0), ("same", 0.0)]
    sent = sorted(json.loads(line)["task_id"] for line in log.read_text().splitlines())
    assert sent == ["alpha", "same", "same#2"]


def test_a_bad_task_costs_only_itself(service: EmbeddedServer) -> None:
    scorer = scorer_for(service.target)
    empty = add_task("empty", "x")
    empty.code = "   "
    broken = add_task("broken", GOOD)
    broken.python.entry_point = "not an identifier"
    results = {r.id: r for r in scorer.score_all([add_task("ok", GOOD), empty, broken])}
    assert results["ok"].status == pb.PASSED
    assert results["empty"].status == pb.SYNTAX_ERROR and results["empty"].score == 0  # the candidate's
    assert results["broken"].status == pb.SANDBOX_ERROR  # the task's: says nothing of the candidate
    assert "entry_point" in results["broken"].message


def test_dead_endpoint_fails_over(service: EmbeddedServer) -> None:
    scorer = scorer_for(f"127.0.0.1:{free_port()}", service.target, batch_size=1, backoff=0.05)
    results = scorer.score_all([add_task(f"f{n}", GOOD) for n in range(4)])
    assert [r.status for r in results] == [pb.PASSED] * 4


def test_outage_gives_sandbox_errors_not_exceptions() -> None:
    scorer = scorer_for(f"127.0.0.1:{free_port()}", retries=2, backoff=0.05, timeout=10)
    started = time.monotonic()
    results = scorer.score_all([add_task("a", GOOD), add_task("b", BAD)])
    assert [r.status for r in results] == [pb.SANDBOX_ERROR] * 2
    assert [r.id for r in results] == ["a", "b"]
    assert "UNAVAILABLE" in results[0].message
    assert time.monotonic() - started < 10


def test_wrong_token_is_not_retried_and_not_a_zero(service: EmbeddedServer) -> None:
    scorer = SandboxClient(ClientOptions(targets=(service.target,), token="wrong", retries=5, backoff=1.0))
    started = time.monotonic()
    (result,) = scorer.score_all([add_task("a", GOOD)])
    assert result.status == pb.SANDBOX_ERROR and "UNAUTHENTICATED" in result.message
    assert time.monotonic() - started < 1.0  # no backoff: retrying cannot help


def test_retries_ride_out_a_restart() -> None:
    port = free_port()
    first = start_server("bwrap", port=port)
    first.stop()

    def restart_later(box: list[EmbeddedServer]) -> None:
        time.sleep(1.0)
        box.append(start_server("bwrap", port=port))

    box: list[EmbeddedServer] = []
    thread = threading.Thread(target=restart_later, args=(box,))
    thread.start()
    try:
        scorer = SandboxClient(ClientOptions(targets=(f"127.0.0.1:{port}",), retries=8, backoff=0.3, timeout=60))
        (result,) = scorer.score_all([add_task("a", GOOD)])
        assert result.status == pb.PASSED, result.message
    finally:
        thread.join()
        for server in box:
            server.stop()


def _score_in_child(blob: bytes, queue: multiprocessing.Queue) -> None:
    scorer = pickle.loads(blob)
    queue.put([r.score for r in scorer.score_all([add_task("c", GOOD)])])


def test_client_pickles_into_a_fresh_process(service: EmbeddedServer) -> None:
    scorer = scorer_for(service.target)
    scorer.score_all([add_task("warm", GOOD)])  # channels and loop exist now: they must not travel
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_score_in_child, args=(pickle.dumps(scorer), queue))
    child.start()
    assert queue.get(timeout=60) == [1.0]
    child.join(30)


def test_task_spec_builds_tasks_from_rows() -> None:
    spec = TaskSpec("python", columns={"assert_code": "tests"})
    completion = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": f"```python\n{GOOD}```"}]
    task = spec.build("x", completion, {"tests": "assert add(1, 2) == 3", "entry_point": "add"})
    assert task.code == GOOD and task.python.assert_code == "assert add(1, 2) == 3"
    assert task.python.entry_point == "add"
    with pytest.raises(TaskBuildError, match=r"no column 'tests'.*columns: entry_point"):
        spec.build("x", GOOD, {"entry_point": "add"})
    calls = TaskSpec("python").build(
        "y", GOOD, {"entry_point": "add", "call_tests": '[{"args": [1, 2], "expected": 3}]'}
    )
    assert calls.python.call_tests[0].expected_json == "3"
    sql = TaskSpec("sql").build("z", "```sql\nSELECT 1\n```", {"db_id": "shop", "gold_sql": "SELECT 1"})
    assert sql.language == pb.SQL and sql.code.startswith("```sql")  # the service extracts SQL itself
    tagged = TaskSpec("python", tag="code").build("t", f"<code>{GOOD}</code> done", {"test": "pass"})
    assert tagged.code == GOOD
    with pytest.raises(ValueError, match="unknown column roles"):
        TaskSpec("sql", columns={"reference": "ref"})
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"text": "b"}]}]) == "ab"


def test_task_spec_takes_trusted_helpers_from_a_python_prompt() -> None:
    prompt = 'import math\n\ndef poly(xs, x):\n    return 0\n\ndef find_zero(xs):\n    """doc"""\n'
    row = {"prompt": prompt, "test": "def check(candidate):\n    assert candidate(1) == 1\n", "entry_point": "f"}
    assert TaskSpec("python").build("a", GOOD, row).python.setup_code == prompt
    for chat in ("Write a function that adds two numbers.", [{"role": "user", "content": "add"}], "hello"):
        assert TaskSpec("python").build("b", GOOD, {**row, "prompt": chat}).python.setup_code == ""
    mapped = TaskSpec("python", columns={"setup_code": "test_setup_code"})
    assert mapped.build("c", GOOD, {**row, "test_setup_code": "X = 1\n"}).python.setup_code == "X = 1\n"


def test_tls_endpoint(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = start_server("bwrap", tls_cert=str(cert), tls_key=str(key))
    try:
        secure = SandboxClient(ClientOptions(targets=(server.target,), tls=True, root_certificates=cert.read_bytes()))
        assert [r.status for r in secure.score_all([add_task("tls", GOOD)])] == [pb.PASSED]
        plain = SandboxClient(ClientOptions(targets=(server.target,), retries=0, timeout=5))
        (refused,) = plain.score_all([add_task("plain", GOOD)])
        assert refused.status == pb.SANDBOX_ERROR  # a plaintext client gets no verdict from a TLS port
    finally:
        server.stop()


def test_env_configured_reward_resolves_like_trls_cli(service: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """`trl grpo --reward_funcs trainer_plugin.trl.sandbox_reward`: TRL imports the module and
    takes the attribute; the reward reads its service and language from the environment."""
    import importlib

    monkeypatch.setenv("RFT_SANDBOX_TARGETS", service.target)
    monkeypatch.setenv("RFT_SANDBOX_TOKEN", "s3cret")
    module_name, _, attribute = "trainer_plugin.trl.sandbox_reward".rpartition(".")
    reward = getattr(importlib.import_module(module_name), attribute)
    fresh = type(reward)()  # the module's instance may have been configured by another test
    values = fresh(
        prompts=["p", "p"],
        completions=[f"```python\n{GOOD}```", f"```python\n{BAD}```"],
        test=["assert add(1, 2) == 3", "assert add(1, 2) == 3"],
        entry_point=["add", "add"],
    )
    assert values == [1.0, 0.0]
    assert fresh.__name__ == "sandbox"
