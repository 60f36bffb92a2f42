"""The audit trail: one JSON line per finding, for people to query later.

Several service processes (`serve --processes`) append to one file. O_APPEND makes each
write() land at the end, but neither POSIX nor every filesystem (NFS) promises that a
large write() is not split or interleaved with another, and write() may write less than
asked. So each record is written whole under an exclusive flock, looping over short
writes: the lines of concurrent writers never mix. `query` is what the `rft-sandbox
audit` command uses.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rewards.model import Severity, Verdict

_EVIDENCE = 500


class AuditLog:
    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path else None
        self._fd: int | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def record(self, task_id: str, language: str, code: str, verdict: Verdict) -> None:
        """One line per finding of the verdict on the task `task_id` (`code`: as sent)."""
        if self._fd is None or not verdict.findings:
            return
        code_hash = hashlib.sha256(code.encode("utf-8")).hexdigest()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = []
        for finding in verdict.findings:
            lines.append(
                json.dumps(
                    {
                        "time": now,
                        "task_id": task_id,
                        "language": language,
                        "code": finding.code,
                        "severity": finding.severity.name,
                        "status": verdict.status.name,
                        "message": finding.message,
                        "evidence": finding.evidence[:_EVIDENCE],
                        "code_sha256": code_hash,
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
        self._append("".join(lines).encode("utf-8", "replace"))  # a lone surrogate from a sandbox

    def record_event(self, code: str, evidence: str) -> None:
        """A CRITICAL finding about the service itself (no task), e.g. a modified database."""
        if self._fd is None:
            return
        line = json.dumps(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "task_id": "",
                "language": "",
                "code": code,
                "severity": "CRITICAL",
                "status": "",
                "message": code.replace("_", " "),
                "evidence": evidence[:_EVIDENCE],
                "code_sha256": "",
            }
        )
        self._append((line + "\n").encode("utf-8"))

    def _append(self, data: bytes) -> None:
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def query(
    path: str | os.PathLike[str],
    *,
    code: str | None = None,
    severity: str | None = None,
    task_id: str | None = None,
    since: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Audit entries matching every given filter (`since`: ISO time prefix compare)."""
    minimum = Severity[severity.upper()] if severity else None
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if code and entry.get("code") != code:
                continue
            if task_id and entry.get("task_id") != task_id:
                continue
            if since and str(entry.get("time", "")) < since:
                continue
            if minimum and Severity[entry.get("severity", "INFO")] < minimum:
                continue
            yield entry
