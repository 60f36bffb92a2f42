"""The audit trail: one JSON line per scored attempt (`sandbox.audit_record`), for people to query.

What is written: every attempt with a finding, and every attempt at all with `results`
(`serve --audit-results`), so a cheat rate has its denominator; each with the call's
context (run, step, caller, principal: `sandbox.call_context`). The candidate's code, capped
at `code_bytes`, and its task (protobuf JSON, code cleared: what a replay re-scores) are
stored per `code`: "none", "findings" (attempts with a finding; the default) or "all". The
file itself (whole-line appends by several processes, rotation, fsync, a full disk that
never stops scoring) is `sandbox.audit_store`'s. `query` is the `rft-sandbox audit` filter.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from rewards.model import Severity, Verdict
from sandbox.api import pb
from sandbox.audit_record import VERSION, AttemptRecord, EventRecord, FindingRecord, encode_blob, new_id, now
from sandbox.audit_store import AppendLog, StoreStats
from sandbox.call_context import CallContext
from sandbox.config import ServiceConfig

_EVIDENCE = 500
CODE_POLICIES = ("none", "findings", "all")
_NO_CONTEXT = CallContext()


class AuditLog:
    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        results: bool = False,
        code: str = "findings",
        code_bytes: int = 64 * 1024,
        rotate_bytes: int = 0,
        rotate_seconds: float = 0.0,
        fsync: str = "interval",
    ) -> None:
        if code not in CODE_POLICIES:
            raise ValueError(f"audit code policy must be one of {CODE_POLICIES}, not {code!r}")
        self.results = results
        self.code = code
        self.code_bytes = code_bytes
        self.store = (
            AppendLog(path, rotate_bytes=rotate_bytes, rotate_seconds=rotate_seconds, fsync=fsync) if path else None
        )

    @classmethod
    def of(cls, config: ServiceConfig) -> AuditLog:
        return cls(
            config.audit_log,
            results=config.audit_results,
            code=config.audit_code,
            code_bytes=config.audit_code_bytes,
            rotate_bytes=config.audit_rotate_bytes,
            rotate_seconds=config.audit_rotate_seconds,
            fsync=config.audit_fsync,
        )

    @property
    def healthy(self) -> bool:
        """False while records are being dropped (the disk is full, the file cannot be written)."""
        return self.store is None or self.store.healthy

    @property
    def stats(self) -> StoreStats:
        return self.store.stats if self.store is not None else StoreStats()

    def record(
        self,
        task_id: str,
        language: str,
        code: str,
        verdict: Verdict,
        call: CallContext | None = None,
        source: pb.Task | None = None,
    ) -> None:
        """The attempt on task `task_id` (`code`: as sent; `source`: the task as sent), when due."""
        if self.store is None or not (verdict.findings or self.results):
            return
        call = call or _NO_CONTEXT
        findings = [
            FindingRecord(code=f.code, severity=f.severity.name, message=f.message, evidence=f.evidence[:_EVIDENCE])
            for f in verdict.findings
        ]
        data = code.encode("utf-8", "replace")  # a lone surrogate from a sandbox
        keep = self.code == "all" or (self.code == "findings" and bool(findings))
        kept = data[: self.code_bytes].decode("utf-8", "ignore")  # never half a character
        record = AttemptRecord(
            v=VERSION,
            kind="attempt",
            id=new_id(),
            time=now(),
            run=call.run,
            step=call.step,
            caller=call.caller,
            principal=call.principal,
            task_id=task_id,
            task_key=_task_key(source) if source is not None else None,
            language=language,
            status=verdict.status.name,
            score=float(verdict.score),
            components={name: float(value) for name, value in verdict.components.items()},
            findings=findings,
            max_severity=max(verdict.findings, key=lambda f: f.severity).severity.name if findings else None,
            code_sha256=hashlib.sha256(data).hexdigest(),
            code_bytes=len(data),
            code_z=encode_blob(kept) if keep else None,
            code_truncated=keep and len(data) > self.code_bytes,
            task=encode_blob(_task_json(source)) if keep and source is not None else None,
        )
        self._append(record)

    def record_event(self, code: str, evidence: str) -> None:
        """A CRITICAL finding about the service itself (no task), e.g. a modified database."""
        if self.store is None:
            return
        event = EventRecord(
            v=VERSION,
            kind="event",
            id=new_id(),
            time=now(),
            code=code,
            severity="CRITICAL",
            evidence=evidence[:_EVIDENCE],
            message=code.replace("_", " "),
        )
        self._append(event)

    def sync(self) -> None:
        if self.store is not None:
            self.store.sync()

    def _append(self, record: AttemptRecord | EventRecord) -> None:
        assert self.store is not None
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        self.store.append(line.encode("utf-8", "replace"))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _task_key(task: pb.Task) -> str:
    """What every sample of one problem shares: the task without its id and its code, hashed
    (a trainer's task ids number its batch; `audit summary`'s top tasks group by this)."""
    copy = pb.Task()
    copy.CopyFrom(task)
    copy.id, copy.code = "", ""
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()[:16]


def _task_json(task: pb.Task) -> str:
    """The task as sent, without its code (stored apart, capped): what `audit replay` re-scores."""
    copy = pb.Task()
    copy.CopyFrom(task)
    copy.code = ""
    return json_format.MessageToJson(copy, indent=None)


def log_files(path: str | os.PathLike[str]) -> list[Path]:
    """The rotated files (oldest first), then the current one: the whole trail, in order."""
    current = Path(path)
    rotated = sorted(current.parent.glob(f"{current.stem}.*{current.suffix}"))
    return [*rotated, *([current] if current.exists() else [])]


def query(
    path: str | os.PathLike[str],
    *,
    code: str | None = None,
    severity: str | None = None,
    task_id: str | None = None,
    since: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Records matching every given filter, over the current and rotated files (`code`: a finding
    of the attempt, or the event; `severity`: the attempt's worst; `since`: ISO time prefix)."""
    minimum = Severity[severity.upper()] if severity else None
    for file in log_files(path):
        with open(file, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and _matches(entry, code, minimum, task_id, since):
                    yield entry


def _matches(
    entry: dict[str, Any], code: str | None, minimum: Severity | None, task_id: str | None, since: str | None
) -> bool:
    if entry.get("kind") == "attempt":
        codes = {str(f.get("code")) for f in entry.get("findings") or () if isinstance(f, dict)}
        worst = entry.get("max_severity")
    else:  # an event (or a v1 line: one finding each)
        codes, worst = {str(entry.get("code"))}, entry.get("severity")
    if code and code not in codes:
        return False
    if task_id and entry.get("task_id") != task_id:
        return False
    if since and str(entry.get("time", "")) < since:
        return False
    return not minimum or (worst in Severity.__members__ and Severity[worst] >= minimum)
