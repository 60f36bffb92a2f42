"""`rft-sandbox audit summary|trend|show|sql|replay` over v2 audit logs (sandbox/audit_record.py).

The logs are built here from the contract (the writer is changed elsewhere), except replay's,
whose record comes from a real scoring result of a real embedded service.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from sandbox import audit_record
from sandbox.api import pb
from sandbox.cli import main
from tests.conftest import start_server
from tests.helpers import call_task
from trainer_plugin.client import ClientOptions, SandboxClient

CHEAT = "class Yes:\n    def __eq__(self, other):\n        return True\n\ndef add(a, b):\n    return Yes()\n"
HONEST = "def add(a, b):\n    return a + b\n"
EQ = {"code": "always_equal_object", "severity": "CRITICAL", "message": "always equal", "evidence": "def __eq__"}
EXIT = {"code": "early_exit", "severity": "WARNING", "message": "exits", "evidence": "sys.exit(0)"}


def add_task(task_id: str, code: str) -> pb.Task:
    return call_task(task_id, code, "add", [([1, 2], 3), ([2, 2], 4)])


def record(
    *,
    step: int | None,
    run: str = "run-a",
    caller: str = "trl:rank0",
    findings: tuple[dict[str, str], ...] = (),
    code: str = HONEST,
    task_id: str = "7",
    language: str = "python",
    status: str | None = None,
    score: float | None = None,
    components: dict[str, float] | None = None,
    task: pb.Task | None = None,
    store_code: bool = True,
    time: str | None = None,
) -> audit_record.AttemptRecord:
    """A v2 attempt line as the contract defines it."""
    severities = [f["severity"] for f in findings]
    worst = max(severities, key=["INFO", "WARNING", "CRITICAL"].index) if severities else None
    stored = (task or add_task(task_id, code)).__deepcopy__()
    stored.code = ""
    return {
        "v": audit_record.VERSION,
        "kind": "attempt",
        "id": audit_record.new_id(),
        "time": time or audit_record.now(),
        "run": run,
        "step": step,
        "caller": caller,
        "principal": None,
        "task_id": task_id,
        "language": language,
        "status": status or ("REJECTED" if worst == "CRITICAL" else "PASSED"),
        "score": score if score is not None else (0.0 if worst == "CRITICAL" else 1.0),
        "components": components if components is not None else {"tests_passed": 1.0},
        "findings": list(findings),  # type: ignore[typeddict-item]
        "max_severity": worst,
        "code_sha256": hashlib.sha256(code.encode()).hexdigest(),
        "code_bytes": len(code.encode()),
        "code_z": audit_record.encode_blob(code) if store_code else None,
        "code_truncated": False,
        "task": audit_record.encode_blob(json_format.MessageToJson(stored)) if store_code else None,
    }


def from_result(task: pb.Task, result: pb.Result, step: int) -> audit_record.AttemptRecord:
    """The record the writer makes of a real result."""
    findings = tuple(
        {"code": f.code, "severity": pb.Severity.Name(f.severity), "message": f.message, "evidence": f.evidence}
        for f in result.findings
    )
    return record(
        step=step,
        findings=findings,
        code=task.code,
        task_id=task.id,
        status=pb.Status.Name(result.status),
        score=result.score,
        components=dict(result.components),
        task=task,
    )


def write(path: Path, records: list[Any], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail, encoding="utf-8")
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(["audit", *argv]) == 0
    return capsys.readouterr().out


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    return json.loads(run_cli(capsys, *argv, "--json"))


@pytest.fixture
def mixed_log(tmp_path: Path) -> Path:
    """Steps 0-2 of run-a: 4, 5, 2 attempts of which 1, 2, 2 cheat (always_equal); step 1 also one
    early_exit on a cheating attempt (two findings, one attempt); run-b's rotated file: 3 at step 0,
    one flagged, caller verl. Plus a service event and a v1 line the views leave out."""
    a = [record(step=0, task_id=str(i)) for i in range(3)] + [record(step=0, findings=(EQ,), task_id="9", code=CHEAT)]
    a += [record(step=1, task_id="1") for _ in range(3)]
    a += [record(step=1, findings=(EQ, EXIT), task_id="9", code=CHEAT), record(step=1, findings=(EQ,), task_id="8")]
    a += [record(step=2, findings=(EQ,), task_id="9", code=CHEAT, caller="trl:rank1") for _ in range(2)]
    event = {"v": 2, "kind": "event", "id": audit_record.new_id(), "time": audit_record.now()}
    event |= {"code": "database_modified", "severity": "CRITICAL", "evidence": "x"}
    v1 = {"time": "2026-11-01T00:00:00Z", "task_id": "1", "code": "early_exit", "severity": "WARNING"}
    current = write(tmp_path / "audit.jsonl", [*a, event, v1])
    b = [record(step=0, run="run-b", caller="verl", task_id="5", language="sql") for _ in range(2)]
    b += [record(step=0, run="run-b", caller="verl", findings=(EXIT,), task_id="5", language="sql")]
    write(tmp_path / "audit.20261201T181500Z.jsonl", b)
    write(tmp_path / "audit.other.jsonl", [record(step=0, findings=(EQ,))])  # not a rotated name: not read
    return current


def test_summary_counts_what_was_written(mixed_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = as_json(capsys, "summary", "--log", str(mixed_log))
    assert data["totals"] == {"attempts": 14, "flagged": 6, "findings": 7, "events": 1}
    assert {(r["code"], r["attempts"]) for r in data["by_code"]} == {("always_equal_object", 5), ("early_exit", 2)}
    assert {r["severity"]: r["attempts"] for r in data["by_severity"]} == {"CRITICAL": 5, "WARNING": 1, None: 8}
    assert {r["language"]: (r["attempts"], r["flagged"]) for r in data["by_language"]} == {
        "python": (11, 5),
        "sql": (3, 1),
    }
    assert {r["caller"]: r["flagged"] for r in data["by_caller"]} == {"trl:rank0": 3, "trl:rank1": 2, "verl": 1}
    assert {r["run"]: r["attempts"] for r in data["by_run"]} == {"run-a": 11, "run-b": 3}
    # records without a task_key (older ones) are grouped by their task id
    top = {"task": "9", "example_id": "9", "language": "python", "flagged": 4, "critical": 4, "attempts": 4}
    assert data["top_tasks"][0] == top
    assert data["events"] == [{"code": "database_modified", "events": 1}]
    only_b = as_json(capsys, "summary", "--log", str(mixed_log), "--run", "run-b")
    assert only_b["totals"]["attempts"] == 3
    table = run_cli(capsys, "summary", "--log", str(mixed_log))
    assert "always_equal_object" in table and "top offending tasks" in table


def test_trend_rates_per_step_are_exact(mixed_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = as_json(capsys, "trend", "--by", "step", "--log", str(mixed_log), "--run", "run-a")
    assert data["complete"] and data["note"] is None
    rates = {row["step"]: {c: v["rate"] for c, v in row["codes"].items()} for row in data["steps"]}
    assert rates == {
        0: {"always_equal_object": 1 / 4},
        1: {"always_equal_object": 2 / 5, "early_exit": 1 / 5},
        2: {"always_equal_object": 2 / 2},
    }
    assert [row["attempts"] for row in data["steps"]] == [4, 5, 2]
    assert "2/5 (40.0%)" in run_cli(capsys, "trend", "--log", str(mixed_log), "--run", "run-a")


def test_trend_says_when_there_is_no_denominator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write(tmp_path / "audit.jsonl", [record(step=s, findings=(EQ,)) for s in (0, 0, 1)])
    data = as_json(capsys, "trend", "--log", str(log))
    assert not data["complete"] and "--audit-results" in data["note"]
    assert "--audit-results" in run_cli(capsys, "trend", "--log", str(log))


def test_show_prints_the_stored_code_with_its_evidence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cheat = record(step=3, findings=(EQ,), code=CHEAT, task_id="9")
    log = write(tmp_path / "audit.jsonl", [record(step=3), cheat])
    out = run_cli(capsys, "show", cheat["id"], "--log", str(log))
    assert "return Yes()" in out and "def __eq__(self, other):" in out  # the code itself
    assert "evidence on line(s) 2" in out  # the __eq__ line is marked
    assert "always_equal_object" in out and "REJECTED" in out and "tests_passed" in out
    assert "call_tests" in out and "expected_json" in out  # the stored task's tests
    shown = as_json(capsys, "show", cheat["id"], "--log", str(log))
    assert shown["code"] == CHEAT and shown["task"]["python"]["entry_point"] == "add"
    with pytest.raises(SystemExit, match="no attempt"):
        main(["audit", "show", "0123456789abcdef", "--log", str(log)])


def test_sql_answers_a_select_and_refuses_what_writes(mixed_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = as_json(capsys, "sql", "SELECT code, count(*) AS n FROM findings GROUP BY code ORDER BY code", "--log",
                   str(mixed_log))  # fmt: skip
    assert rows == [{"code": "always_equal_object", "n": 5}, {"code": "early_exit", "n": 2}]
    assert "1 row(s)" in run_cli(capsys, "sql", "WITH e AS (SELECT * FROM events) SELECT count(*) FROM e", "--log",
                                 str(mixed_log))  # fmt: skip
    target = mixed_log.parent / "stolen.csv"
    for statement in (
        f"COPY (SELECT * FROM attempts) TO '{target}'",
        f"ATTACH '{mixed_log.parent / 'x.duckdb'}' AS x",
        "INSTALL httpfs",
        "CREATE TABLE t AS SELECT 1",
        "SELECT 1; SELECT 2",
        "SET enable_external_access = true",
        "SELECT * FROM read_text('/etc/hostname')",  # a SELECT, but outside the log's files
        f"SELECT * FROM read_json_auto('{mixed_log.parent / 'audit.other.jsonl'}')",
    ):
        with pytest.raises(SystemExit, match="audit sql: "):
            main(["audit", "sql", statement, "--log", str(mixed_log)])
    assert not target.exists() and not (mixed_log.parent / "x.duckdb").exists()


def test_a_torn_last_line_and_unknown_fields_are_tolerated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flagged = record(step=0, findings=(EQ,)) | {"future_field": {"nested": [1, 2]}}
    torn = json.dumps(record(step=0, findings=(EQ,)))[:57]  # a crash mid-write
    log = write(tmp_path / "audit.jsonl", [record(step=0), flagged], tail=torn)
    assert as_json(capsys, "summary", "--log", str(log))["totals"]["attempts"] == 2
    assert as_json(capsys, "sql", "SELECT count(*) AS n FROM attempts", "--log", str(log)) == [{"n": 2}]
    assert as_json(capsys, "show", flagged["id"], "--log", str(log))["id"] == flagged["id"]


def test_the_old_flag_form_still_parses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write(tmp_path / "audit.jsonl", [{"code": "early_exit", "severity": "WARNING", "task_id": "3"}])
    out = run_cli(capsys, "--log", str(log), "--code", "early_exit")
    assert json.loads(out)["task_id"] == "3"


def test_replay_reports_the_verdict_a_tightened_detector_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real cheat and an honest attempt importing functools, scored by a real service, stored;
    then the sandbox_probe check is tightened in-process (functools counts as a probe module):
    replay says the honest attempt's verdict changes and the cheat's does not."""
    from sandbox.python import static_checks

    cheat = add_task("cheat", CHEAT)
    probe = add_task("probe", "import functools\n\n@functools.cache\ndef add(a, b):\n    return a + b\n")
    server = start_server("bwrap")
    client = SandboxClient(ClientOptions(server.target, timeout=120))
    try:
        results = client.score_all([cheat, probe])
    finally:
        client.close()
        server.stop()
    assert "always_equal_object" in {f.code for f in results[0].findings}
    assert pb.Status.Name(results[1].status) == "PASSED" and not results[1].findings
    stored = [from_result(cheat, results[0], step=1), from_result(probe, results[1], step=1)]
    log = write(tmp_path / "audit.jsonl", [*stored, record(step=1, findings=(EQ,), store_code=False)])

    unchanged = as_json(capsys, "replay", "--log", str(log), "--backend", "bwrap", "--workers", "2")
    assert unchanged == {"replayed": 2, "not_replayable": 1, "changed": []}

    monkeypatch.setattr(static_checks, "_PROBE_MODULES", static_checks._PROBE_MODULES | {"functools"})
    outcome = as_json(capsys, "replay", "--log", str(log), "--backend", "bwrap", "--workers", "2")
    assert outcome["replayed"] == 2 and outcome["not_replayable"] == 1
    assert len(outcome["changed"]) == 1
    change = outcome["changed"][0]
    assert change["id"] == stored[1]["id"] and change["task_id"] == "probe"
    assert change["before"]["findings"] == [] and change["after"]["findings"] == ["sandbox_probe"]
    table = run_cli(capsys, "replay", "--log", str(log), "--backend", "bwrap", "--workers", "2")
    assert "- -> sandbox_probe" in table and "1 verdicts would change" in table


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("RFT_REQUIRE_CHROMIUM"):
        pytest.fail("no chromium: run scripts/chromium-up")
    return found


