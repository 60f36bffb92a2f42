"""Plain data the reward logic produces; the service maps it onto the v1 proto.

Kept free of protobuf so scoring stays pure, importable and testable on its own.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Status(enum.IntEnum):
    """Mirrors rft_sandbox.v1.Status (same numbers)."""

    PASSED = 1
    FAILED = 2
    SYNTAX_ERROR = 3
    RUNTIME_ERROR = 4
    TIMEOUT = 5
    MEMORY_LIMIT = 6
    OUTPUT_LIMIT = 7
    REJECTED = 8
    SANDBOX_ERROR = 9


class Severity(enum.IntEnum):
    INFO = 1
    WARNING = 2
    CRITICAL = 3


class NeedsWholeRun(Exception):
    """What the sandbox returned cannot be judged on the trusted side (an assert applied to an
    object that is not data): the task's tests must run whole, as real Python, in the isolated
    harness."""


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    message: str
    evidence: str = ""


def dedupe(findings: list[Finding]) -> list[Finding]:
    """The same finding (code and evidence) reported once, first occurrence kept."""
    seen, out = set(), []
    for finding in findings:
        if (finding.code, finding.evidence) not in seen:
            seen.add((finding.code, finding.evidence))
            out.append(finding)
    return out


@dataclass(frozen=True)
class TestResult:
    index: int
    passed: bool
    status: Status
    name: str
    message: str = ""
    duration_ms: float = 0.0


@dataclass
class Verdict:
    status: Status
    score: float
    tests: list[TestResult] = field(default_factory=list)
    components: dict[str, float] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    message: str = ""
    stdout: str = ""
    stderr: str = ""

    @classmethod
    def does_not_compile(cls, why: object, components: tuple[str, ...]) -> Verdict:
        """Decided without running: the candidate does not parse (every component 0)."""
        return cls(
            Status.SYNTAX_ERROR, 0.0, components=dict.fromkeys(components, 0.0), message=f"does not compile: {why}"
        )
