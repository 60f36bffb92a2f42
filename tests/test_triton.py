"""Triton tasks end to end: real gRPC, real sandboxes, Triton's CPU interpreter.

Honest kernels for four problem kinds must pass with no finding; each cheating pattern
must be caught, by the static checks before anything runs or by the evidence gathered
while it runs. Runs on every backend (the service mounts its own torch and triton).
"""

from __future__ import annotations

import json
import os

import grpc
import pytest

from sandbox.api import pb
from sandbox.triton.samples import ELEMENTWISE, ELEMENTWISE_REF, HEADER, PROBLEMS, SOFTMAX_REF
from tests.helpers import finding_codes, limits, status_name
from tests.triton_data import CAUGHT_STATICALLY, DYNAMIC_CHEATS, STATIC_CHEATS
from trainer_plugin.client import SandboxClient

if os.environ.get("RFT_REQUIRE_TRITON") != "1":  # scripts/test (CI) requires them: a missing one fails
    pytest.importorskip("torch")
    pytest.importorskip("triton")


def triton_task(task_id: str, reference: str, code: str, **spec: object) -> pb.Task:
    lim = spec.pop("lim", None)
    return pb.Task(
        id=task_id,
        language=pb.TRITON,
        code=code,
        triton=pb.TritonSpec(reference=reference, trials=spec.pop("trials", 3), **spec),  # type: ignore[arg-type]
        limits=lim,
    )


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_honest_solution_passes_with_no_finding(client: SandboxClient, problem: str) -> None:
    reference, code = PROBLEMS[problem]
    result = client.score(triton_task(f"honest-{problem}", reference, f"```python\n{code}```\n"))
    assert status_name(result) == "PASSED", result.message
    assert list(result.findings) == []
    assert result.score == pytest.approx(1.0)
    assert dict(result.components) == {"compiles": 1.0, "correctness": 1.0}  # no speed term on the CPU
    assert "speed not measured" in result.message
    assert [t.passed for t in result.tests] == [True, True, True]


@pytest.mark.parametrize("code", sorted(STATIC_CHEATS))
def test_static_cheats_are_rejected_before_running(client: SandboxClient, code: str) -> None:
    result = client.score(triton_task(f"static-{code}", ELEMENTWISE_REF, STATIC_CHEATS[code]))
    assert status_name(result) == "REJECTED", result.message
    assert result.score == 0
    assert code in finding_codes(result)
    assert list(result.tests) == []  # nothing ran


@pytest.mark.parametrize(("cheat", "code"), [(c, CAUGHT_STATICALLY.get(c, c)) for c in sorted(DYNAMIC_CHEATS)])
def test_dynamic_cheats_are_caught_while_running(client: SandboxClient, cheat: str, code: str) -> None:
    result = client.score(triton_task(f"dynamic-{cheat}", ELEMENTWISE_REF, DYNAMIC_CHEATS[cheat]))
    assert status_name(result) == "REJECTED", result.message
    assert result.score == 0
    assert code in finding_codes(result)
    assert {f.severity for f in result.findings if f.code == code} == {pb.CRITICAL}
    if cheat in CAUGHT_STATICALLY:  # the allow-list rejects it before anything runs
        assert list(result.tests) == []


def test_kernel_only_the_interpreter_accepts_does_not_compile(client: SandboxClient) -> None:
    code = (
        HEADER
        + """

def double(v):
    return v * 2


@triton.jit
def double_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    tl.store(out_ptr + offsets, double(tl.load(x_ptr + offsets, mask=mask)), mask=mask)


class ModelNew(nn.Module):
    def forward(self, x):
        out = torch.empty_like(x)
        double_kernel[(triton.cdiv(x.numel(), 256),)](x, out, x.numel(), BLOCK=256)
        return out
"""
    )
    reference = (
        ELEMENTWISE_REF.replace("return torch.relu(x + y)", "return x * 2")
        .replace("def forward(self, x, y)", "def forward(self, x)")
        .replace("[torch.randn(size), torch.randn(size)]", "[torch.randn(size)]")
    )
    result = client.score(triton_task("interp-only", reference, code))
    assert status_name(result) == "SYNTAX_ERROR", result.message
    assert "does not compile for a GPU" in result.message and "double_kernel" in result.message
    assert result.score == 0
    assert all(t.passed for t in result.tests)  # the interpreter ran it correctly


def test_wrong_on_one_shape_gets_partial_credit(client: SandboxClient) -> None:
    # three programs of 1024: enough for the 3000 elements it was written for, not for 5000
    hard_coded = ELEMENTWISE.replace("[(triton.cdiv(n, 1024),)]", "[(3,)]")
    task = triton_task("one-shape", ELEMENTWISE_REF, hard_coded, shapes_json=[json.dumps({"size": 5000})])
    result = client.score(task)
    assert status_name(result) == "FAILED", result.message
    assert [t.passed for t in result.tests] == [True, True, True, False]
    assert result.components["correctness"] == pytest.approx(3 / 4)
    assert result.score == pytest.approx((0.1 + 0.3 * 3 / 4) / 0.4)


