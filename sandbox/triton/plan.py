"""Triton tasks on the trusted side: validate the spec, plan the reference and candidate jobs.

A task becomes two sandbox jobs. The *reference* job (cached: many candidates share one
problem) runs the task's `Model` and returns the inputs and outputs of every trial; the
*candidate* job gets the candidate's code and those inputs, never the outputs, the
reference source or its weights (identical weights come from the same seed).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from rewards.model import Finding, Severity, Status, Verdict
from rewards.tensors import TensorError, decode_list
from rewards.triton import ReferenceRun, TritonRules, Weights
from rewards.triton_report import Forged, check_candidate_report
from sandbox.api.completions import extract_code
from sandbox.steps import InvalidTask
from sandbox.triton.static_checks import CandidateSyntaxError, check_triton
from sandbox.wire.messages import Mode, Role, Tag, TritonJob

MAX_TRIALS = 64
MAX_SHAPES = 16
MAX_REFERENCE_BYTES = 256 * 1024
MAX_TIMING_REPS = 10_000
DEFAULT_TRIALS = 5
DEFAULT_SEED = 42
DEFAULT_REPS = 100
# Kernels the interpreter ran are also compiled for this GPU (no GPU needed): Hopper.
AOT_TARGET = {"backend": "cuda", "arch": 90, "warp_size": 32}


@dataclass(frozen=True)
class TritonDevice:
    """Where this service runs Triton jobs: the CPU interpreter, or a GPU (speed is scored)."""

    kind: str = "cpu"  # "cpu" or "cuda"

    @property
    def gpu(self) -> bool:
        return self.kind == "cuda"


@dataclass(frozen=True)
class ReferenceRequest:
    key: str  # hash of everything the reference's results depend on
    job: TritonJob
    task_ms: int


@dataclass(frozen=True)
class Reference:
    """A reference run, validated: what candidates get (inputs) and what they are judged by."""

    trials: tuple[dict[str, Any], ...]  # per trial: {"init", "inputs", "variant"} as the sandbox encoded them
    run: ReferenceRun
    size: int  # encoded bytes (the cache's budget)


@dataclass(frozen=True)
class TritonPlan:
    code: str  # the extracted candidate module
    reference: ReferenceRequest
    rules: TritonRules
    findings: tuple[Finding, ...]  # static
    limits: dict[str, int]
    init_seed: int
    timing: dict[str, Any] | None

    def candidate_job(self, reference: Reference) -> TritonJob:
        return TritonJob(
            mode=Mode.TRITON,
            role=Role.CANDIDATE,
            code=self.code,
            trials=list(reference.trials),
            init_seed=self.init_seed,
            timing=self.timing,
            limits=self.limits,  # type: ignore[typeddict-item]
        )

    def compile_job(self, records: list[Any]) -> TritonJob | None:
        """The ahead-of-time compile of the kernels the interpreter launched (CPU only); None
        when there is nothing to compile, or when the candidate's report is not one its
        harness wrote (it is rejected then: `rewards.triton_report`). The launches are passed
        on, as data, to a sandbox of their own."""
        if not self.rules.compiled_ahead:
            return None
        try:
            check_candidate_report(records, len(self.reference.job["trials"]), self.rules.speed_measured)
        except Forged:
            return None
        launches = [
            {key: record[key] for key in ("kernel", "signature", "constants", "options")}
            for record in records
            if record["t"] == Tag.LAUNCH
        ]
        if not launches:
            return None
        return TritonJob(
            mode=Mode.TRITON,
            role=Role.COMPILE,
            code=self.code,
            launches=launches[:64],
            aot_target=AOT_TARGET,
            limits=self.limits,  # type: ignore[typeddict-item]
        )


def _positive(value: float, field: str) -> float | None:
    if math.isnan(value) or value < 0 or value > 1e6:
        raise InvalidTask(field, f"must be a finite number >= 0 (got {value})")
    return value or None


def _shapes(spec: Any) -> list[dict[str, Any]]:
    if len(spec.shapes_json) > MAX_SHAPES:
        raise InvalidTask("triton.shapes_json", f"{len(spec.shapes_json)} shapes exceed the limit of {MAX_SHAPES}")
    variants: list[dict[str, Any]] = [{}]
    for index, text in enumerate(spec.shapes_json):
        field = f"triton.shapes_json[{index}]"
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise InvalidTask(field, f"is not JSON: {exc}") from None
        if not isinstance(value, dict) or not value:
            raise InvalidTask(field, "must be a non-empty JSON object of module-level names")
        for name in value:
            if not name.isidentifier() or name.startswith("__"):
                raise InvalidTask(field, f"{name!r} is not a module-level name")
        variants.append(value)
    return variants


def _weights(spec: Any) -> Weights:
    given = spec.weights
    defaults = Weights()
    values = {}
    for name in ("compiles", "correctness", "max_speedup_bonus", "plausible_speedup"):
        value = getattr(given, name)
        if math.isnan(value) or value < 0 or value > 1000:
            raise InvalidTask(f"triton.weights.{name}", f"must be within [0, 1000] (got {value})")
        values[name] = value or getattr(defaults, name)
    return Weights(**values)


def prepare_triton(
    task: Any, limits: dict[str, int], device: TritonDevice, static_gate: bool = True
) -> tuple[TritonPlan | None, Verdict | None]:
    """The plan, or a verdict reached without running (does not parse, static cheat findings).

    `static_gate` False (tests only: `ServiceConfig.triton_static_gate`) drops the static
    findings, so a candidate is judged by what its run shows alone."""
    if task.WhichOneof("spec") != "triton":
        raise InvalidTask("triton", "a TRITON task needs a triton spec")
    spec = task.triton
    if not spec.reference.strip():
        raise InvalidTask("triton.reference", "is required (a module defining Model, get_inputs, get_init_inputs)")
    if len(spec.reference.encode()) > MAX_REFERENCE_BYTES:
        raise InvalidTask("triton.reference", f"exceeds {MAX_REFERENCE_BYTES} bytes")
    try:
        compile(spec.reference, "reference.py", "exec")
    except (SyntaxError, ValueError) as exc:
        raise InvalidTask("triton.reference", f"does not compile: {exc}") from None
    if spec.trials < 0 or spec.trials > MAX_TRIALS:
        raise InvalidTask("triton.trials", f"must be between 0 and {MAX_TRIALS} (got {spec.trials})")
    if spec.timing_reps < 0 or spec.timing_reps > MAX_TIMING_REPS:
        raise InvalidTask("triton.timing_reps", f"must be between 0 and {MAX_TIMING_REPS} (got {spec.timing_reps})")
    variants = _shapes(spec)
    seed = spec.seed or DEFAULT_SEED
    if not 0 < seed < 2**62:
        raise InvalidTask("triton.seed", f"must be positive and below 2**62 (got {seed})")
    weights = _weights(spec)
    trials = [{"seed": seed + 1 + n, "variant": 0} for n in range(spec.trials or DEFAULT_TRIALS)]
    trials += [{"seed": seed + 1 + len(trials) + n, "variant": n + 1} for n in range(len(variants) - 1)]
    timed = device.gpu and not spec.skip_speed
    timing = {"reps": spec.timing_reps or DEFAULT_REPS, "warmup": 10} if timed else None
    reference_job = TritonJob(
        mode=Mode.TRITON,
        role=Role.REFERENCE,
        reference=spec.reference,
        trials=trials,
        variants=variants,
        init_seed=seed,
        timing=timing,
        limits=limits,  # type: ignore[typeddict-item]
    )
    key = hashlib.sha256(
        json.dumps([device.kind, spec.reference, trials, variants, seed, timing], sort_keys=True).encode()
    ).hexdigest()
    rules = TritonRules(
        atol=_positive(spec.atol, "triton.atol"),
        rtol=_positive(spec.rtol, "triton.rtol"),
        weights=weights,
        speed_measured=timed,
        first_variant_trials=tuple(n for n, t in enumerate(trials) if t["variant"] == 0),
        compiled_ahead=not device.gpu,
    )
    code = extract_code(task.code)
    try:
        findings = tuple(check_triton(code))
    except CandidateSyntaxError as exc:
        return None, Verdict.does_not_compile(exc, ("compiles", "correctness"))
    if not static_gate:
        findings = ()
    plan = TritonPlan(
        code, ReferenceRequest(key, reference_job, limits["task_ms"]), rules, findings, limits, seed, timing
    )
    critical = [f for f in findings if f.severity is Severity.CRITICAL]
    if critical:
        codes = ", ".join(sorted({f.code for f in critical}))
        early = Verdict(
            Status.REJECTED,
            0.0,
            components={"compiles": 0.0, "correctness": 0.0},
            findings=list(findings),
            message=f"rejected before running ({codes})",
        )
        return plan, early
    return plan, None


class ReferenceFailed(Exception):
    """The task's reference module does not run: the task is invalid, not the candidate."""


