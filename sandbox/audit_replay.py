"""`audit replay`: score stored attempts again with the CURRENT detectors and say which verdicts
would change. The loop of improving a reward function: tighten a check, replay last week's
attempts, see what it now catches (and what it now wrongly flags).

An attempt is replayable when the writer stored its whole code and its task (`--audit-code`
findings or all); one stored without them, or with its code truncated (it would be scored
as other code), is counted, not replayed. Scoring goes through a real service (the caller
passes the target of an embedded one) over gRPC, so a replayed verdict is what a trainer
would get now.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from sandbox.api import pb
from sandbox.audit_query import AuditStore
from sandbox.audit_record import decode_blob

Score = Callable[[list[pb.Task]], Sequence[pb.Result]]


@dataclass
class Replay:
    replayed: int = 0
    not_replayable: int = 0
    changed: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"replayed": self.replayed, "not_replayable": self.not_replayable, "changed": self.changed}


def candidates(store: AuditStore, code: str | None, limit: int | None) -> list[dict[str, Any]]:
    """The attempts to replay, oldest first (`code`: only those with that finding)."""
    where, params = "", []
    if code:
        where, params = " WHERE list_contains(list_transform(findings, f -> f.code), ?)", [code]
    tail = " LIMIT ?" if limit else ""
    fields = "id, time, task_id, language, status, score, findings, code_z, code_truncated, task"
    query = f"SELECT {fields} FROM attempts{where} ORDER BY time, id{tail}"  # noqa: S608 - fixed text
    return store.rows(query, [*params, *([limit] if limit else [])])


def rebuild(record: dict[str, Any]) -> pb.Task | None:
    """The task as it was scored (the stored task, its code put back); None: not replayable."""
    if not record.get("code_z") or not record.get("task") or record.get("code_truncated"):
        return None
    task = json_format.Parse(decode_blob(record["task"]), pb.Task(), ignore_unknown_fields=True)
    task.code = decode_blob(record["code_z"])
    task.id = record["id"]  # unique in the batch; the result is matched back by it
    return task


def _codes(findings: Sequence[Any]) -> list[str]:
    return sorted({f["code"] if isinstance(f, dict) else f.code for f in findings})


def replay(records: list[dict[str, Any]], score: Score, batch_size: int = 64) -> Replay:
    out = Replay()
    tasks: list[tuple[dict[str, Any], pb.Task]] = []
    for record in records:
        task = rebuild(record)
        if task is None:
            out.not_replayable += 1
        else:
            tasks.append((record, task))
    for start in range(0, len(tasks), batch_size):
        chunk = tasks[start : start + batch_size]
        results = {result.id: result for result in score([task for _, task in chunk])}
        for record, task in chunk:
            result = results[task.id]
            out.replayed += 1
            before = {
                "status": record["status"],
                "score": round(record["score"], 6),
                "findings": _codes(record["findings"]),
            }
            after = {
                "status": pb.Status.Name(result.status),
                "score": round(result.score, 6),
                "findings": _codes(result.findings),
            }
            if before != after:
                out.changed.append({"id": record["id"], "task_id": record["task_id"], "before": before, "after": after})
    return out
