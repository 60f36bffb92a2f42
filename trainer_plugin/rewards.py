"""What every trainer adapter shares: build the batch's tasks, score them in one go, and
turn results into reward values and logging figures.

A SANDBOX_ERROR (our failure, or a task the dataset could not make) is never a reward of
0: trainers that can drop a sample get None, the others get 0 with an `infra_error` flag.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.api import pb
from trainer_plugin.client import AsyncSandboxClient, ClientOptions, SandboxClient
from trainer_plugin.tasks import TaskSpec

# Every component the service reports, by language; adapters that need fixed keys use all.
_BY_LANGUAGE = {
    "python": ("compiles", "tests_passed", "cheat_penalty"),
    "sql": ("executes", "matches_base", "variants_matched", "row_f1", "col_f1", "cheat_penalty"),
    "triton": ("compiles", "correctness", "speedup_bonus", "speedup"),
}
COMPONENTS = tuple(dict.fromkeys(name for names in _BY_LANGUAGE.values() for name in names))


def options_from_env(**overrides: Any) -> ClientOptions:
    """Client options from RFT_SANDBOX_TARGETS (comma-separated HOST:PORT), RFT_SANDBOX_TOKEN,
    RFT_SANDBOX_TIMEOUT, RFT_SANDBOX_RUN and RFT_SANDBOX_CALLER (the audit trail's run name and
    caller), with keyword overrides (e.g. from a trainer's reward kwargs)."""
    values: dict[str, Any] = {
        "targets": os.environ.get("RFT_SANDBOX_TARGETS", "127.0.0.1:50051"),
        "token": os.environ.get("RFT_SANDBOX_TOKEN") or None,
        "run": os.environ.get("RFT_SANDBOX_RUN") or None,
        "caller": os.environ.get("RFT_SANDBOX_CALLER") or None,
    }
    if os.environ.get("RFT_SANDBOX_TIMEOUT"):
        values["timeout"] = float(os.environ["RFT_SANDBOX_TIMEOUT"])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ClientOptions(**values)


def spec_from_env(**overrides: Any) -> TaskSpec:
    """The task spec from RFT_SANDBOX_LANGUAGE (python, sql or triton), with overrides."""
    values: dict[str, Any] = {"language": os.environ.get("RFT_SANDBOX_LANGUAGE", "python")}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TaskSpec(**values)


def trainer_caller(trainer: str) -> str:
    """The audit trail's default caller for an adapter: the trainer, and the process's rank
    when the launcher (torchrun, accelerate, Ray Train) set one."""
    rank = os.environ.get("RANK")
    return f"{trainer}:rank{rank}" if rank else trainer


ON_INFRA_ERROR_ENV = "RFT_SANDBOX_ON_INFRA_ERROR"  # zero (default) or raise


class SandboxUnavailableError(RuntimeError):
    """The service could not score a sample and the trainer cannot drop one: with
    `on_infra_error=raise` the step stops here rather than train on a 0 that is no verdict."""


def check_scored(results: Sequence[pb.Result], on_infra_error: str | None = None) -> None:
    """For a trainer that cannot drop a sample (verl): by default a SANDBOX_ERROR becomes a
    flagged 0; with `raise` (or RFT_SANDBOX_ON_INFRA_ERROR=raise) it stops the step. (Not
    OpenRLHF: its executor catches a reward function's exception and leaves the reward None.)"""
    mode = (on_infra_error or os.environ.get(ON_INFRA_ERROR_ENV) or "zero").lower()
    if mode not in ("zero", "raise"):
        raise ValueError(f"on_infra_error must be zero or raise, not {mode!r}")
    failed = [r for r in results if r.status == pb.SANDBOX_ERROR]
    if failed and mode == "raise":
        raise SandboxUnavailableError(
            f"the sandbox service could not score {len(failed)} of {len(results)} samples "
            f"(first: {failed[0].message[:300]}); on_infra_error=raise stops the step instead of a 0"
        )


def reward_value(result: pb.Result, component: str | None = None) -> float | None:
    """The reward for one result: its score, or one named component; None for SANDBOX_ERROR."""
    if result.status == pb.SANDBOX_ERROR:
        return None
    if component is None:
        return float(result.score)
    if result.status == pb.REJECTED:
        return 0.0  # a cheat earns nothing on any component
    return float(result.components.get(component, 0.0))


@dataclass(frozen=True)
class BatchSummary:
    """Figures for a trainer's logs: means over scored results, rates over all."""

    means: dict[str, float]  # "score" and each component seen
    rates: dict[str, float]  # "sandbox_error", "rejected", "passed", "finding/<code>"

    @classmethod
    def of(cls, results: Sequence[pb.Result]) -> BatchSummary:
        scored = [r for r in results if r.status != pb.SANDBOX_ERROR]
        means: dict[str, float] = {}
        if scored:
            means["score"] = sum(r.score for r in scored) / len(scored)
            for name in sorted({name for r in scored for name in r.components}):
                means[name] = sum(r.components.get(name, 0.0) for r in scored) / len(scored)
        total = max(len(results), 1)
        rates = {
            "sandbox_error": (len(results) - len(scored)) / total,
            "rejected": sum(r.status == pb.REJECTED for r in results) / total,
            "passed": sum(r.status == pb.PASSED for r in results) / total,
        }
        for code in sorted({f.code for r in results for f in r.findings}):
            rates[f"finding/{code}"] = sum(any(f.code == code for f in r.findings) for r in results) / total
        return cls(means, rates)


@dataclass
class RewardCore:
    """Builds tasks from (completion, row) pairs and scores them with one client per process."""

    spec: TaskSpec = field(default_factory=spec_from_env)
    options: ClientOptions = field(default_factory=options_from_env)
    caller: str | None = None  # the adapter's default caller (`trainer_caller`); the options' wins
    _sync: SandboxClient | None = field(default=None, repr=False)
    _async: AsyncSandboxClient | None = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "options": self.options, "caller": self.caller, "_sync": None, "_async": None}

    def tasks(self, completions: Sequence[Any], rows: Sequence[Mapping[str, Any]]) -> list[pb.Task]:
        return [self.spec.build(str(n), c, row) for n, (c, row) in enumerate(zip(completions, rows, strict=True))]

    def score(
        self, completions: Sequence[Any], rows: Sequence[Mapping[str, Any]], step: int | None = None
    ) -> list[pb.Result]:
        """`step`: the trainer's global step, for the service's audit trail (None: not known)."""
        if self._sync is None:
            self._sync = SandboxClient(self.options)
        tasks = self.tasks(completions, rows)
        return self._sync.score_all(tasks, step=step, caller=self.options.caller or self.caller)

    async def ascore(
        self, completions: Sequence[Any], rows: Sequence[Mapping[str, Any]], step: int | None = None
    ) -> list[pb.Result]:
        if self._async is None:
            self._async = AsyncSandboxClient(self.options)
        tasks = self.tasks(completions, rows)
        return await self._async.score_all(tasks, step=step, caller=self.options.caller or self.caller)


def rows_from_columns(count: int, columns: Mapping[str, Any]) -> list[dict[str, Any]]:
    """TRL passes dataset columns as keyword lists (one value per completion): one dict per row."""
    rows: list[dict[str, Any]] = [{} for _ in range(count)]
    for name, values in columns.items():
        if isinstance(values, (list, tuple)) and len(values) == count:
            for row, value in zip(rows, values, strict=True):
                row[name] = value
    return rows
