"""Score a Python candidate from what the sandbox observed.

Pure and trusted: it receives the expectations (which never entered the sandbox) and
the harness's records (which come from inside and are treated as untrusted data:
validated field by field, any malformed record is ignored and the test counts as not
run). Score = fraction of tests passed; a critical finding makes it 0 (REJECTED).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

from rewards.compare import short_repr, stdout_matches, values_equal
from rewards.model import Finding, NeedsWholeRun, Severity, Status, TestResult, Verdict, dedupe
from rewards.predicate import Evaluator, NotData, ObservationFailed, Unjudgeable
from sandbox.wire.codec import decode, find_custom_eq
from sandbox.wire.messages import CUSTOM_EQ, Ending, Kind, Tag

# When tests fail for different reasons, the result's status names the most telling one.
_STATUS_PRIORITY = (Status.MEMORY_LIMIT, Status.OUTPUT_LIMIT, Status.TIMEOUT, Status.RUNTIME_ERROR)
# Kinds of this side's own, never on the wire: no record came for the test, or its value
# does not decode.
_MISSING = "missing"
_UNDECODABLE = "undecodable"


class ExpectationLike(Protocol):
    name: str
    op: str
    expected: Any
    observations: tuple[int, ...]
    names: Any


def _finding(code: str, severity: Severity, message: str, evidence: str = "") -> Finding:
    return Finding(code, severity, message, evidence[:500])


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _always_equal(evidence: str) -> Finding:
    """The evidence is the object's repr without its address: the same class returned by
    several calls is one finding (`dedupe`), not one per place the allocator put it."""
    return _finding(
        "always_equal_object",
        Severity.CRITICAL,
        "returned an object of a class with its own __eq__ instead of a plain value",
        _ADDRESS.sub("", evidence),
    )


def _early_exit(evidence: str = "") -> Finding:
    return _finding("early_exit", Severity.WARNING, "the candidate exited instead of returning a value", evidence)


def _harness_killed(evidence: str = "") -> Finding:
    return _finding(
        "harness_killed",
        Severity.WARNING,
        "the test harness was killed or ended without its completion report",
        evidence,
    )


def _status_of_failure(kind: str, exc_type: str = "") -> Status:
    if kind in (Kind.EXCEPTION, Kind.LOAD_ERROR) and exc_type == "MemoryError":
        return Status.MEMORY_LIMIT
    return {
        Kind.TIMEOUT: Status.TIMEOUT,
        Kind.NOT_RUN: Status.TIMEOUT,
        Kind.OUTPUT_LIMIT: Status.OUTPUT_LIMIT,
        Kind.REPORT_LIMIT: Status.OUTPUT_LIMIT,
        Kind.MEMORY: Status.MEMORY_LIMIT,
    }.get(kind, Status.RUNTIME_ERROR)


def _explain_failure(record: dict[str, Any]) -> str:
    kind = record.get("kind")
    if kind in (Kind.EXCEPTION, Kind.LOAD_ERROR):
        return f"{record.get('type', '')}: {record.get('msg', '')}"[:300]
    if kind == Kind.CRASH:
        return f"crashed (signal {record.get('signal')})"
    if kind == Kind.EXIT:
        return f"process exited (code {record.get('code')}) before answering"
    if kind == Kind.TIMEOUT:
        return "test time limit exceeded"
    if kind == Kind.NOT_RUN:
        return "not run: task time limit exceeded"
    if kind == Kind.REPORT_LIMIT:
        return "the values returned by the whole job exceed the report limit"
    return str(kind)[:100]


def _outcome_of_test(
    index: int, exp: ExpectationLike, record: dict[str, Any], rel_tol: float, abs_tol: float, findings: list[Finding]
) -> TestResult:
    """A call test (one value against its expected value) or an io test (stdout)."""
    kind = record.get("kind")
    duration = _duration(record)

    def result(passed: bool, status: Status, message: str = "") -> TestResult:
        return TestResult(index, passed, status, exp.name, message, duration)

    if kind == Kind.VALUE and exp.op == "eq":
        try:
            value = _observed_value(record, findings)
        except ObservationFailed:
            return result(False, Status.FAILED, "the returned value could not be decoded")
        if values_equal(value, exp.expected, rel_tol, abs_tol):
            return result(True, Status.PASSED)
        return result(False, Status.FAILED, f"got {short_repr(value)}")
    if kind == Kind.IO and exp.op == "stdout":
        stdout = record.get("stdout")
        if isinstance(stdout, str) and stdout_matches(stdout, str(exp.expected)):
            return result(True, Status.PASSED)
        return result(False, Status.FAILED, f"stdout was {str(stdout)[:200]!r}")
    return _failed_run(index, exp.name, record, findings, duration)


def _outcome_of_assert(
    index: int,
    exp: ExpectationLike,
    records: dict[int, dict[str, Any]],
    default: dict[str, Any],
    rel_tol: float,
    abs_tol: float,
    findings: list[Finding],
) -> TestResult:
    """A split assert: its predicate evaluated here, over the values its candidate calls returned.

    Calls are read lazily, in Python's order: in `f(x) == 1 or f(y) == 2` a failure of the
    second call does not matter when the first comparison holds."""
    used: list[dict[str, Any]] = []

    def observe(call: int) -> Any:
        record = records.get(call, default)
        used.append(record)
        if record.get("kind") != Kind.VALUE:
            raise ObservationFailed(record)
        try:
            return decode(record.get("value"))
        except (ValueError, TypeError, RecursionError):
            raise ObservationFailed({"kind": _UNDECODABLE}) from None

    evaluator = Evaluator(exp.names, observe, rel_tol, abs_tol)
    try:
        passed = evaluator.truth(exp.expected)
    except ObservationFailed as failure:
        return _failed_run(index, exp.name, failure.record, findings, _sum_ms(used))
    except NotData:
        raise NeedsWholeRun from None
    except Unjudgeable as exc:
        return TestResult(index, False, Status.FAILED, exp.name, f"cannot be judged: {exc}", _sum_ms(used))
    except Exception as exc:  # noqa: BLE001 - the assert itself raised, as Python would have
        message = f"{type(exc).__name__}: {str(exc)[:200]}"
        return TestResult(index, False, Status.FAILED, exp.name, message, _sum_ms(used))
    finally:
        findings.extend(_always_equal(f"{c.type_name}: {c.text}") for c in evaluator.cheats)
    if passed:
        return TestResult(index, True, Status.PASSED, exp.name, "", _sum_ms(used))
    got = ", ".join(_got(r) for r in used)
    return TestResult(index, False, Status.FAILED, exp.name, f"got {got}"[:300], _sum_ms(used))


def _got(record: dict[str, Any]) -> str:
    try:
        return short_repr(decode(record.get("value")), 200)
    except (ValueError, TypeError, RecursionError):
        return "?"


def _duration(record: dict[str, Any]) -> float:
    ms = record.get("ms", 0.0)
    return float(ms) if isinstance(ms, (int, float)) and not isinstance(ms, bool) else 0.0


def _sum_ms(records: list[dict[str, Any]]) -> float:
    return sum(_duration(r) for r in records)


def _observed_value(record: dict[str, Any], findings: list[Finding]) -> Any:
    """A returned value, decoded as data; a class with its own __eq__ is a finding."""
    try:
        value = decode(record.get("value"))
    except (ValueError, TypeError, RecursionError):
        raise ObservationFailed({"kind": _UNDECODABLE}) from None
    cheat = find_custom_eq(value)
    if cheat is not None:
        findings.append(_always_equal(f"{cheat.type_name}: {cheat.text}"))
    return value


def _failed_run(index: int, name: str, record: dict[str, Any], findings: list[Finding], duration: float) -> TestResult:
    """A test whose candidate call produced no value: how it failed, and what that reveals."""
    kind = record.get("kind")
    exc_type = str(record.get("type", ""))
    if kind == Kind.EXIT or (kind == Kind.EXCEPTION and exc_type == "SystemExit"):
        findings.append(_early_exit(name))
    if kind == Kind.HARNESS_KILLED:
        findings.append(_harness_killed(name))
    if kind == Kind.GARBAGE:
        findings.append(
            _finding(
                "protocol_tampering", Severity.WARNING, "the candidate wrote malformed data into the harness channel"
            )
        )
    if kind == _UNDECODABLE:
        return TestResult(index, False, Status.FAILED, name, "the returned value could not be decoded", duration)
    return TestResult(index, False, _status_of_failure(str(kind), exc_type), name, _explain_failure(record), duration)


def _outcome_of_sites(expectations: Sequence[ExpectationLike], records: list[dict[str, Any]]) -> list[TestResult]:
    sites = {r.get("site"): r for r in records if r.get("t") == Tag.SITE}
    checks = [r for r in records if r.get("t") == Tag.CHECK]
    completed = bool(checks and checks[0].get("completed") is True)
    error = str(checks[0].get("error", "")) if checks else "the test harness did not report"
    tests = []
    for index, exp in enumerate(expectations):
        site = sites.get(index, {})
        # A completed check is Python's verdict: an assert it never reached (`assert False`
        # after a call expected to raise) did not fail.
        if completed and site.get("fails", 0) == 0:
            tests.append(TestResult(index, True, Status.PASSED, exp.name))
            continue
        why = str(site.get("why") or error or "assertion not reached")[:300]
        kind, _, detail = why.partition(": ")
        status = Status.FAILED if why == "assertion is false" else _status_of_failure(kind, detail)
        if kind not in (
            Kind.TIMEOUT,
            Kind.NOT_RUN,
            Kind.OUTPUT_LIMIT,
            Kind.EXCEPTION,
            Kind.CRASH,
            Kind.EXIT,
            Kind.MEMORY,
        ):
            status = Status.FAILED if site else Status.RUNTIME_ERROR
        tests.append(TestResult(index, False, status, exp.name, why))
    return tests


def _whole_mode_findings(records: list[dict[str, Any]]) -> list[Finding]:
    """What the isolated harness saw the candidate do while running unsplittable tests."""
    check = next((r for r in records if r.get("t") == Tag.CHECK), {})
    events = check.get("events") if isinstance(check.get("events"), dict) else {}
    evidence = check.get("evidence") if isinstance(check.get("evidence"), dict) else {}
    findings = []
    if events.get(CUSTOM_EQ):
        findings.append(_always_equal(str(evidence.get(CUSTOM_EQ, ""))))
    if events.get(Kind.EXIT) or events.get(f"{Kind.EXCEPTION}:SystemExit"):
        findings.append(_early_exit())
    if events.get(Kind.GARBAGE):
        findings.append(
            _finding(
                "protocol_tampering", Severity.WARNING, "the candidate wrote malformed data into the harness channel"
            )
        )
    if events.get(Kind.HARNESS_KILLED):
        findings.append(_harness_killed())
    return findings


def score_python(
    expectations: Sequence[ExpectationLike],
    records: list[Any],
    runner: dict[str, Any],
    static_findings: Sequence[Finding],
    rel_tol: float,
    abs_tol: float,
    whole: bool,
    defer: bool = False,
) -> Verdict:
    """The verdict on one job's records. `defer`: raise NeedsWholeRun rather than fail a split
    assert that met a value that is not data (the task has a whole-mode fallback)."""
    records = [r for r in records if isinstance(r, dict)]
    broken = _harness_failure(records)
    if broken is not None:
        return broken
    findings = list(static_findings)
    if whole:
        tests = _outcome_of_sites(expectations, records)
        findings += _whole_mode_findings(records)
    else:
        tests = _split_results(expectations, records, runner, rel_tol, abs_tol, findings, defer)
    load = _first(records, Tag.LOAD)
    message = ""
    if load is not None:
        message = f"failed to load: {_explain_failure(load)}"
        tests = _failed_to_load(load, tests, message, findings)
    done = _first(records, Tag.DONE)
    tests = _apply_job_ending(runner, done, tests, findings)
    return _verdict(tests, dedupe(findings), runner, done, load, message)


def _first(records: list[dict[str, Any]], tag: str) -> dict[str, Any] | None:
    """The first record with this tag: as with a test's records, the first one counts."""
    return next((r for r in records if r.get("t") == tag), None)


