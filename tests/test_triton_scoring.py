"""Triton scoring on the trusted side: tensor decoding, comparison, the score formula.

Pure functions over records shaped like the sandbox's. The speed path is exercised
here with synthetic timing records: CI has no GPU to time anything on.
"""

from __future__ import annotations

import base64
import json
import random

import numpy as np
import pytest

from rewards.model import Severity, Status
from rewards.tensors import MAX_ELEMENTS, TensorError, compare, decode
from rewards.triton import CompileRun, ReferenceRun, TritonRules, Weights, score_triton
from sandbox.api import pb
from sandbox.triton.plan import TritonDevice, prepare_triton


def tensor(values: list[float] | np.ndarray, dtype: str = "float32") -> dict:
    array = np.asarray(values, dtype={"float32": "<f4", "float16": "<f2", "int64": "<i8"}[dtype])
    return {"$tensor": {"dtype": dtype, "shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}}


def test_decode_checks_everything_before_reading() -> None:
    good = tensor([1.0, 2.0])
    assert decode(good).array.tolist() == [1.0, 2.0]
    bad = [
        {"$tensor": {**good["$tensor"], "dtype": "complex64"}},
        {"$tensor": {**good["$tensor"], "shape": [3]}},  # 8 bytes are not 3 floats
        {"$tensor": {**good["$tensor"], "shape": [-1, -2]}},
        {"$tensor": {**good["$tensor"], "shape": [MAX_ELEMENTS + 1]}},
        {"$tensor": {**good["$tensor"], "data": "***"}},
        {"$tensor": {**good["$tensor"], "shape": [True, 2]}},
        {"tensor": good["$tensor"]},
        [1.0, 2.0],
    ]
    for value in bad:
        with pytest.raises(TensorError):
            decode(value)


def test_bfloat16_travels_as_bit_patterns() -> None:
    bits = (np.array([1.5, -2.0], dtype=np.float32).view(np.uint32) >> 16).astype("<u2")
    value = {"$tensor": {"dtype": "bfloat16", "shape": [2], "data": base64.b64encode(bits.tobytes()).decode()}}
    assert decode(value).array.tolist() == [1.5, -2.0]


def test_compare_tolerances_nan_and_dtypes() -> None:
    exp = decode(tensor([1.0, float("nan"), float("inf")]))
    assert compare(exp, decode(tensor([1.00005, float("nan"), float("inf")])), None, None).equal
    assert not compare(exp, decode(tensor([1.001, float("nan"), float("inf")])), None, None).equal
    assert not compare(exp, decode(tensor([1.0, 0.0, float("inf")])), None, None).equal  # NaN must stay NaN
    assert not compare(exp, decode(tensor([1.0, float("nan"), -float("inf")])), None, None).equal
    assert compare(exp, decode(tensor([1.001, float("nan"), float("inf")])), 1e-2, None).equal
    half = decode(tensor([1.0, 2.0], "float16"))
    assert compare(half, decode(tensor([1.005, 2.0], "float16")), None, None).equal  # 1e-2 for half
    mismatch = compare(half, decode(tensor([1.0, 2.0])), None, None)
    assert not mismatch.equal and "float16" in mismatch.message
    ints = decode(tensor([1, 2], "int64"))
    assert not compare(ints, decode(tensor([1, 3], "int64")), None, None).equal


REFERENCE = ReferenceRun(((decode(tensor([1.0, 2.0])),), (decode(tensor([3.0, 4.0])),)), timing_ms=2.0)
GPU = TritonRules(speed_measured=True, first_variant_trials=(0, 1))
CPU_RULES = TritonRules()


def trial(number: int, values: list[float], **fields: object) -> dict:
    """A trial record as the harness writes it (sandbox/runner/tritonrun.py)."""
    record = {"t": "trial", "index": number, "ms": 1.5, "tampered": False, "inputs_changed": False, "problem": None}
    record |= {"output": [tensor(values)], "launches": {"k": 1}, "ops": {"empty": 1}, "kernel_ops": {"copy_": 2}}
    return record | fields


def candidate_records(outputs: list[list[float]], median_ms: float | None = None, **extra: object) -> list[dict]:
    records: list[dict] = [{"t": "load", "ok": True}]
    for index, values in enumerate(outputs):
        records.append(trial(index, values))
        if index == 0:
            records.append({"t": "launch", "kernel": "k", "signature": {"x": "*fp32"}, "constants": {}, "options": {}})
    records.append({"t": "rerun", "output": [tensor(outputs[0])], "tampered": False})
    records.append({"t": "ghost", "output": [tensor([float("nan"), float("nan")])], "tampered": False})
    if median_ms is not None:
        timed = extra.pop("timed", outputs)
        outs = [[tensor(v)] for v in timed]
        records.append({"t": "timing", "median_ms": median_ms, "spread": 0.1, "device_name": "H100", "outputs": outs})
    records.append({"t": "done"})
    return records


def test_score_formula_with_speed() -> None:
    verdict = score_triton(REFERENCE, candidate_records([[1, 2], [3, 4]], median_ms=1.0), {}, [], GPU)
    assert verdict.status is Status.PASSED
    assert verdict.components["speedup_bonus"] == pytest.approx(1.0)  # 2x: bonus 1
    assert verdict.score == pytest.approx((0.1 + 0.3 + 1.0) / 2.4)
    assert verdict.components["speedup"] == pytest.approx(2.0)
    assert (verdict.components["reference_ms"], verdict.components["candidate_ms"]) == (2.0, 1.0)
    capped = score_triton(REFERENCE, candidate_records([[1, 2], [3, 4]], median_ms=0.4), {}, [], GPU)
    assert capped.components["speedup_bonus"] == pytest.approx(2.0)  # 5x, capped at 2
    assert capped.score == pytest.approx(1.0)
    slower = score_triton(REFERENCE, candidate_records([[1, 2], [3, 4]], median_ms=4.0), {}, [], GPU)
    assert slower.components["speedup_bonus"] == 0
    assert slower.score == pytest.approx(0.4 / 2.4)


def test_speed_is_paid_only_when_every_trial_passes() -> None:
    verdict = score_triton(REFERENCE, candidate_records([[1, 2], [0, 0]], median_ms=0.5), {}, [], GPU)
    assert verdict.status is Status.FAILED
    assert verdict.components["speedup_bonus"] == 0
    assert verdict.score == pytest.approx((0.1 + 0.15) / 2.4)


def test_implausible_speedup_is_flagged_not_paid() -> None:
    verdict = score_triton(REFERENCE, candidate_records([[1, 2], [3, 4]], median_ms=0.1), {}, [], GPU)
    assert verdict.status is Status.PASSED
    assert [f.code for f in verdict.findings] == ["implausible_speedup"]
    assert verdict.components["speedup_bonus"] == 0
    rules = TritonRules(speed_measured=True, first_variant_trials=(0, 1), weights=Weights(plausible_speedup=50))
    paid = score_triton(REFERENCE, candidate_records([[1, 2], [3, 4]], median_ms=0.1), {}, [], rules)
    assert paid.components["speedup_bonus"] == 2.0


def test_wrong_output_of_a_timed_call_rejects() -> None:
    records = candidate_records([[1, 2], [3, 4]], median_ms=0.5, timed=[[1, 2], [9, 9]])
    verdict = score_triton(REFERENCE, records, {}, [], GPU)
    assert verdict.status is Status.REJECTED and verdict.score == 0
    assert "timed_output_wrong" in {f.code for f in verdict.findings}


def test_cpu_score_has_no_speed_term() -> None:
    verdict = score_triton(REFERENCE, candidate_records([[1, 2], [3, 4]]), {}, [], TritonRules())
    assert verdict.score == 1.0 and "speedup_bonus" not in verdict.components
    assert "speed not measured" in verdict.message


def test_honest_report_has_no_finding() -> None:
    verdict = score_triton(REFERENCE, candidate_records([[1, 2], [3, 4]]), {"ending": "closed"}, [], TritonRules())
    assert verdict.status is Status.PASSED and verdict.findings == []


# ---- the report: only what its harness could have written is read ---------------------------


def forged(records: list, runner: dict | None = None, rules: TritonRules = CPU_RULES) -> str:
    """The evidence of the forged_report finding (asserting the verdict is a rejection)."""
    verdict = score_triton(REFERENCE, records, runner or {"ending": "closed", "exit_code": 0}, [], rules)
    assert verdict.status is Status.REJECTED and verdict.score == 0, verdict.message
    found = [f for f in verdict.findings if f.code == "forged_report"]
    assert [f.severity for f in found] == [Severity.CRITICAL], verdict.findings
    return found[0].evidence


def test_a_verdict_written_by_the_child_is_a_forged_report_not_a_sandbox_error() -> None:
    for tag in ("judge_error", "verdict", "pass", "compiled", "compile"):
        assert "not a record this harness writes" in forged([{"t": "load", "ok": True}, {"t": tag, "error": "x"}])
    judge_error = candidate_records([[1, 2], [3, 4]])
    judge_error.insert(2, {"t": "judge_error", "error": "the harness failed"})
    assert "record 2" in forged(judge_error)


def test_records_out_of_sequence_are_a_forged_report() -> None:
    honest = candidate_records([[1, 2], [3, 4]])
    duplicate = [*honest[:2], trial(0, [1, 2]), *honest[2:]]
    assert "trial 0 where trial 1 was due" in forged(duplicate)
    swapped = [honest[0], trial(1, [3, 4]), trial(0, [1, 2]), *honest[4:]]
    assert "trial 1 where trial 0 was due" in forged(swapped)
    assert "after the end" in forged([*honest, {"t": "done"}])
    assert "after the end" in forged([*honest, trial(2, [5, 6])])
    extra_trial = [*honest[:4], trial(2, [5, 6]), *honest[4:]]
    assert "trial 2 of a job of 2 trials" in forged(extra_trial)
    assert "ghost was due" in forged([r for r in honest if r["t"] != "ghost"])
    assert "out of order" in forged([honest[0], *honest[4:]])  # done before the trials
    assert "must start with load" in forged(honest[1:])
    launch = honest[2]
    assert "second launch record" in forged([*honest[:4], launch, *honest[4:]])
    assert "out of order" in forged([honest[0], launch, *honest[1:2], *honest[3:]])  # before any trial
    failed_load = [{"t": "load", "ok": False, "error": "ImportError: x"}, trial(0, [1, 2]), {"t": "done"}]
    assert "done was due" in forged(failed_load)


def test_records_of_another_shape_are_a_forged_report() -> None:
    honest = candidate_records([[1, 2], [3, 4]])

    def with_trial(**fields: object) -> list:
        return [honest[0], trial(0, [1, 2], **fields), *honest[2:]]

    for bad in (
        {"verdict": "pass"},  # an unknown field
        {"index": True},
        {"ms": -1},
        {"tampered": "no"},
        {"launches": {"k": 0}},
        {"launches": {"k" * 201: 1}},  # sizes are capped
        {"ops": {f"op{n}": 1 for n in range(300)}},
        {"problem": ["not_tensor"]},
        {"problem": ["aliases_input", "shares memory"]},  # a problem and an output
        {"error": "x" * 2001},
        {"error": "ValueError"},  # an error and the checks of a trial that returned
    ):
        assert "not the fields the harness writes" in forged(with_trial(**bad)), bad
    no_kernel_ops = trial(0, [1, 2])
    del no_kernel_ops["kernel_ops"]
    assert "not the fields" in forged([honest[0], no_kernel_ops, *honest[2:]])
    assert "not a record" in forged([honest[0], 7, *honest[1:]])
    assert "not the fields" in forged([{"t": "load", "ok": True, "error": "both"}, *honest[1:]])


def test_an_exit_record_from_the_child_is_not_believed() -> None:
    """How the child ended is the runner's word (its meta), never a record of the child's."""
    records = [{"t": "load", "ok": True}, {"t": "exit", "code": -24}]
    assert "'exit' is not a record this harness writes" in forged(records, {"ending": "closed", "exit_code": 3})
    loaded = [{"t": "load", "ok": True}]
    stopped = score_triton(REFERENCE, loaded, {"ending": "closed", "exit_code": -24}, [], CPU_RULES)
    assert stopped.status is Status.TIMEOUT and "CPU time" in stopped.tests[0].message
    crashed = score_triton(REFERENCE, loaded, {"ending": "closed", "exit_code": 3}, [], CPU_RULES)
    assert crashed.status is Status.RUNTIME_ERROR and "code 3" in crashed.tests[0].message


def test_the_harness_failing_in_the_candidates_process_is_the_candidates_failure() -> None:
    records = [{"t": "load", "ok": True}, trial(0, [1, 2]), {"t": "harness_error", "error": "TypeError: boom"}]
    verdict = score_triton(REFERENCE, records, {"ending": "closed", "exit_code": 0}, [], CPU_RULES)
    assert verdict.status is Status.RUNTIME_ERROR, verdict.message
    assert "the harness failed in the candidate's process: TypeError: boom" in verdict.tests[1].message
    assert "after the end" in forged([*records, {"t": "done"}])


def test_only_the_runners_own_failure_is_a_sandbox_error() -> None:
    verdict = score_triton(REFERENCE, [], {"ending": "closed", "runner_error": "not a Triton runner"}, [], CPU_RULES)
    assert verdict.status is Status.SANDBOX_ERROR


def test_a_report_cut_short_is_judged_by_how_the_runner_saw_it_end() -> None:
    honest = candidate_records([[1, 2], [3, 4]])
    verdict = score_triton(REFERENCE, honest[:3], {"ending": "deadline"}, [], CPU_RULES)
    assert verdict.status is Status.TIMEOUT and verdict.findings == []
    assert [t.passed for t in verdict.tests] == [True, False]


def test_the_compile_report_is_checked_against_the_kernels_sent() -> None:
    records = candidate_records([[1, 2], [3, 4]])
    ok = [{"t": "compile", "kernel": "k", "ok": True, "stages": ["ptx", "ttir"]}, {"t": "compiled"}]
    rules = TritonRules(compiled_ahead=True)
    passed = score_triton(REFERENCE, records, {"ending": "closed"}, [], rules, CompileRun(("k",), ok, {}))
    assert passed.status is Status.PASSED and passed.findings == []
    for bad in (
        [{"t": "compile", "kernel": "other", "ok": True, "stages": ["ptx"]}, {"t": "compiled"}],
        [*ok, {"t": "compiled"}],
        [{"t": "compiled"}],
        [{"t": "compile", "kernel": "k", "ok": True, "stages": ["ptx"], "error": "x"}, {"t": "compiled"}],
        [{"t": "judge_error", "error": "x"}],
    ):
        compiled = CompileRun(("k",), bad, {"ending": "closed"})
        verdict = score_triton(REFERENCE, records, {"ending": "closed"}, [], rules, compiled)
        assert verdict.status is Status.REJECTED and "forged_report" in {f.code for f in verdict.findings}, bad
    failed = [{"t": "compile", "kernel": "k", "ok": False, "error": "CompilationError: nope"}, {"t": "compiled"}]
    verdict = score_triton(REFERENCE, records, {}, [], rules, CompileRun(("k",), failed, {}))
    assert verdict.status is Status.SYNTAX_ERROR and "nope" in verdict.message
    late = score_triton(REFERENCE, records, {}, [], rules, CompileRun(("k",), ok[:1], {"ending": "deadline"}))
    assert late.status is Status.TIMEOUT and "did not finish" in late.message


def test_torch_compute_inside_a_launch_is_caught() -> None:
    records = candidate_records([[1, 2], [3, 4]])
    records[1] = trial(0, [1, 2], kernel_ops={"copy_": 1, "add": 1, "relu": 1})
    verdict = score_triton(REFERENCE, records, {"ending": "closed"}, [], CPU_RULES)
    assert verdict.status is Status.REJECTED
    [finding] = [f for f in verdict.findings if f.code == "torch_compute_at_runtime"]
    assert finding.evidence == "aten::add (inside a kernel launch), aten::relu (inside a kernel launch)"
    glue = candidate_records([[1, 2], [3, 4]])
    glue[1] = trial(0, [1, 2], ops={"empty": 2, "cat": 1, "stack": 1})
    assert score_triton(REFERENCE, glue, {"ending": "closed"}, [], CPU_RULES).status is Status.PASSED


def test_tampering_in_a_replay_is_caught() -> None:
    records = candidate_records([[1, 2], [3, 4]])
    ghost = next(r for r in records if r["t"] == "ghost")
    ghost["tampered"] = True
    verdict = score_triton(REFERENCE, records, {"ending": "closed"}, [], CPU_RULES)
    assert verdict.status is Status.REJECTED and "harness_tampering" in {f.code for f in verdict.findings}


def test_garbage_outputs_score_nothing() -> None:
    records = [{"t": "load", "ok": True}, trial(0, [1, 2], output=[{"$tensor": "nope"}]), trial(1, [3, 4], output=[7])]
    verdict = score_triton(REFERENCE, records, {"ending": "closed"}, [], TritonRules())
    assert verdict.status is Status.FAILED
    assert "malformed output" in verdict.tests[0].message


def test_candidate_job_carries_inputs_never_outputs() -> None:
    task = pb.Task(id="t", language=pb.TRITON, code="class ModelNew: pass\n", triton=pb.TritonSpec(reference="x = 1\n"))
    limits = {"task_ms": 1000, "memory_bytes": 1 << 29}
    plan, early = prepare_triton(task, limits, TritonDevice())
    assert plan is not None and early is not None  # statically rejected (no kernel), but planned
    from sandbox.triton.plan import read_reference

    records = [
        {"t": "trial", "index": n, "init": [], "inputs": [tensor([1.0])], "output": [tensor([42.0])]} for n in range(5)
    ]
    reference = read_reference(records, plan.reference, "closed")
    job = json.dumps(plan.candidate_job(reference))
    assert '"output"' not in job
    assert tensor([42.0])["$tensor"]["data"] not in job
    assert "x = 1" not in job  # nor the reference source


def test_no_report_the_child_can_write_makes_a_sandbox_error_or_raises() -> None:
    """Mutations of an honest report (records dropped, repeated, moved, fields retyped or
    removed): each is judged as the candidate's, never SANDBOX_ERROR, never an exception."""
    rng = random.Random(7)
    honest = candidate_records([[1, 2], [3, 4]])
    odd_values = [None, True, -1, 2**70, 1.5, "", "x" * 3000, [], {}, [7], {"$tensor": {}}, {"k": 0}]
    for _ in range(2000):
        records = json.loads(json.dumps(honest))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(records))
            move = rng.randrange(5)
            if move == 0:
                del records[at]
            elif move == 1:
                records.insert(rng.randrange(len(records) + 1), records[at])
            elif move == 2 and isinstance(records[at], dict):
                records[at][rng.choice([*records[at], "extra"])] = rng.choice(odd_values)
            elif move == 3 and isinstance(records[at], dict) and len(records[at]) > 1:
                del records[at][rng.choice([k for k in records[at] if k != "t"])]
            else:
                records[at] = rng.choice(odd_values)
            if not records:
                break
        runner = rng.choice([{}, {"ending": "closed", "exit_code": 0}, {"ending": "deadline"}, {"exit_code": -9}])
        verdict = score_triton(REFERENCE, records, runner, [], rng.choice([CPU_RULES, GPU]))
        assert verdict.status is not Status.SANDBOX_ERROR, records
