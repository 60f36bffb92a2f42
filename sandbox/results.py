"""A trusted verdict as the v1 `Result` message."""

from __future__ import annotations

from rewards.model import Verdict
from sandbox.api import pb


def _text(value: str) -> str:
    """Text for a proto string field, which must be UTF-8: a lone surrogate from inside the
    sandbox (a valid JSON escape) would fail the whole RPC, so it becomes '?'."""
    return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")


def to_proto(
    task_id: str, verdict: Verdict, backend: str, queue_ms: float, run_ms: float, total_ms: float
) -> pb.Result:
    return pb.Result(
        id=task_id,
        status=int(verdict.status),
        score=verdict.score,
        tests=[
            pb.TestOutcome(
                index=t.index,
                passed=t.passed,
                status=int(t.status),
                name=_text(t.name),
                message=_text(t.message),
                duration_ms=t.duration_ms,
            )
            for t in verdict.tests
        ],
        components=verdict.components,
        findings=[
            pb.Finding(code=f.code, severity=int(f.severity), message=_text(f.message), evidence=_text(f.evidence))
            for f in verdict.findings
        ],
        timings=pb.Timings(queue_ms=queue_ms, run_ms=run_ms, total_ms=total_ms),
        message=_text(verdict.message),
        stdout_excerpt=_text(verdict.stdout),
        stderr_excerpt=_text(verdict.stderr),
        backend=backend,
    )
