"""The steps a language's flow yields (`sandbox.language`), and the errors of a task.

Kept apart from the `Language` interface so that lanes, which run `Job`s, need not know
what a language is.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from rewards.model import Verdict

if TYPE_CHECKING:
    from sandbox.worker import RunnerReply

T = TypeVar("T")
MAIN_LANE = "main"  # the service's warm pool of lean runners


class InvalidTask(ValueError):
    """A task that cannot be run as given; `field` names the offending request field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class LanguageUnavailable(Exception):
    """This service cannot run the language's tasks (e.g. torch is not installed)."""


@dataclass(frozen=True)
class Job:
    """One sandbox job: its public frame (inputs only), its secret frame (whole-mode tests),
    the task's time budget, and the lane (pool) that runs it."""

    frame: Mapping[str, Any]
    task_ms: int
    secret: Mapping[str, Any] = field(default_factory=dict)
    lane: str = MAIN_LANE


@dataclass(frozen=True)
class Memo(Generic[T]):
    """A value computed from one job's reply, once per `key` for the whole service.

    `read` turns the reply into the value, or raises (`InvalidTask` for a task whose
    reference is wrong, `SandboxFailure` for the infrastructure's failure): nothing that
    raised is kept, so a later request tries again. `size` is the value's bytes for the
    memo's budget; without it the value is never evicted."""

    key: Hashable
    job: Job
    read: Callable[[RunnerReply], T]
    size: Callable[[T], int] | None = None


Step = Job | Memo[Any]
Flow = Generator[Step, Any, Verdict]
