"""Triton scoring on the trusted side: tensor decoding, comparison, the score formula.

Pure functions over records shaped like the sandbox's. The speed path is exercised
here with synthetic timing records: CI has no GPU to time anything on.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from rewards.model import Status
from rewards.tensors import MAX_ELEMENTS, TensorError, compare, decode
from rewards.triton import ReferenceRun, TritonRules, Weights, score_triton
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


def candidate_records(outputs: list[list[float]], median_ms: float | None = None, **extra: object) -> list[dict]:
    records: list[dict] = [{"t": "load", "ok": True}]
    for index, values in enumerate(outputs):
        records.append(
            {"t": "trial", "index": index, "output": [tensor(values)], "launches": {"k": 1}, "ops": {"empty": 1}}
        )
    records.append({"t": "rerun", "output": [tensor(outputs[0])]})
    records.append({"t": "ghost", "output": [tensor([float("nan"), float("nan")])]})
    if median_ms is not None:
        timed = extra.pop("timed", outputs)
        records.append({"t": "timing", "median_ms": median_ms, "outputs": [[tensor(v)] for v in timed]})
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


def test_harness_failure_is_ours_not_the_candidates() -> None:
    verdict = score_triton(REFERENCE, [{"t": "judge_error", "error": "boom"}], {}, [], TritonRules())
    assert verdict.status is Status.SANDBOX_ERROR


def test_garbage_records_score_nothing() -> None:
    records = [
        {"t": "load", "ok": True},
        {"t": "trial", "index": 0, "output": "nope", "launches": {"k": 1}},
        7,
        None,
        {"t": 3},
    ]
    verdict = score_triton(REFERENCE, records, {"ending": "closed"}, [], TritonRules())
    assert verdict.status is Status.FAILED
    assert verdict.score == pytest.approx(0.25)  # it loaded and did not crash; nothing passed
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
