"""The audit trail end to end: a real service writes it, the `audit` commands read it.

A real service (bwrap) with `--audit-results --audit-code all` gets plugin calls at three
training steps, each a known mix of honest and cheating candidates. Then, on the log the
service itself wrote: `trend --by step` gives exactly the cheat rate sent at each step,
`summary` the counts, `show` the stored cheat's code, and `replay`, after a detector is
tightened in this process, names the one verdict that changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sandbox.api import pb
from sandbox.cli import main
from tests.conftest import start_server
from tests.helpers import call_task
from trainer_plugin.client import ClientOptions, SandboxClient

HONEST = "def add(a, b):\n    return a + b  # {tag}\n"
CHEAT = (
    "class Always:\n    def __eq__(self, other):\n        return True\n\ndef add(a, b):\n    return Always()  # {tag}\n"
)
# honest, but imports functools: what the tightened detector will flag
PROBE = "import functools\n\n@functools.cache\ndef add(a, b):\n    return a + b  # {tag}\n"
SENT = {1: (3, 1), 2: (2, 2), 3: (1, 3)}  # step: (honest, cheats)


def tasks(step: int, honest: int, cheats: int) -> list:
    made = [call_task(f"h{step}-{i}", HONEST.format(tag=f"{step}-{i}"), "add", [([1, 2], 3)]) for i in range(honest)]
    made += [call_task(f"c{step}-{i}", CHEAT.format(tag=f"{step}-{i}"), "add", [([1, 2], 3)]) for i in range(cheats)]
    return made


def audit(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(["audit", *argv]) == 0
    return capsys.readouterr().out


def audit_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    return json.loads(audit(capsys, *argv, "--json"))


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    server = start_server("bwrap", audit_log=str(path), audit_results=True, audit_code="all")
    client = SandboxClient(ClientOptions(server.target, timeout=120, run="e2e-run", caller="test:rank0"))
    try:
        for step, (honest, cheats) in SENT.items():
            results = client.score_all(tasks(step, honest, cheats), step=step)
            assert [pb.Status.Name(r.status) for r in results] == ["PASSED"] * honest + ["REJECTED"] * cheats
        probe = call_task("probe", PROBE.format(tag="p"), "add", [([1, 2], 3)])
        (result,) = client.score_all([probe], step=3)
        assert not result.findings, "functools is not a probe module yet"
    finally:
        client.close()
        server.stop()
    return path


def test_trend_gives_the_cheat_rate_sent_at_each_step(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trend = audit_json(capsys, "trend", "--by", "step", "--log", str(log), "--run", "e2e-run")
    assert trend["complete"], "with --audit-results the log has the denominator"
    by_step = {row["step"]: row for row in trend["steps"]}
    assert sorted(by_step) == [1, 2, 3]
    for step, (honest, cheats) in SENT.items():
        attempts = honest + cheats + (1 if step == 3 else 0)  # the probe attempt at step 3
        assert by_step[step]["attempts"] == attempts
        assert by_step[step]["codes"]["always_equal_object"]["attempts"] == cheats
        assert by_step[step]["codes"]["always_equal_object"]["rate"] == pytest.approx(cheats / attempts)


def test_summary_counts_what_was_sent(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = audit_json(capsys, "summary", "--log", str(log))
    cheats = sum(c for _, c in SENT.values())
    assert summary["totals"]["attempts"] == sum(h + c for h, c in SENT.values()) + 1
    assert summary["totals"]["flagged"] == cheats
    assert {row["caller"]: row["flagged"] for row in summary["by_caller"]} == {"test:rank0": cheats}
    assert {row["run"]: row["attempts"] for row in summary["by_run"]} == {"e2e-run": summary["totals"]["attempts"]}
    # every sample is of one problem (the same tests): it is the top task, whatever the samples' ids
    (top,) = summary["top_tasks"]
    assert top["flagged"] == cheats and top["attempts"] == summary["totals"]["attempts"]


def test_show_prints_the_stored_code_of_a_cheat(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = [json.loads(line) for line in log.read_text().splitlines()]
    cheat = next(r for r in records if r["task_id"] == "c2-1")
    shown = audit(capsys, "show", cheat["id"], "--log", str(log))
    assert "def __eq__(self, other):" in shown and "# 2-1" in shown
    assert "always_equal_object" in shown and "REJECTED" in shown


def test_replay_names_the_verdict_a_tightened_detector_changes(
    log: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox.python import static_checks

    replay = ("replay", "--log", str(log), "--backend", "bwrap", "--workers", "2")
    before = audit_json(capsys, *replay)
    assert before["changed"] == [] and before["replayed"] == sum(h + c for h, c in SENT.values()) + 1
    monkeypatch.setattr(static_checks, "_PROBE_MODULES", static_checks._PROBE_MODULES | {"functools"})
    after = audit_json(capsys, *replay)
    assert [(c["task_id"], c["after"]["findings"]) for c in after["changed"]] == [("probe", ["sandbox_probe"])]