def _harness_failure(records: list[dict[str, Any]]) -> Verdict | None:
    """The harness's own failure or the task's setup code's: nothing the candidate did,
    so SANDBOX_ERROR, which trainers drop instead of learning from."""
    internal = _first(records, Tag.INTERNAL_ERROR)
    if internal is not None:
        error = str(internal.get("error"))[-500:]
        return Verdict(Status.SANDBOX_ERROR, 0.0, message=f"test harness failed: {error}")
    setup = next((r for r in records if r.get("t") == Tag.CHECK and "setup_error" in r), None)
    if setup is not None:  # the task's own setup code failed before any candidate call
        return Verdict(Status.SANDBOX_ERROR, 0.0, message=f"the task's setup_code failed: {setup['setup_error']}"[:500])
    return None


def _split_results(
    expectations: Sequence[ExpectationLike],
    records: list[dict[str, Any]],
    runner: dict[str, Any],
    rel_tol: float,
    abs_tol: float,
    findings: list[Finding],
    defer: bool,
) -> list[TestResult]:
    """Each test judged here from its calls' records (the first record per call counts). A
    call with no record was cut by the deadline (not run) or is missing. A value that is not
    data fails every test, unless the tests can still run whole and nothing critical was seen."""
    by_index: dict[int, dict[str, Any]] = {}
    for r in records:
        if r.get("t") == Tag.TEST and isinstance(r.get("i"), int) and r["i"] not in by_index:
            by_index[r["i"]] = r
    default = {"kind": Kind.NOT_RUN} if runner.get("ending") == Ending.DEADLINE else {"kind": _MISSING}
    try:
        return [
            _outcome_of_assert(i, exp, by_index, default, rel_tol, abs_tol, findings)
            if exp.op == "assert"
            else _outcome_of_test(i, exp, by_index.get(i, default), rel_tol, abs_tol, findings)
            for i, exp in enumerate(expectations)
        ]
    except NeedsWholeRun:
        if defer and not any(f.severity is Severity.CRITICAL for f in findings):
            raise
        why = "the candidate returned a value that is not plain data"
        return [TestResult(i, False, Status.FAILED, e.name, why) for i, e in enumerate(expectations)]