def test_wrong_answer_fails_without_findings(client: SandboxClient) -> None:
    wrong = ELEMENTWISE.replace("tl.maximum(x + y, 0.0)", "tl.maximum(x - y, 0.0)")
    result = client.score(triton_task("wrong", ELEMENTWISE_REF, wrong))
    assert status_name(result) == "FAILED"
    assert "elements differ" in result.tests[0].message
    assert list(result.findings) == []
    assert result.score == pytest.approx(0.1 / 0.4)  # it compiles; no trial passed


def test_hang_is_a_timeout(client: SandboxClient) -> None:
    hang = ELEMENTWISE.replace("return out", "while True:\n            pass")
    result = client.score(triton_task("hang", ELEMENTWISE_REF, hang, lim=limits(task_ms=4000)))
    assert status_name(result) == "TIMEOUT", result.message
    assert result.components["correctness"] == 0
    assert result.score == pytest.approx(0.1 / 0.4)  # its kernel launched, and compiles: that much is paid


def test_load_error_is_a_runtime_error(client: SandboxClient) -> None:
    broken = ELEMENTWISE.replace("class ModelNew", "raise ValueError('nope')\n\n\nclass ModelNew")
    result = client.score(triton_task("load-error", ELEMENTWISE_REF, broken))
    assert status_name(result) == "RUNTIME_ERROR"
    assert "ValueError: nope" in result.message
    syntax = client.score(triton_task("syntax", ELEMENTWISE_REF, "def broken(:\n"))
    assert status_name(syntax) == "SYNTAX_ERROR"


def test_broken_reference_is_an_invalid_task(client: SandboxClient) -> None:
    broken = SOFTMAX_REF.replace("torch.softmax(x, dim=1)", "torch.softmax(x, dim=7)")
    with pytest.raises(grpc.RpcError) as raised:
        client.score(triton_task("bad-ref", broken, PROBLEMS["softmax"][1]))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "task.triton.reference" in raised.value.details() and "IndexError" in raised.value.details()


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"reference": ""}, "task.triton.reference"),
        ({"reference": "def (:"}, "task.triton.reference"),
        ({"trials": 1000}, "task.triton.trials"),
        ({"shapes_json": ["[1]"]}, "task.triton.shapes_json[0]"),
        ({"shapes_json": ["{not json"]}, "task.triton.shapes_json[0]"),
        ({"atol": -1.0}, "task.triton.atol"),
        ({"weights": pb.TritonWeights(compiles=-2)}, "task.triton.weights.compiles"),
    ],
)
def test_bad_triton_specs_are_rejected_naming_the_field(client: SandboxClient, spec: dict, field: str) -> None:
    values = {"reference": ELEMENTWISE_REF, **spec}
    task = triton_task("bad-spec", values.pop("reference"), ELEMENTWISE, **values)
    with pytest.raises(grpc.RpcError) as raised:
        client.score(task)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(field), raised.value.details()


def test_missing_spec_is_rejected(client: SandboxClient) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        client.score(pb.Task(id="no-spec", language=pb.TRITON, code=ELEMENTWISE))
    assert raised.value.details().startswith("task.triton")


def test_batch_shares_one_reference_run(client: SandboxClient) -> None:
    reference = ELEMENTWISE_REF.replace("size = 3000", "size = 2900")  # a problem no other test uses
    tasks = [triton_task(f"batch-{n}", reference, code) for n, code in enumerate([ELEMENTWISE] * 3)]
    tasks.append(triton_task("batch-cheat", reference, DYNAMIC_CHEATS["output_aliases_input"]))
    results = {r.id: r for r in client.score_batch(tasks)}
    assert [status_name(results[f"batch-{n}"]) for n in range(3)] == ["PASSED"] * 3
    assert status_name(results["batch-cheat"]) == "REJECTED"


def test_custom_weights_change_the_score(client: SandboxClient) -> None:
    wrong = ELEMENTWISE.replace("tl.maximum(x + y, 0.0)", "tl.maximum(x - y, 0.0)")
    weights = pb.TritonWeights(compiles=1.0, correctness=1.0)
    result = client.score(triton_task("weights", ELEMENTWISE_REF, wrong, weights=weights))
    assert result.score == pytest.approx(0.5)


def test_memory_hog_is_a_memory_limit(client: SandboxClient) -> None:
    hog = ELEMENTWISE.replace(
        "out = torch.empty_like(x)", "out = torch.empty_like(x)\n        hog = torch.ones(1 << 32)"
    )
    result = client.score(triton_task("hog", ELEMENTWISE_REF, hog, lim=limits(memory=256 << 20)))
    assert status_name(result) == "MEMORY_LIMIT", result.message
    assert result.components["correctness"] == 0
