"""`score`'s progress bar and summary (rich), run for real: the console script and the plugin's
command in subprocesses, on an embedded service and a running one, with stderr a pipe or a pty."""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import struct
import subprocess
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format
from rich.console import Console

from sandbox.api import pb, progress
from tests.conftest import start_server
from tests.test_cli import CHEAT, CLI, GOOD, HALF, PEEK, PLUGIN, ROOT, task_line

BROKEN = "def f(x:\n    return x\n"
ANSI = re.compile(r"\x1b\[")
RATE = re.compile(r"\d+(?:\.\d+)? tasks/s")
# 6 tasks: 3 PASSED (one with a WARNING finding), 1 FAILED, 1 SYNTAX_ERROR, 1 REJECTED (a CRITICAL finding)
MIX = [("good-1", GOOD), ("good-2", GOOD), ("peek", PEEK), ("half", HALF), ("broken", BROKEN), ("cheat", CHEAT)]
STATUSES = {"PASSED": 3, "FAILED": 1, "SYNTAX_ERROR": 1, "REJECTED": 1}


def _env() -> dict[str, str]:
    """This checkout first on the path; no variable that would decide for rich whether stderr is a terminal."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR", "COLUMNS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["TERM"] = "xterm-256color"
    return env


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=180, env=_env())


def _run_on_pty(command: list[str], cwd: Path) -> tuple[int, str, str]:
    """stderr on a real pseudo-terminal (stdout a pipe): (returncode, stdout, what the terminal got)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    received: list[bytes] = []

    def drain() -> None:  # the terminal must be read while the command runs, or its writes block
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not chunk:
                return
            received.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        with subprocess.Popen(
            command, cwd=cwd, env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, text=True
        ) as proc:
            os.close(slave)
            stdout, _ = proc.communicate(timeout=180)
        reader.join(timeout=10)
    finally:
        os.close(master)
    return proc.returncode, stdout, b"".join(received).decode("utf-8", "replace")


def _tasks(tmp_path: Path) -> Path:
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(task_line(task_id, code) + "\n" for task_id, code in MIX))
    return path


def _check_results(path: Path) -> None:
    """Every line is a Result exactly as the results file always held it (MessageToDict, one per line)."""
    lines = path.read_text().splitlines()
    results = [json_format.Parse(line, pb.Result()) for line in lines]
    assert [json.loads(line) for line in lines] == [json_format.MessageToDict(r) for r in results]
    assert sorted(r.id for r in results) == sorted(task_id for task_id, _ in MIX)
    by_id = {r.id: pb.Status.Name(r.status) for r in results}
    assert by_id["cheat"] == "REJECTED" and by_id["broken"] == "SYNTAX_ERROR" and by_id["half"] == "FAILED"


def _row(text: str, *cells: str) -> bool:
    """A table row holding these cells, in order, with nothing but spacing or borders between them."""
    between = r"[\s│┃|]+"
    return re.search(between.join(re.escape(c) for c in cells), text) is not None


def _check_summary_table(text: str, tasks: int = 6) -> None:
    for status, count in STATUSES.items():
        assert _row(text, status, str(count), f"{100 * count / tasks:.1f}%"), text
    assert _row(text, "tasks", str(tasks), "100.0%"), text
    assert _row(text, "SANDBOX_ERROR", "0", "0.0%"), text  # shown even when there are none
    assert _row(text, "mean score", f"{(3 + 0.5) / tasks:.3f}"), text
    # code, severity, tasks (then how many times found: the cheat is caught statically and at run time)
    assert _row(text, "always_equal_object", "CRITICAL", "1"), text
    assert _row(text, "frame_introspection", "WARNING", "1", "1"), text
    assert RATE.search(text), text


@pytest.fixture(scope="module")
def running_server() -> Iterator[str]:
    embedded = start_server("bwrap")
    yield embedded.target
    embedded.stop()


