"""What a language is to the service: one small interface, and the steps its flows yield.

The core knows no language by name. A language turns a task into a plan (or a verdict
reached without running anything: a syntax error, a static rejection), then runs the
plan as a *flow*: a generator that yields the sandbox work it needs and receives what
the sandbox observed, and finally returns the trusted verdict. Multi-step languages are
ordinary code in their flow (SQL: its gold results, then the candidate; Triton: the
reference, then the candidate, then the compile), so the core has no special cases:

    def flow(self, plan):
        gold = yield Memo(("gold", plan.key), Job(plan.gold_job, plan.task_ms), read_gold)
        reply = yield Job(plan.candidate_job(gold), plan.task_ms)
        return score(gold, reply.records, reply.meta)

`Memo` steps (`sandbox.steps`, with `Job`) are results many tasks share (a gold query's result, a Triton reference's
outputs): the core computes each key once, however many tasks ask at a time, and keeps
it. The memos a flow asks for before its first `Job` are the task's prerequisites: they
run while the request is being admitted, so a task whose reference does not run makes
the whole request invalid before any candidate runs.

A flow receives a `RunnerReply` for a `Job` and the memo's value for a `Memo`; a
`SandboxFailure` is thrown into it at the `yield`, where it may be caught (an optional
memo) or left to the core (the task's SANDBOX_ERROR). A job whose sandbox was lost to
the candidate ends the task with the core's worker-lost verdict; the flow never sees it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from sandbox.backends.policy import Mount
from sandbox.host import Host
from sandbox.lanes import Lane
from sandbox.steps import MAIN_LANE, Flow


class Language(ABC):
    """One language the service scores. Registered in `sandbox.languages`."""

    name: str  # lower case, as the audit trail and logs name it
    enum: int  # its `rft_sandbox.v1.Language` value
    admission_lane: str = MAIN_LANE  # the lane whose queue admits (or refuses) its tasks

    def attach(self, host: Host) -> None:  # noqa: B027 - most languages need nothing of it
        """Called once by the service before any task: what the language may use."""

    def mounts(self) -> Sequence[Mount]:
        """What every sandbox gets mounted read-only (e.g. registered databases)."""
        return ()

    def lanes(self) -> Mapping[str, Lane]:
        """Lanes of its own its flows name in `Job.lane` (pools of other runners, or engines
        that are not sandboxes), started and closed by the service."""
        return {}

    @abstractmethod
    def prepare(self, task: Any, limits: dict[str, int]) -> Any:
        """The task's plan, or a `Verdict` reached without running. Raises `InvalidTask`
        naming the field for anything wrong with the task."""

    @abstractmethod
    def flow(self, plan: Any) -> Flow:
        """Run the plan (see the module docstring) and return the trusted verdict."""

    async def after_batch(self) -> None:  # noqa: B027 - most languages need nothing of it
        """Called after every request that had tasks of this language were answered."""
