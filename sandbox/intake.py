"""Validate a request's tasks and prepare each with its language, before anything is queued.

Every problem with a request is an `InvalidTask` naming the field (`tasks[3].limits.
memory_bytes: ...`), raised before any task of the request runs, so a bad request
costs nothing and loses nothing: the caller fixes it and sends it again. What is common
to every language (id, code, limits) is checked here; the rest by the language.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rewards.model import Verdict
from sandbox.api import pb
from sandbox.backends.policy import JobRlimits
from sandbox.config import LimitBounds, ServiceConfig
from sandbox.language import Language
from sandbox.steps import InvalidTask

_MAX_ID = 256


@dataclass(frozen=True)
class Prepared:
    """A task ready to run: its plan for its language, or the verdict it already has."""

    id: str
    language: Language
    code: str  # the candidate as sent (what the audit log hashes)
    plan: Any = None
    verdict: Verdict | None = None  # decided without running (syntax error, static rejection)


def _bounded(value: int, bounds: LimitBounds, field: str) -> int:
    if value < 0:
        raise InvalidTask(field, f"must not be negative (got {value})")
    if value == 0:
        return bounds.default
    if value < bounds.minimum or value > bounds.maximum:
        raise InvalidTask(field, f"must be between {bounds.minimum} and {bounds.maximum} (got {value})")
    return value


@functools.lru_cache(maxsize=8)
def _rlimits(config: ServiceConfig) -> dict[str, int]:
    """Once per configuration, not per task (`dataclasses.asdict` on the hot path)."""
    return JobRlimits.of(config).job_limits()


def resolve_limits(limits: Any, config: ServiceConfig) -> dict[str, int]:
    resolved = {
        "test_ms": _bounded(limits.test_timeout_ms, config.test_timeout_ms, "limits.test_timeout_ms"),
        "task_ms": _bounded(limits.task_timeout_ms, config.task_timeout_ms, "limits.task_timeout_ms"),
        "memory_bytes": _bounded(limits.memory_bytes, config.memory_bytes, "limits.memory_bytes"),
        "output_bytes": _bounded(limits.output_bytes, config.output_bytes, "limits.output_bytes"),
        **_rlimits(config),  # the sandbox policy's: not the request's to choose
    }
    resolved["test_ms"] = min(resolved["test_ms"], resolved["task_ms"])
    return resolved


def prepare(task: Any, config: ServiceConfig, languages: Mapping[int, Language]) -> Prepared:
    if not task.id:
        raise InvalidTask("id", "is required")
    if len(task.id) > _MAX_ID:
        raise InvalidTask("id", f"longer than {_MAX_ID} characters")
    if task.language == pb.LANGUAGE_UNSPECIFIED:
        names = ", ".join(language.name.upper() for language in languages.values())
        raise InvalidTask("language", f"is required ({names})")
    language = languages.get(task.language)
    if language is None:
        raise InvalidTask("language", f"unknown language {task.language}")
    if not task.code.strip():
        raise InvalidTask("code", "is empty")
    if len(task.code.encode("utf-8")) > config.max_code_bytes:
        raise InvalidTask("code", f"exceeds {config.max_code_bytes} bytes")
    if "\x00" in task.code:
        raise InvalidTask("code", "contains NUL bytes")
    plan = language.prepare(task, resolve_limits(task.limits, config))
    if isinstance(plan, Verdict):
        return Prepared(task.id, language, task.code, verdict=plan)
    return Prepared(task.id, language, task.code, plan)


def prepare_all(tasks: Any, config: ServiceConfig, languages: Mapping[int, Language]) -> list[Prepared]:
    if len(tasks) == 0:
        raise InvalidTask("tasks", "is empty")
    if len(tasks) > config.max_batch:
        raise InvalidTask("tasks", f"{len(tasks)} tasks exceed the limit of {config.max_batch} per call")
    prepared, seen = [], set()
    for index, task in enumerate(tasks):
        try:
            item = prepare(task, config, languages)
        except InvalidTask as exc:
            raise InvalidTask(f"tasks[{index}].{exc.field}", str(exc).split(": ", 1)[1]) from None
        if item.id in seen:
            raise InvalidTask(f"tasks[{index}].id", f"duplicates an earlier task's id {item.id!r}")
        seen.add(item.id)
        prepared.append(item)
    return prepared