def _is_syntax_error(load: dict[str, Any]) -> bool:
    return load.get("type") in ("SyntaxError", "IndentationError")


def _failed_to_load(
    load: dict[str, Any], tests: list[TestResult], message: str, findings: list[Finding]
) -> list[TestResult]:
    """A candidate that did not load fails every test the way loading failed, whatever the
    tests' records claim; exiting or killing the harness while loading is a finding too."""
    if load.get("kind") == Kind.EXIT or (load.get("kind") == Kind.LOAD_ERROR and load.get("type") == "SystemExit"):
        findings.append(_early_exit("while loading"))
    if load.get("kind") == Kind.HARNESS_KILLED:
        findings.append(_harness_killed(str(load.get("msg", ""))))
    load_status = (
        Status.SYNTAX_ERROR
        if _is_syntax_error(load)
        else _status_of_failure(str(load.get("kind")), str(load.get("type", "")))
    )
    return [TestResult(t.index, False, load_status, t.name, message) for t in tests]


def _oom_kills(runner: dict[str, Any]) -> int:
    """Processes the kernel killed for memory, counted in the sandbox's cgroup (so the job
    cannot hide them); 0 when none or not counted."""
    kills = runner.get("oom_kills")
    return kills if type(kills) is int and kills > 0 else 0


