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

Everything in `records` comes from the candidate's process: a report its harness could not
have written (rewards/triton_report.py) is a critical `forged_report`, and nothing in it can
make the result SANDBOX_ERROR (only the runner's meta can: its own failure). Correctness is
decided here, against reference outputs the candidate never saw; the rest of the evidence
(launches, ops, replays) can only lower a reward.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rewards.model import Finding, Severity, Status, TestResult, Verdict, dedupe
from rewards.tensors import Tensor, TensorError, compare_all, decode_list
from rewards.triton_report import Forged, check_candidate_report, check_compile_report
from sandbox.wire.messages import Ending, Tag

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
        "cat", "stack",  # data-movement glue between kernel outputs (the ghost replay catches glue alone)
    }
)  # fmt: skip

# aten ops a kernel launch itself runs (the interpreter copies its arguments to the host and
# back); anything else while a launch is on the stack is torch computing inside it
KERNEL_BOOKKEEPING = frozenset(
    {"empty", "empty_strided", "new_empty", "new_empty_strided", "set_", "copy_", "_to_copy"}
)
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


@dataclass(frozen=True)
class CompileRun:
    """The ahead-of-time compile job of the kernels the interpreter ran: the kernels it was
    sent, its records (untrusted: the candidate's module is imported there too) and its
    runner's meta. Judged apart from the candidate job's report, never mixed into it."""

    kernels: tuple[str, ...]
    records: list[Any]
    runner: dict[str, Any]


def _first(records: list[dict[str, Any]], tag: str) -> dict[str, Any] | None:
    return next((r for r in records if r["t"] == tag), None)


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
    """Why the report stops before its end: the harness's error in the candidate's process
    (the candidate's failure, whatever broke it), else what the runner saw."""
    crash = _first(records, Tag.HARNESS_ERROR)
    if crash is not None:
        error = _text(crash.get("error"), 2000)
        return _error_status(error), f"the harness failed in the candidate's process: {_last_line(error)}"
    if runner.get("ending") == Ending.DEADLINE:
        return Status.TIMEOUT, "ran out of time"
    if runner.get("ending") == Ending.OVERFLOW:
        return Status.OUTPUT_LIMIT, "reported more than the report cap"
    code = runner.get("exit_code")
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
    compiled: CompileRun | None = None,
) -> Verdict:
    """`records`: the candidate job's report; `runner`: its runner's meta (trusted: how the
    job ended, its exit code, the runner's own failure); `compiled`: the compile job's."""
    weights = rules.weights
    findings = list(static_findings)
    if runner.get("runner_error"):
        return Verdict(Status.SANDBOX_ERROR, 0.0, message=f"the Triton runner failed: {_text(runner['runner_error'])}")
    components = {"compiles": 0.0, "correctness": 0.0}
    try:
        check_candidate_report(records, len(reference.outputs), rules.speed_measured)
        if compiled is not None:
            check_compile_report(compiled.records, list(compiled.kernels))
    except Forged as exc:
        why = "the report holds records its harness did not write"
        findings.append(Finding("forged_report", Severity.CRITICAL, why, str(exc)[:_MAX_EVIDENCE]))
        return _finish(Verdict(Status.REJECTED, 0.0, components=components, findings=findings, message=why))
    load = _first(records, Tag.LOAD)
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
    done = _first(records, Tag.DONE) is not None
    compile_errors = _compile_errors(records, rules, compiled, done)
    ran = any(t.status is not Status.RUNTIME_ERROR for t in trials)
    components["compiles"] = 1.0 if ran and not compile_errors else 0.0
    if any(r.get("tampered") is True for r in records if r["t"] in (Tag.RERUN, Tag.GHOST)):
        findings.append(_tampering("the rerun or the ghost replay"))
    if passed:
        _judge_replays(reference, records, rules, findings)
    speed_term, speed_note = _judge_speed(reference, records, rules, findings, passed == len(trials), components)
    if speed_term is not None:
        components["speedup_bonus"] = speed_term
    maximum = weights.compiles + weights.correctness + (weights.max_speedup_bonus if speed_term is not None else 0)
    raw = weights.compiles * components["compiles"] + weights.correctness * components["correctness"]
    score = (raw + (speed_term or 0.0)) / maximum if maximum > 0 else 0.0

    if compile_errors == ["unfinished"]:
        status, why = _ended_early(compiled.runner, compiled.records) if compiled else _ended_early(runner, records)
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


def _tampering(where: str) -> Finding:
    return Finding(
        "harness_tampering",
        Severity.CRITICAL,
        "forward removed the harness's launch or op hooks, or changed its in-kernel state",
        where,
    )


def _compile_errors(
    records: list[dict[str, Any]], rules: TritonRules, compiled: CompileRun | None, done: bool
) -> list[str]:
    """Why the launched kernels do not all compile for a GPU: [] when they do (or when the
    run was on a GPU, where launching is compiling), ["unfinished"] when the step did not end."""
    if not rules.compiled_ahead:
        return []
    launched: set[str] = set()
    for record in records:
        if record["t"] == Tag.TRIAL:
            launched |= set(record["launches"])
    if not launched:
        return []
    if compiled is None:  # no launch was reported: the candidate's run stopped first, or it lost them
        return ["unfinished"] if not done else [f"kernel {sorted(launched)[0]}: its launch was not reported"]
    if _first(compiled.records, Tag.COMPILED) is None:
        return ["unfinished"]
    done_kernels, errors = set(), []
    for record in compiled.records:
        if record["t"] == Tag.COMPILE:
            name = record["kernel"]
            if record["ok"] is True:
                done_kernels.add(name)
            else:
                errors.append(f"kernel {name}: {_last_line(record['error'])}")
    errors += [f"kernel {name}: it was not compiled" for name in sorted(launched - done_kernels) if not errors]
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
    by_index = {r["index"]: r for r in records if r["t"] == Tag.TRIAL}  # each once: the report was checked
    results, ops, kernel_ops, launches_seen = [], Counter[str](), Counter[str](), False
    for index, expected in enumerate(reference.outputs):
        record = by_index.get(index)
        name = f"trial {index}"
        if record is None:
            status, why = _ended_early(runner, records)
            results.append(TestResult(index, False, status, name, f"not run: {why}"))
            continue
        duration = float(record.get("ms", 0.0))
        launches_seen = launches_seen or bool(record["launches"])
        ops.update(record["ops"].keys())
        kernel_ops.update(record["kernel_ops"].keys())
        if record.get("tampered") is True:
            findings.append(_tampering(name))
        if record.get("inputs_changed") is True:
            findings.append(Finding("input_mutated", Severity.CRITICAL, "forward modified its inputs in place", name))
        if "error" in record:
            error = record["error"]
            results.append(TestResult(index, False, _error_status(error), name, _last_line(error), duration))
            continue
        if record["problem"] is not None:
            code, text = record["problem"]
            message = _text(text, _MAX_EVIDENCE)
            if code in _OUTPUT_PROBLEMS:
                findings.append(Finding(_OUTPUT_PROBLEMS[code], Severity.CRITICAL, message, name))
            results.append(TestResult(index, False, Status.FAILED, name, message, duration))
            continue
        try:
            got = decode_list(record["output"])
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
    computing += sorted(f"{op} (inside a kernel launch)" for op in kernel_ops if op not in KERNEL_BOOKKEEPING)
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
    first = _first(records, Tag.TRIAL)
    try:
        original = decode_list(first.get("output")) if first else None
    except TensorError:
        original = None
    rerun = _first(records, Tag.RERUN)
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
    ghost = _first(records, Tag.GHOST)
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
    timing = _first(records, Tag.TIMING)
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