_OFFLINE = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


def test_the_html_report_renders_in_headless_chromium(mixed_log: Path, tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium here (scripts/chromium-up installs it)")
    report, png = tmp_path / "report.html", tmp_path / "plot.png"
    assert main(["audit", "trend", "--log", str(mixed_log), "--run", "run-a", "--html", str(report),
                 "--png", str(png)]) == 0  # fmt: skip
    html = report.read_text()
    assert "http://" not in html and "https://" not in html and 'src="data:image/png;base64,' in html
    profile = tmp_path / "profile"
    common = [chromium, *_OFFLINE, f"--user-data-dir={profile}"]
    shot = tmp_path / "shot.png"
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1200,900", report.as_uri()],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    dom = subprocess.run([*common, "--dump-dom", report.as_uri()], check=True, capture_output=True, text=True,
                         timeout=120).stdout  # fmt: skip
    assert "2/5 (40.0%)" in dom and "always_equal_object" in dom and "early_exit" in dom

    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))[..., :3]
    assert pixels.shape[:2] == (900, 1200)
    plot_area = pixels[100:550, :900]
    # matplotlib's first two line colours (C0 blue #1f77b4, C1 orange #ff7f0e) drawn in the page
    blue = ((abs(plot_area - [0x1F / 255, 0x77 / 255, 0xB4 / 255]) < 0.08).all(axis=-1)).sum()
    orange = ((abs(plot_area - [1.0, 0x7F / 255, 0x0E / 255]) < 0.08).all(axis=-1)).sum()
    assert blue > 50 and orange > 50, (blue, orange)
    assert (plot_area < 0.9).any(axis=-1).mean() > 0.01  # not a blank page
