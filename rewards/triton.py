"""Scoring a Triton candidate from what its sandbox observed (trusted, pure).

Score (weights configurable per task):

    raw   = w_compiles * compiles + w_correct * passed / trials
            + [all passed] * min(max(speedup - 1, 0), max_bonus)
    score = raw / (w_compiles + w_correct + max_bonus)      when speed is measured
    score = raw / (w_compiles + w_correct)                   when it is not (CPU interpreter)

Hard gate: any CRITICAL finding makes the result REJECTED with score 0. A kernel that the
interpreter ran but that does not compile for a real GPU makes it SYNTAX_ERROR, score 0:
it would never run where the reward is meant to pay. A speedup above the plausibility
bound is flagged (WARNING, for audit) and its bonus withheld.

Everything in `records` comes from the candidate's sandbox and is parsed defensively;
correctness is decided here, against reference outputs the candidate never saw.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rewards.model import Finding, Severity, Status, TestResult, Verdict, dedupe
from rewards.tensors import Tensor, TensorError, compare_all, decode_list

# aten ops a forward may run outside its kernels: allocation, views, layout and dtype
# copies, reading a scalar. Anything else is torch computing (part of) the answer.
ALLOWED_OPS = frozenset(
    {
        "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
        "zeros", "zeros_like", "new_zeros", "ones", "ones_like", "new_ones",
        "full", "full_like", "new_full", "fill_", "zero_", "arange", "scalar_tensor",
        "view", "_unsafe_view", "reshape", "_reshape_alias", "as_strided", "permute",
        "transpose", "t", "expand", "squeeze", "unsqueeze", "flatten", "unflatten",
        "select", "slice", "narrow", "split", "split_with_sizes", "chunk", "unbind",
        "contiguous", "clone", "copy_", "_to_copy", "detach", "alias", "lift_fresh",
        "resize_", "set_", "_local_scalar_dense", "is_nonzero", "sym_size", "sym_stride",
        "sym_numel", "sym_storage_offset", "view_as", "expand_as",
    }
)  # fmt: skip

# What the harness may report about an output, and the finding each one is.
_OUTPUT_PROBLEMS = {
    "not_plain_tensor": "output_not_plain_tensor",
    "not_materialised": "output_not_materialised",
    "aliases_input": "output_aliases_input",
}
_MAX_EVIDENCE = 300


@dataclass(frozen=True)
class Weights:
    compiles: float = 0.1
    correctness: float = 0.3
    max_speedup_bonus: float = 2.0
    plausible_speedup: float = 10.0


@dataclass(frozen=True)
class ReferenceRun:
    """What the reference produced (from its own sandbox, validated when it came back)."""

    outputs: tuple[tuple[Tensor, ...], ...]  # per trial
    timing_ms: float | None = None
    device_name: str = ""


@dataclass(frozen=True)
class TritonRules:
    atol: float | None = None
    rtol: float | None = None
    weights: Weights = field(default_factory=Weights)
    speed_measured: bool = False  # a GPU timed both (else: correctness only, and the result says so)
    compiled_ahead: bool = False  # the interpreter ran the kernels: each must also compile for a GPU
    first_variant_trials: tuple[int, ...] = (0,)  # which trials the timed calls cycle through


def _records(records: list[Any]) -> list[dict[str, Any]]:
    return [r for r in records if isinstance(r, dict) and isinstance(r.get("t"), str)]


def _first(records: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((r for r in records if r["t"] == kind), None)


def _text(value: Any, cap: int = 500) -> str:
    return str(value)[-cap:] if value is not None else ""


def _error_status(error: str) -> Status:
    if "MemoryError" in error or "out of memory" in error or "can't allocate memory" in error:
        return Status.MEMORY_LIMIT
    return Status.RUNTIME_ERROR


def _last_line(error: str) -> str:
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1][:_MAX_EVIDENCE] if lines else "error"


def _ended_early(runner: dict[str, Any], records: list[dict[str, Any]]) -> tuple[Status, str]:
    """Why the report stops before `done`."""
    if runner.get("ending") == "deadline":
        return Status.TIMEOUT, "ran out of time"
    if runner.get("ending") == "overflow":
        return Status.OUTPUT_LIMIT, "reported more than the report cap"
    exit_record = _first(records, "exit")
    code = exit_record.get("code") if exit_record else None
    if isinstance(code, int) and code == -24:  # SIGXCPU: the CPU-time limit
        return Status.TIMEOUT, "used up its CPU time"
    if isinstance(code, int) and code == -9:  # SIGKILL: the kernel's OOM killer, or the sandbox's memory cap
        return Status.MEMORY_LIMIT, "the candidate process was killed (out of memory)"
    if isinstance(code, int) and code < 0:
        return Status.RUNTIME_ERROR, f"the candidate process was killed by signal {-code}"
    return Status.RUNTIME_ERROR, f"the candidate process exited early (code {code})"


def score_triton(
    reference: ReferenceRun,
    records: list[Any],
    runner: dict[str, Any],
    static_findings: Sequence[Finding],
    rules: TritonRules,
) -> Verdict:
    records = _records(records)
    weights = rules.weights
    findings = list(static_findings)
    judge_error = _first(records, "judge_error")
    if judge_error is not None:
        return Verdict(Status.SANDBOX_ERROR, 0.0, message=f"Triton harness failed: {_text(judge_error.get('error'))}")
    components = {"compiles": 0.0, "correctness": 0.0}
    load = _first(records, "load")
    if load is None or load.get("ok") is not True:
        if load is None:
            status, why = _ended_early(runner, records)
        else:
            error = _text(load.get("error"), 2000)
            status = Status.SYNTAX_ERROR if "SyntaxError" in error else _error_status(error)
            why = _last_line(error)
        return _finish(Verdict(status, 0.0, components=components, findings=findings, message=f"failed to load: {why}"))

    trials = _judge_trials(reference, records, runner, rules, findings)
    passed = sum(t.passed for t in trials)
    components["correctness"] = passed / len(trials)
    done = _first(records, "done") is not None
    compile_errors = _compile_errors(records, trials, rules)
    ran = any(t.status is not Status.RUNTIME_ERROR for t in trials)
    components["compiles"] = 1.0 if ran and not compile_errors else 0.0
    if passed:
        _judge_replays(reference, records, rules, findings)
    speed_term, speed_note = _judge_speed(reference, records, rules, findings, passed == len(trials), components)
    if speed_term is not None:
        components["speedup_bonus"] = speed_term
    maximum = weights.compiles + weights.correctness + (weights.max_speedup_bonus if speed_term is not None else 0)
    raw = weights.compiles * components["compiles"] + weights.correctness * components["correctness"]
    score = (raw + (speed_term or 0.0)) / maximum if maximum > 0 else 0.0

    if compile_errors == ["unfinished"]:
        status, why = _ended_early(runner, records)
        message = f"the ahead-of-time compile did not finish: {why}"
        return _finish(Verdict(status, 0.0, trials, components, findings, message))
    if compile_errors:
        message = f"{compile_errors[0]} does not compile for a GPU (the interpreter alone accepts it)"
        return _finish(Verdict(Status.SYNTAX_ERROR, 0.0, trials, components, findings, message))
    if passed == len(trials):
        status, message = Status.PASSED, f"all {len(trials)} trials passed"
    else:
        failing = [t for t in trials if not t.passed]
        status = Status.FAILED if any(t.status is Status.FAILED for t in failing) else failing[0].status
        message = (
            f"{passed} of {len(trials)} trials passed; first failure: trial {failing[0].index}: {failing[0].message}"
        )
    if not done and status is Status.PASSED:
        status, why = _ended_early(runner, records)
        message = f"the checks after the trials did not finish: {why}"
        score = 0.0
    message += f"; {speed_note}"
    return _finish(Verdict(status, min(max(score, 0.0), 1.0), trials, components, findings, message))


def _compile_errors(records: list[dict[str, Any]], trials: list[TestResult], rules: TritonRules) -> list[str]:
    """Why the launched kernels do not all compile for a GPU: [] when they do (or when the
    run was on a GPU, where launching is compiling), ["unfinished"] when the step did not end."""
    if not rules.compiled_ahead:
        return []
    launched: set[str] = set()
    for record in records:
        if record["t"] == "trial" and isinstance(record.get("launches"), dict):
            launched |= {str(name)[:100] for name, n in record["launches"].items() if isinstance(n, int) and n > 0}
    if not launched:
        return []
    if _first(records, "compiled") is None:
        return ["unfinished"]
    compiled, errors = set(), []
    for record in records:
        if record["t"] == "compile":
            name = _text(record.get("kernel"), 100)
            if record.get("ok") is True:
                compiled.add(name)
            else:
                errors.append(f"kernel {name}: {_last_line(_text(record.get('error'), 2000))}")
    errors += [f"kernel {name}: it was not compiled" for name in sorted(launched - compiled) if not errors]
    return errors


def _finish(verdict: Verdict) -> Verdict:
    verdict.findings = dedupe(verdict.findings)
    if any(f.severity is Severity.CRITICAL for f in verdict.findings):
        codes = ", ".join(sorted({f.code for f in verdict.findings if f.severity is Severity.CRITICAL}))
        verdict.status, verdict.score = Status.REJECTED, 0.0
        verdict.message = f"rejected ({codes}); {verdict.message}"
    return verdict


def _judge_trials(
    reference: ReferenceRun,
    records: list[dict[str, Any]],
    runner: dict[str, Any],
    rules: TritonRules,
    findings: list[Finding],
) -> list[TestResult]:
    by_index: dict[int, dict[str, Any]] = {}
    for r in records:
        if r["t"] == "trial" and type(r.get("index")) is int and r["index"] not in by_index:
            by_index[r["index"]] = r
    results, ops, launches_seen = [], Counter[str](), False
    for index, expected in enumerate(reference.outputs):
        record = by_index.get(index)
        name = f"trial {index}"
        if record is None:
            status, why = _ended_early(runner, records)
            results.append(TestResult(index, False, status, name, f"not run: {why}"))
            continue
        duration = record.get("ms") if isinstance(record.get("ms"), (int, float)) else 0.0
        launches = record.get("launches")
        if isinstance(launches, dict) and any(isinstance(n, int) and n > 0 for n in launches.values()):
            launches_seen = True
        if isinstance(record.get("ops"), dict):
            ops.update({str(k)[:80]: 1 for k in list(record["ops"])[:200]})
        if record.get("tampered") is True:
            findings.append(
                Finding(
                    "harness_tampering", Severity.CRITICAL, "forward removed the harness's launch or op hooks", name
                )
            )
        if record.get("inputs_changed") is True:
            findings.append(Finding("input_mutated", Severity.CRITICAL, "forward modified its inputs in place", name))
        if "error" in record:
            error = _text(record.get("error"), 2000)
            results.append(TestResult(index, False, _error_status(error), name, _last_line(error), duration))
            continue
        problem = record.get("problem")
        if problem is not None:
            code, text = [*problem, "", ""][:2] if isinstance(problem, list) else ("", problem)
            message = _text(text, _MAX_EVIDENCE)
            if code in _OUTPUT_PROBLEMS:
                findings.append(Finding(_OUTPUT_PROBLEMS[code], Severity.CRITICAL, message, name))
            results.append(TestResult(index, False, Status.FAILED, name, message, duration))
            continue
        try:
            got = decode_list(record.get("output"))
        except TensorError as exc:
            results.append(TestResult(index, False, Status.FAILED, name, f"malformed output: {exc}", duration))
            continue
        outcome = compare_all(list(expected), got, rules.atol, rules.rtol)
        status = Status.PASSED if outcome.equal else Status.FAILED
        results.append(TestResult(index, outcome.equal, status, name, outcome.message, duration))
    returned = any("error" not in record for record in by_index.values())  # a forward that returned
    if returned and not launches_seen:
        findings.append(
            Finding(
                "kernel_not_launched",
                Severity.CRITICAL,
                "no @triton.jit kernel of the candidate ran during forward",
                "launches observed: 0",
            )
        )
    computing = sorted(op for op in ops if op not in ALLOWED_OPS)
    if computing:
        findings.append(
            Finding(
                "torch_compute_at_runtime",
                Severity.CRITICAL,
                "forward ran torch compute ops outside its kernels",
                ", ".join(f"aten::{op}" for op in computing)[:_MAX_EVIDENCE],
            )
        )
    return results


def _judge_replays(
    reference: ReferenceRun, records: list[dict[str, Any]], rules: TritonRules, findings: list[Finding]
) -> None:
    """Determinism (the first trial again) and the ghost replay (kernels as no-ops)."""
    first = _first(records, "trial")
    try:
        original = decode_list(first.get("output")) if first else None
    except TensorError:
        original = None
    rerun = _first(records, "rerun")
    if original is not None and rerun is not None:
        try:
            again = decode_list(rerun.get("output"))
            outcome = compare_all(original, again, rules.atol, rules.rtol)
        except TensorError as exc:
            outcome = None
            findings.append(Finding("nondeterministic_output", Severity.CRITICAL, f"rerun sent {exc}", "trial 0"))
        if outcome is not None and not outcome.equal:
            findings.append(
                Finding(
                    "nondeterministic_output",
                    Severity.CRITICAL,
                    "the same inputs gave a different output on a second call",
                    outcome.message[:_MAX_EVIDENCE],
                )
            )
    ghost = _first(records, "ghost")
    if ghost is not None and "output" in ghost:
        try:
            replay = decode_list(ghost.get("output"))
        except TensorError:
            return
        if compare_all(list(reference.outputs[0]), replay, rules.atol, rules.rtol).equal:
            findings.append(
                Finding(
                    "fallback_output",
                    Severity.CRITICAL,
                    "with every kernel launch turned into a no-op (and fresh allocations poisoned) forward still "
                    "returned the right answer: the kernels do not compute it",
                    "ghost replay of trial 0",
                )
            )


def _judge_speed(
    reference: ReferenceRun,
    records: list[dict[str, Any]],
    rules: TritonRules,
    findings: list[Finding],
    all_passed: bool,
    components: dict[str, float],
) -> tuple[float | None, str]:
    """The speed term (None when speed is not measured) and a note for the message."""
    if not rules.speed_measured:
        return None, "speed not measured (CPU interpreter: correctness only)"
    timing = _first(records, "timing")
    ref_ms = reference.timing_ms
    if timing is None or not isinstance(ref_ms, (int, float)) or ref_ms <= 0:
        return 0.0, "speed not measured (no timing reported)"
    median = timing.get("median_ms")
    if not isinstance(median, (int, float)) or median <= 0:
        return 0.0, "speed not measured (malformed timing)"
    outputs = timing.get("outputs")
    if isinstance(outputs, list) and all_passed:  # right when checked, but also when timed?
        for n, value in enumerate(outputs[: len(rules.first_variant_trials)]):
            try:
                ok = compare_all(
                    list(reference.outputs[rules.first_variant_trials[n]]), decode_list(value), rules.atol, rules.rtol
                ).equal
            except TensorError:
                ok = False
            if not ok:
                findings.append(
                    Finding("timed_output_wrong", Severity.CRITICAL, "a timed call returned a wrong output", f"set {n}")
                )
                break
    speedup = ref_ms / median
    note = f"speedup {speedup:.2f}x ({ref_ms:.3f} ms reference, {median:.3f} ms candidate)"
    components.update({"speedup": speedup, "reference_ms": float(ref_ms), "candidate_ms": float(median)})
    if speedup > rules.weights.plausible_speedup:
        findings.append(
            Finding(
                "implausible_speedup",
                Severity.WARNING,
                f"faster than the plausible {rules.weights.plausible_speedup:g}x: flagged for audit, not paid",
                note,
            )
        )
        return 0.0, note
    if not all_passed:
        return 0.0, note
    return min(max(speedup - 1.0, 0.0), rules.weights.max_speedup_bonus), note
