"""The `rft-sandbox` console script and the plugin's `python -m trainer_plugin`, run for real in subprocesses."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [shutil.which("rft-sandbox")] if shutil.which("rft-sandbox") else [sys.executable, "-m", "sandbox.cli"]
PLUGIN = [sys.executable, "-m", "trainer_plugin"]
ROOT = Path(__file__).resolve().parent.parent

GOOD = "def f(x):\n    return x + 1\n"
HALF = "def f(x):\n    return 2 if x == 1 else 0\n"
BROKEN = "def f(x:\n    return x\n"
CHEAT = "class Always:\n    def __eq__(self, other):\n        return True\n\ndef f(x):\n    return Always()\n"
PEEK = "import inspect\n\ndef f(x):\n    inspect.currentframe()\n    return x + 1\n"


def task_line(task_id: str, code: str, cases: list[tuple[int, int]] | None = None) -> str:
    cases = cases or [(1, 2), (5, 6)]
    tests = [{"argsJson": json.dumps([a]), "expectedJson": json.dumps(e)} for a, e in cases]
    return json.dumps(
        {"id": task_id, "language": "PYTHON", "code": code, "python": {"entryPoint": "f", "callTests": tests}}
    )


def _run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """In another directory, with this checkout first on the path (not whichever copy is installed)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return _run([*CLI, *args], cwd, timeout)