def test_forced_progress_on_a_pipe_shows_the_count_and_a_rate(tmp_path):
    tasks = _tasks(tmp_path)
    done = _run([*CLI, "score", str(tasks), "--workers", "2", "--progress", "--batch-size", "4"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "6/6" in done.stderr and RATE.search(done.stderr), done.stderr
    assert "eta" in done.stderr.lower(), done.stderr
    assert ANSI.search(done.stderr), "--progress draws the bar as on a terminal"
    # stdout: the summary and the results' path only; no bar, no escape codes (it is not a terminal)
    assert not ANSI.search(done.stdout) and "6/6" not in done.stdout, done.stdout
    _check_summary_table(done.stdout)
    results = tmp_path / "tasks.results.jsonl"
    assert done.stdout.rstrip().endswith(f"results: {results}"), done.stdout
    _check_results(results)


def test_a_terminal_on_stderr_gets_the_bar_without_being_asked(tmp_path):
    tasks = _tasks(tmp_path)
    returncode, stdout, terminal = _run_on_pty([*CLI, "score", str(tasks), "--workers", "2"], tmp_path)
    assert returncode == 0, terminal
    assert "6/6" in terminal and RATE.search(terminal), terminal
    assert ANSI.search(terminal), "a terminal gets rich's live display (cursor control)"
    assert not ANSI.search(stdout) and "6/6" not in stdout, stdout
    _check_summary_table(stdout)
    _check_results(tmp_path / "tasks.results.jsonl")


def test_a_pipe_gets_no_bar_and_the_plugin_json_summary(tmp_path, running_server):
    tasks = _tasks(tmp_path)
    out = tmp_path / "results.jsonl"
    done = _run([*PLUGIN, "score", str(tasks), "--server", running_server, "--out", str(out), "--json"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "stderr is not a terminal: no bar, nothing at all"
    summary = json.loads(done.stdout)  # stdout is one JSON object, nothing else
    assert summary["tasks"] == 6 and summary["statuses"] == STATUSES
    assert summary["sandbox_errors"] == 0 and summary["mean_score"] == pytest.approx(3.5 / 6)
    assert {(f["code"], f["severity"], f["tasks"]) for f in summary["findings"]} == {
        ("always_equal_object", "CRITICAL", 1),
        ("frame_introspection", "WARNING", 1),
    }
    assert all(f["count"] >= f["tasks"] for f in summary["findings"])
    assert summary["elapsed_s"] > 0 and summary["tasks_per_s"] > 0
    assert summary["results"] == str(out)
    _check_results(out)


def test_the_plugin_bar_and_no_progress(tmp_path, running_server):
    tasks = _tasks(tmp_path)
    out = tmp_path / "results.jsonl"
    command = [*PLUGIN, "score", str(tasks), "--server", running_server, "--out", str(out)]
    returncode, stdout, terminal = _run_on_pty(command, tmp_path)
    assert returncode == 0, terminal
    assert "6/6" in terminal and RATE.search(terminal), terminal
    _check_summary_table(stdout)
    returncode, stdout, terminal = _run_on_pty([*command, "--no-progress"], tmp_path)
    assert returncode == 0, terminal
    assert terminal == "", "--no-progress: the terminal gets nothing"
    _check_summary_table(stdout)
    _check_results(out)


def test_sandbox_errors_are_highlighted():
    """Trainers drop SANDBOX_ERROR results, so the summary says how many, in red on a terminal."""
    results = [pb.Result(id="a", status=pb.PASSED, score=1.0), pb.Result(id="b", status=pb.SANDBOX_ERROR)]
    console = Console(file=io.StringIO(), force_terminal=True, color_system="standard", width=100)
    progress.print_summary(progress.summary(results, elapsed_s=2.0), console)
    text = console.file.getvalue()
    line = next(line for line in text.splitlines() if "SANDBOX_ERROR" in line and "50.0%" in line)
    assert re.search(r"\x1b\[[0-9;]*31[0-9;]*m", line), repr(line)  # red
    plain = ANSI.sub("", re.sub(r"\x1b\[[0-9;]*m", "", text))
    assert _row(plain, "SANDBOX_ERROR", "1", "50.0%"), plain
    assert "1 SANDBOX_ERROR" in plain, plain  # the caption, which survives without colour
    assert _row(plain, "rate", "1.0 tasks/s"), plain
