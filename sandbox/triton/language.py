"""Triton: a PyTorch reference, then the candidate's kernels on its inputs, then (on the
CPU) the ahead-of-time compile of what the interpreter ran, scored by `rewards.triton`.

The reference's results are a `Memo` (many candidates share one problem), kept within
the service's memo budget by their encoded size; a reference that does not run makes
its task invalid before any candidate runs. The candidate's job gets the inputs, never
the outputs, the reference source or its weights (identical weights come from the seed).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from rewards.model import Verdict
from rewards.triton import CompileRun, score_triton
from sandbox.api import pb
from sandbox.host import Host
from sandbox.lanes import Lane
from sandbox.language import Language
from sandbox.pool import SandboxFailure
from sandbox.steps import Flow, InvalidTask, Job, Memo
from sandbox.triton.lane import CANDIDATES, COMPILER, REFERENCES, triton_lanes
from sandbox.triton.plan import Reference, ReferenceFailed, TritonDevice, TritonPlan, prepare_triton, read_reference
from sandbox.worker import RunnerReply


class TritonLanguage(Language):
    name = "triton"
    enum = pb.TRITON
    admission_lane = CANDIDATES

    def __init__(self) -> None:
        self.device = TritonDevice()
        self.static_gate = True
        self._lanes: dict[str, Lane] = {}

    def attach(self, host: Host) -> None:
        self.device = TritonDevice(host.config.triton_device)
        self.static_gate = host.config.triton_static_gate
        self._lanes = dict(triton_lanes(host, self.device, host.config.triton_workers))

    def lanes(self) -> Mapping[str, Lane]:
        return self._lanes

    def prepare(self, task: Any, limits: dict[str, int]) -> TritonPlan | Verdict:
        plan, early = prepare_triton(task, limits, self.device, self.static_gate)
        return early if early is not None else plan  # type: ignore[return-value]

    def flow(self, plan: TritonPlan) -> Flow:
        request = plan.reference
        reference_job = Job(request.job, request.task_ms, lane=REFERENCES)
        reference: Reference = yield Memo(
            ("triton-reference", request.key),
            reference_job,
            functools.partial(_reference, request),
            lambda value: value.size,
        )
        task_ms = plan.limits["task_ms"]
        reply = yield Job(plan.candidate_job(reference), task_ms, lane=CANDIDATES)
        compiled, meta = None, reply.meta
        job = plan.compile_job(reply.records)
        if job is not None:
            compile_reply = yield Job(job, task_ms, lane=COMPILER)
            kernels = tuple(str(launch["kernel"]) for launch in job["launches"])
            compiled = CompileRun(kernels, compile_reply.records, compile_reply.meta)
            elapsed = [m.get("elapsed_ms") for m in (reply.meta, compile_reply.meta)]
            meta = {**reply.meta, "elapsed_ms": sum(e for e in elapsed if isinstance(e, (int, float)))}
        return score_triton(reference.run, reply.records, meta, plan.findings, plan.rules, compiled)


def _reference(request: Any, reply: RunnerReply) -> Reference:
    try:
        return read_reference(reply.records, request, str(reply.meta.get("ending")))
    except ReferenceFailed as exc:
        raise InvalidTask("triton.reference", str(exc)) from None
    except RuntimeError as exc:  # the reference's own sandbox runs no candidate: the failure is ours
        raise SandboxFailure(str(exc)) from None