def _apply_job_ending(
    runner: dict[str, Any], done: dict[str, Any] | None, tests: list[TestResult], findings: list[Finding]
) -> list[TestResult]:
    """What the runner saw of the job's end outranks the records: a job that overflowed its
    output limit or lost processes to the kernel's OOM killer failed for that reason, and a
    harness that closed without its report, or left processes behind, is a finding."""
    if done is None and runner.get("ending") == Ending.CLOSED:
        findings.append(_harness_killed())
    if runner.get("ending") == Ending.OVERFLOW:
        tests = [t if t.passed else TestResult(t.index, False, Status.OUTPUT_LIMIT, t.name, t.message) for t in tests]
    if _oom_kills(runner):  # a test that ended by a kill or a crash ran out of the job's memory
        tests = [
            TestResult(t.index, False, Status.MEMORY_LIMIT, t.name, t.message)
            if not t.passed and t.status is Status.RUNTIME_ERROR
            else t
            for t in tests
        ]
    leftovers = runner.get("leftover_processes")
    if isinstance(leftovers, int) and leftovers > 0:
        findings.append(
            _finding(
                "process_left_behind",
                Severity.WARNING,
                "processes were still running after the job and were killed",
                f"{leftovers} process(es)",
            )
        )
    return tests


def _verdict(
    tests: list[TestResult],
    findings: list[Finding],
    runner: dict[str, Any],
    done: dict[str, Any] | None,
    load: dict[str, Any] | None,
    message: str,
) -> Verdict:
    """A critical finding rejects whatever passed; a pass needs every test passed and the
    harness's completion report (a job cut short proved nothing about the tests it skipped);
    anything else earns the fraction passed."""
    passed = sum(t.passed for t in tests)
    fraction = passed / len(tests) if tests else 0.0
    complete = done is not None and runner.get("ending") == Ending.CLOSED
    components = {"compiles": 1.0, "tests_passed": fraction}
    stdout = str(done.get("stdout", ""))[:4096] if done else ""
    stderr = str(done.get("stderr", ""))[:4096] if done else ""
    if any(f.severity is Severity.CRITICAL for f in findings):
        return Verdict(
            Status.REJECTED,
            0.0,
            tests,
            {**components, "cheat_penalty": 1.0},
            findings,
            "rejected: " + "; ".join(f.code for f in findings if f.severity is Severity.CRITICAL),
            stdout,
            stderr,
        )
    if tests and passed == len(tests) and complete:
        return Verdict(Status.PASSED, 1.0, tests, components, findings, "", stdout, stderr)
    status = _failure_status(tests, runner, load)
    message = _failure_message(tests, runner, message)
    return Verdict(status, fraction, tests, components, findings, message[:1000], stdout, stderr)


def _failure_status(tests: list[TestResult], runner: dict[str, Any], load: dict[str, Any] | None) -> Status:
    """The most telling reason among the failures: a resource limit over a crash over a
    wrong answer; the kernel's OOM count over any of them; a candidate that does not parse
    over everything, since nothing else could have happened."""
    statuses = {t.status for t in tests if not t.passed}
    status = next((s for s in _STATUS_PRIORITY if s in statuses), Status.FAILED)
    if _oom_kills(runner):
        status = Status.MEMORY_LIMIT
    if load is not None and _is_syntax_error(load):
        status = Status.SYNTAX_ERROR
    return status


def _failure_message(tests: list[TestResult], runner: dict[str, Any], message: str) -> str:
    """The load failure when there was one, else the count and the first failure; an OOM kill
    leads, since it explains failures that look like crashes."""
    if not message:
        passed = sum(t.passed for t in tests)
        failing = next((t for t in tests if not t.passed), None)
        message = f"{passed}/{len(tests)} tests passed" + (f"; first failure: {failing.message}" if failing else "")
    oom_kills = _oom_kills(runner)
    if oom_kills:
        message = f"the job's processes exceeded its memory limit ({oom_kills} killed by the kernel); {message}"
    return message