def run_plugin(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return _run([*PLUGIN, *args], cwd, timeout)


def summary_counts(stdout: str) -> dict[str, str]:
    """The summary table's rows: status (or 'tasks', 'mean score') -> its first number (the count)."""
    rows = {}
    for line in stdout.splitlines():
        match = re.fullmatch(r"([A-Za-z_ ]+?)\s+(\d+(?:\.\d+)?)\b.*", line.strip())
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def read_results(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_score_embedded(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    lines = [task_line("good-1", GOOD), task_line("good-2", GOOD), task_line("half", HALF), task_line("broken", BROKEN)]
    tasks.write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n")  # a blank line is skipped
    audit = tmp_path / "audit.jsonl"
    done = run_cli("score", str(tasks), "--workers", "2", "--audit-log", str(audit), "--progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    results_path = tmp_path / "tasks.results.jsonl"
    results = read_results(results_path)
    assert sorted(r["id"] for r in results) == ["broken", "good-1", "good-2", "half"]
    by_id = {r["id"]: r for r in results}
    assert by_id["good-1"]["status"] == by_id["good-2"]["status"] == "PASSED"
    assert by_id["half"]["status"] == "FAILED" and by_id["half"]["score"] == 0.5
    assert by_id["broken"]["status"] == "SYNTAX_ERROR" and by_id["broken"].get("score", 0) == 0
    rows = summary_counts(done.stdout)
    assert rows["PASSED"] == "2" and rows["FAILED"] == "1" and rows["SYNTAX_ERROR"] == "1", done.stdout
    assert rows["tasks"] == "4"
    assert rows["mean score"] == "0.625", done.stdout  # (1 + 1 + 0.5 + 0) / 4
    assert f"results: {results_path}" in done.stdout
    assert "4/4" in done.stderr  # progress (stderr is a pipe here: only --progress draws it)
    assert not (tmp_path / "rft-sandbox-audit.jsonl").exists()


def test_score_against_a_running_server(server, tmp_path):
    tasks = tmp_path / "in.jsonl"
    tasks.write_text("".join(task_line(f"remote-{i}", GOOD if i % 3 else HALF) + "\n" for i in range(6)))
    out = tmp_path / "out" / "results.jsonl"
    out.parent.mkdir()
    before = server.server.pool.stats.jobs_completed
    done = run_plugin(
        "score", str(tasks), "--server", server.target, "--out", str(out), "--quiet", "--batch-size", "4", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # --quiet: no progress bar
    results = read_results(out)
    assert sorted(r["id"] for r in results) == sorted(f"remote-{i}" for i in range(6))
    assert all(r["backend"] == server.server.backend.name for r in results)
    rows = summary_counts(done.stdout)
    assert rows["PASSED"] == "4" and rows["FAILED"] == "2" and rows["tasks"] == "6", done.stdout
    assert server.server.pool.stats.jobs_completed == before + 6, "the tasks ran on the given server"
    assert not (tmp_path / "in.results.jsonl").exists()


def test_remote_score_names_the_line_the_service_refuses(server, tmp_path):
    """The plugin cannot run the service's validation: the service's refusal names the line."""
    tasks = tmp_path / "in.jsonl"
    bad = json.loads(task_line("bad", GOOD))
    bad["python"]["entryPoint"] = "not an identifier"
    tasks.write_text(
        "".join(line + "\n" for line in [task_line("ok-1", GOOD), task_line("ok-2", GOOD), json.dumps(bad)])
    )
    done = run_plugin("score", str(tasks), "--server", server.target, "--quiet", "--batch-size", "2", cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert f"{tasks}:3: python.entry_point" in done.stderr, done.stderr
    assert "2 results kept" in done.stderr, done.stderr  # the first batch had been scored


def test_remote_score_checks_what_it_can_before_sending(tmp_path):
    tasks = tmp_path / "in.jsonl"
    tasks.write_text(task_line("same", GOOD) + "\n" + '{"id": "x", "code": ' + "\n" + task_line("same", GOOD) + "\n")
    done = run_plugin("score", str(tasks), "--server", "127.0.0.1:1", cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert f"{tasks}:2:" in done.stderr and f"{tasks}:3: id: duplicates" in done.stderr, done.stderr
    assert not (tmp_path / "in.results.jsonl").exists()


def test_bad_lines_name_file_and_line_and_score_nothing(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        "\n".join(
            [
                task_line("ok-1", GOOD),
                '{"id": "x", "language": "PYTHON", "code": ',  # not JSON
                task_line("ok-2", GOOD),
                '{"id": "y", "language": "COBOL", "code": "x"}',  # not a Task
                '{"id": "z", "nonsense_field": 1}',
            ]
        )
        + "\n"
    )
    done = run_cli("score", str(tasks), "--audit-log", str(tmp_path / "audit.jsonl"), cwd=tmp_path)
    assert done.returncode != 0
    for number in (2, 4, 5):
        assert f"{tasks}:{number}:" in done.stderr, done.stderr
    assert f"{tasks}:1:" not in done.stderr and f"{tasks}:3:" not in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "tasks.results.jsonl").exists()


def test_invalid_task_line_names_file_and_line(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    empty_code = json.loads(task_line("empty", GOOD))
    empty_code["code"] = ""
    tasks.write_text(task_line("ok", GOOD) + "\n" + json.dumps(empty_code) + "\n")
    done = run_cli("score", str(tasks), "--audit-log", str(tmp_path / "audit.jsonl"), cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert f"{tasks}:2" in done.stderr, done.stderr
    assert "code" in done.stderr
    assert not (tmp_path / "tasks.results.jsonl").exists()


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    done = run_cli("score", str(empty), cwd=tmp_path)
    assert done.returncode != 0 and "no tasks" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli("audit", "--log", str(tmp_path / "nope.jsonl"), cwd=tmp_path)
    assert done.returncode != 0 and "no audit log" in done.stderr
    assert "Traceback" not in done.stderr


def test_audit_query(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("\n".join([task_line("cheat", CHEAT), task_line("peek", PEEK), task_line("clean", GOOD)]) + "\n")
    audit = tmp_path / "logs" / "audit.jsonl"
    done = run_cli("score", str(tasks), "--workers", "1", "--audit-log", str(audit), "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert summary_counts(done.stdout)["REJECTED"] == "1", done.stdout
    logged = {json.loads(line)["task_id"] for line in audit.read_text().splitlines()}
    assert logged == {"cheat", "peek"}

    done = run_cli("audit", "--log", str(audit), "--code", "always_equal_object", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stdout.splitlines()]  # v2: one attempt, its findings nested
    assert [e["task_id"] for e in entries] == ["cheat"]
    assert "always_equal_object" in {f["code"] for f in entries[0]["findings"]}

    done = run_cli("audit", "--log", str(audit), "--code", "frame_introspection", cwd=tmp_path)
    entries = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(e["task_id"], e["max_severity"]) for e in entries] == [("peek", "WARNING")]

    done = run_cli("audit", "--log", str(audit), "--severity", "critical", cwd=tmp_path)
    entries = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(e["task_id"], e["max_severity"]) for e in entries] == [("cheat", "CRITICAL")]

    done = run_cli("audit", "--log", str(audit), "--task", "peek", cwd=tmp_path)
    assert {json.loads(line)["task_id"] for line in done.stdout.splitlines()} == {"peek"}

    done = run_cli("audit", "--log", str(audit), "--since", "2999-01-01", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == ""

    done = run_cli("audit", "--log", str(audit), "--code", "no_such_code", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == ""


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], ["serve", "score", "audit"]),
        (["serve"], ["--backend", "--workers", "--token", "--audit-log", "--port"]),
        (["score"], ["tasks", "--out", "--batch-size", "--audit-log", "--backend"]),
        (["audit"], ["--log", "--code", "--severity", "--task", "--since"]),
    ],
    ids=["main", "serve", "score", "audit"],
)
def test_help(tmp_path, command, expected):
    done = run_cli(*command, "--help", cwd=tmp_path, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: rft-sandbox"), done.stdout
    for word in expected:
        assert word in done.stdout, (word, done.stdout)


def test_no_subcommand_is_a_usage_error(tmp_path):
    done = run_cli(cwd=tmp_path, timeout=30)
    assert done.returncode == 2
    assert "usage: rft-sandbox" in done.stderr


def test_the_service_has_no_plugin_commands(tmp_path):
    done = run_cli("reward-server", "--help", cwd=tmp_path, timeout=30)
    assert done.returncode == 2 and "invalid choice" in done.stderr, done.stderr
    done = run_cli("score", "--help", cwd=tmp_path, timeout=30)
    assert "--server" not in done.stdout  # scoring on a running service is the plugin's command


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], ["score", "reward-server"]),
        (["score"], ["tasks", "--server", "--token", "--out", "--batch-size", "--quiet", "--progress", "--json"]),
        (["reward-server"], ["--server", "--token", "--language", "--port", "--deadline"]),
    ],
    ids=["main", "score", "reward-server"],
)
def test_plugin_help(tmp_path, command, expected):
    done = run_plugin(*command, "--help", cwd=tmp_path, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m trainer_plugin"), done.stdout
    for word in expected:
        assert word in done.stdout, (word, done.stdout)
