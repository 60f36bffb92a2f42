"""JSONL task files in, JSONL result files out: what both `score` commands read and write.

A tasks file holds one `rft_sandbox.v1.Task` per line (proto JSON); the results file one
`Result` per line, in completion order. The service's `rft-sandbox score` (an embedded
service) and the plugin's `python -m trainer_plugin score` (a running one) differ only in
where the tasks go and how much they can check before sending, so the reading and the
writing live here, next to the messages they are made of (what the terminal shows
meanwhile and at the end is `progress`'s).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import grpc
from google.protobuf import json_format

from sandbox.api import pb

Numbered = list[tuple[int, pb.Task]]  # (line number, task)


class TaskFileError(ValueError):
    """The file cannot be scored (unreadable, invalid lines, refused by the service)."""


def read_tasks(path: str, check: Callable[[pb.Task], None] | None = None) -> Numbered:
    """Every line must be a valid Task; all problems are reported before anything runs.

    `check` raises ValueError for a task the caller can tell is invalid before sending it
    (the service's own validation, where it is at hand), so a bad line is named by file
    and line rather than by batch index.
    """
    tasks, errors, seen = [], [], set()
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise TaskFileError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                task = json_format.Parse(line, pb.Task())
                if check is not None:
                    check(task)
            except (json_format.ParseError, ValueError) as exc:
                errors.append(f"{path}:{number}: {exc}")
                continue
            if task.id in seen:
                errors.append(f"{path}:{number}: id: duplicates an earlier task's id {task.id!r}")
            seen.add(task.id)
            tasks.append((number, task))
    if errors:
        raise TaskFileError("invalid tasks file:\n" + "\n".join(errors[:20]))
    if not tasks:
        raise TaskFileError(f"{path}: no tasks")
    return tasks


def results_path(tasks_path: str, out: str | None) -> Path:
    return Path(out) if out else Path(tasks_path).with_suffix(".results.jsonl")


def score_file(
    numbered: Numbered,
    path: str,
    out: Path,
    score_batch: Callable[[list[pb.Task]], Iterable[pb.Result]],
    *,
    target: str,
    batch_size: int,
    on_result: Callable[[pb.Result], None],
) -> list[pb.Result]:
    """Score in batches, writing each result as it comes (and handing it to `on_result`, the
    progress bar); the file is created with the first result, so a refused request leaves
    none. A refusal names the line it is about."""
    tasks = [task for _, task in numbered]
    results: list[pb.Result] = []
    start = 0
    with contextlib.ExitStack() as stack:
        sink = None
        try:
            for start in range(0, len(tasks), batch_size):
                for result in score_batch(tasks[start : start + batch_size]):
                    if sink is None:
                        sink = stack.enter_context(open(out, "w", encoding="utf-8"))
                    results.append(result)
                    sink.write(json.dumps(json_format.MessageToDict(result)) + "\n")
                    on_result(result)
        except grpc.RpcError as exc:
            kept = f"; {len(results)} results kept in {out}" if results else ""
            details = _name_the_line(exc.details() or "", path, numbered, start)
            raise TaskFileError(f"server {target}: {exc.code().name}: {details}{kept}") from None
    return results


def _name_the_line(details: str, path: str, numbered: Numbered, start: int) -> str:
    """`tasks[3].sql.database: ...` from the server, for batch `start`, as `FILE:LINE: sql.database: ...`."""
    match = re.match(r"tasks\[(\d+)\]\.(.*)", details, re.S)
    if not match or start + int(match.group(1)) >= len(numbered):
        return details
    return f"{path}:{numbered[start + int(match.group(1))][0]}: {match.group(2)}"