def read_reference(records: list[Any], request: ReferenceRequest, ending: str) -> Reference:
    """Validate a reference job's report: every trial's inputs and outputs, and its timing."""
    records = [r for r in records if isinstance(r, dict)]
    error = next((r for r in records if r.get("t") in (Tag.ERROR, Tag.HARNESS_ERROR)), None)
    if error is not None:
        text = str(error.get("error", ""))[-1500:]
        if error.get("t") == Tag.HARNESS_ERROR:  # the reference's own sandbox runs no candidate: ours
            raise RuntimeError(f"the Triton harness failed on the reference: {text}")
        raise ReferenceFailed(f"the reference fails ({error.get('where')}): {text}")
    trials = request.job["trials"]
    by_index = {r.get("index"): r for r in records if r.get("t") == Tag.TRIAL}
    kept, outputs, size = [], [], 0
    for index, trial in enumerate(trials):
        record = by_index.get(index)
        if record is None:
            why = "ran out of time" if ending == "deadline" else "stopped early"
            raise ReferenceFailed(f"the reference {why} before trial {index}")
        try:
            outputs.append(tuple(decode_list(record.get("output"))))
        except TensorError as exc:
            raise ReferenceFailed(f"trial {index}: the reference's output is not tensors: {exc}") from None
        if not isinstance(record.get("inputs"), list):
            raise ReferenceFailed(f"trial {index}: get_inputs() did not return a list")
        entry = {"init": record.get("init"), "inputs": record["inputs"], "variant": trial["variant"]}
        size += len(json.dumps(entry)) + sum(t.array.nbytes for t in outputs[-1])
        kept.append(entry)
    timing = next((r for r in records if r.get("t") == Tag.TIMING), None)
    timing_ms = timing.get("median_ms") if timing else None
    device_name = str(timing.get("device_name", ""))[:100] if timing else ""
    run = ReferenceRun(tuple(outputs), float(timing_ms) if isinstance(timing_ms, (int, float)) else None, device_name)
    return Reference(tuple(kept), run, size)
