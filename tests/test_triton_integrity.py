"""The Triton lane's integrity: what the candidate's process says, and where it runs.

Real gRPC, real sandboxes, both backends. The hostile candidates (tests/triton_hostile.py)
do what the static allow-list rejects, so most tests here score them on a service with the
static gate off (`ServiceConfig.triton_static_gate`, tests only): what they prove is that the
dynamic layer catches each one on its own. Honest code that used to be penalised runs on the
ordinary service, gate on.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sandbox.api import pb
from sandbox.triton.samples import ELEMENTWISE, ELEMENTWISE_REF, MATMUL_REF, SOFTMAX_REF
from tests.conftest import start_server
from tests.helpers import finding_codes, status_name
from tests.test_triton import triton_task
from tests.triton_hostile import (
    AUTOTUNED_MATMUL,
    CAT_GLUE,
    CAT_REF,
    FORGED_REPORTS,
    GLUE_ONLY,
    GLUE_ONLY_REF,
    HARNESS_SABOTAGE,
    HEURISTIC_SOFTMAX,
    MEMORY_HONEST,
    MEMORY_REF,
    MEMORY_SCAN,
    SANDBOX_ID_CANDIDATE,
    SANDBOX_ID_REF,
    UNSEEN_TORCH,
)
from trainer_plugin.client import ClientOptions, SandboxClient

if os.environ.get("RFT_REQUIRE_TRITON") != "1":
    pytest.importorskip("torch")
    pytest.importorskip("triton")


@pytest.fixture(scope="module")
def ungated(backend_name: str) -> Iterator[SandboxClient]:
    """A service that ignores static findings: the dynamic layer alone decides."""
    embedded = start_server(backend_name, triton_static_gate=False)
    client = SandboxClient(ClientOptions(embedded.target, timeout=300))
    yield client
    client.close()
    embedded.stop()


def test_the_ungated_service_still_pays_honest_code(ungated: SandboxClient) -> None:
    result = ungated.score(triton_task("ungated-honest", ELEMENTWISE_REF, ELEMENTWISE))
    assert status_name(result) == "PASSED", result.message
    assert list(result.findings) == [] and result.score == 1.0


# ---- the report: only outputs are believed ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(FORGED_REPORTS))
def test_records_the_harness_did_not_write_are_a_forged_report(ungated: SandboxClient, name: str) -> None:
    result = ungated.score(triton_task(name, ELEMENTWISE_REF, FORGED_REPORTS[name]))
    assert status_name(result) == "REJECTED", result.message
    assert result.score == 0
    assert {f.severity for f in result.findings if f.code == "forged_report"} == {pb.CRITICAL}


def test_a_harness_broken_from_inside_is_the_candidates_failure(ungated: SandboxClient) -> None:
    result = ungated.score(triton_task("sabotage", ELEMENTWISE_REF, HARNESS_SABOTAGE))
    assert status_name(result) == "RUNTIME_ERROR", result.message
    assert result.score < 1.0
    assert "harness" in result.message


# ---- torch work the recorder did not see -----------------------------------------------------


@pytest.mark.parametrize("name", sorted(UNSEEN_TORCH))
def test_torch_hidden_from_the_recorder_is_seen(ungated: SandboxClient, name: str) -> None:
    code, candidate = UNSEEN_TORCH[name]
    result = ungated.score(triton_task(name, ELEMENTWISE_REF, candidate))
    assert status_name(result) == "REJECTED", result.message
    assert result.score == 0
    assert code in finding_codes(result), result.message


# ---- reference outputs never in a candidate's lineage ----------------------------------------


def test_reference_and_candidate_run_in_different_sandboxes(ungated: SandboxClient) -> None:
    """The reference passes its PID namespace (its sandbox) to the candidate as an init input;
    the candidate answers right only from another sandbox."""
    result = ungated.score(triton_task("lineage", SANDBOX_ID_REF, SANDBOX_ID_CANDIDATE))
    assert status_name(result) == "PASSED", result.message


def test_reference_outputs_are_not_in_the_candidates_memory(ungated: SandboxClient) -> None:
    """The first candidate after a new reference scans its own memory for the reference's
    output of its very inputs: it used to find it (its runner had read that report)."""
    result = ungated.score(triton_task("memory-scan", MEMORY_REF, MEMORY_SCAN))
    assert status_name(result) == "FAILED", result.message
    assert [t.passed for t in result.tests] == [False, False, False]


def test_a_candidates_outputs_are_not_in_the_next_candidates_memory(ungated: SandboxClient) -> None:
    """The same scan after an honest candidate of the same problem ran on the same runner
    (one Triton worker): the runner forwarded that candidate's report, outputs and all."""
    reference = MEMORY_REF.replace("size = 30", "size = 33")  # a problem of its own: a new reference
    honest = ungated.score(triton_task("memory-honest", reference, MEMORY_HONEST))
    assert status_name(honest) == "PASSED", honest.message
    result = ungated.score(triton_task("memory-scan-after", reference, MEMORY_SCAN))
    assert status_name(result) == "FAILED", result.message
    assert [t.passed for t in result.tests] == [False, False, False]


# ---- honest code that used to be penalised ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reference", "code"),
    [("autotuned-matmul", MATMUL_REF, AUTOTUNED_MATMUL), ("heuristic-softmax", SOFTMAX_REF, HEURISTIC_SOFTMAX)],
    ids=["matmul", "softmax"],
)
def test_autotuned_kernels_run_in_the_interpreter(client: SandboxClient, name: str, reference: str, code: str) -> None:
    result = client.score(triton_task(name, reference, f"```python\n{code}```\n"))
    assert status_name(result) == "PASSED", result.message
    assert list(result.findings) == []
    assert dict(result.components) == {"compiles": 1.0, "correctness": 1.0}


def test_kernel_outputs_joined_by_cat_and_stack_pass(client: SandboxClient) -> None:
    """Through the static allow-list too: glue is allowed on both sides."""
    result = client.score(triton_task("cat-glue", CAT_REF, CAT_GLUE))
    assert status_name(result) == "PASSED", result.message
    assert list(result.findings) == []


def test_an_answer_made_by_glue_alone_is_caught(client: SandboxClient) -> None:
    """The allow-list lets glue through; the ghost replay is what catches glue alone."""
    result = client.score(triton_task("glue-only", GLUE_ONLY_REF, GLUE_ONLY))
    assert status_name(result) == "REJECTED", result.message
    assert "fallback_output" in finding_codes(result)


_LAUNCHES = """
import json, os, sys
sys.path[:0] = [os.path.join(sys.argv[1], "sandbox", "runner"), os.path.join(sys.argv[1], "sandbox", "wire")]
os.chdir(sys.argv[2])
import torch, tritonrun
job = json.loads(sys.stdin.read())
tritonrun.run({**job, "device": "cpu"}, lambda record: print(json.dumps(record)))
"""


def test_the_compile_job_gets_the_config_that_ran(tmp_path: Path) -> None:
    """The harness itself, in a process of its own with the interpreter: the launch it
    reports (what the ahead-of-time compile gets) is the autotuner's first config."""
    data = base64.b64encode(np.arange(32, dtype="<f4").tobytes()).decode()
    inputs = {"$tensor": {"dtype": "float32", "shape": [4, 8], "data": data}}
    job = {
        "role": "candidate",
        "code": AUTOTUNED_MATMUL,
        "trials": [{"init": [8, 6], "inputs": [inputs], "variant": 0}],
        "init_seed": 42,
        "timing": None,
    }
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _LAUNCHES, root, str(tmp_path)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    launches = [r for r in records if r["t"] == "launch"]
    assert len(launches) == 1, records
    assert {k: launches[0]["constants"][k] for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K")} == {
        "BLOCK_M": 16,
        "BLOCK_N": 16,
        "BLOCK_K": 16,
    }
    assert launches[0]["options"] == {"num_warps": 4, "num_ctas": 1, "num_stages": 2}
    assert records[-1] == {"t": "done"}
