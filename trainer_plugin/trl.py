"""TRL (1.x `GRPOTrainer`, and `RLOOTrainer` which shares its reward interface).

    from trainer_plugin.trl import SandboxReward
    trainer = GRPOTrainer(..., reward_funcs=[SandboxReward(TaskSpec("python"), name="tests")])

or, configured from the environment (RFT_SANDBOX_TARGETS, RFT_SANDBOX_LANGUAGE, ...):

    trl grpo ... --reward_funcs trainer_plugin.trl.sandbox_reward

TRL calls a reward function with `prompts`, `completions`, `completion_ids`, every other
dataset column as a keyword list (one value per completion), and `trainer_state`,
`log_metric`, `log_extra`. The whole batch goes to the service in one scoring call, with
`trainer_state.global_step` as the call's step (the service's audit trail records it; the run
name comes from RFT_SANDBOX_RUN or `ClientOptions(run=...)`: TRL's `args.run_name` is not
among the reward function's arguments). A
SANDBOX_ERROR comes back as None, which TRL turns into NaN and leaves out (never a 0 that
would teach the model a wrong lesson). Means of the score's components and the rate of
each finding go to `log_metric` (TRL's logs), status and findings per completion to
`log_extra` (the completions table).

Several named rewards from one scoring call, for `reward_weights`:

    rewards = SandboxRewards(TaskSpec("triton"), components={"correct": "correctness", "fast": "speedup_bonus"})
    GRPOTrainer(..., reward_funcs=rewards.functions, args=GRPOConfig(reward_weights=[1.0, 0.5]))
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sandbox.api import pb
from trainer_plugin.client import ClientOptions
from trainer_plugin.rewards import BatchSummary, RewardCore, reward_value, rows_from_columns, trainer_caller
from trainer_plugin.tasks import TaskSpec, completion_text

_TRAINER_KWARGS = ("trainer_state", "log_metric", "log_extra", "environments")


def _batch_key(completions: Sequence[Any], rows: Sequence[Mapping[str, Any]]) -> tuple[Any, ...]:
    return tuple(completion_text(c) for c in completions), tuple(repr(sorted(r.items())) for r in rows)


def global_step(kwargs: Mapping[str, Any]) -> int | None:
    """The step TRL is at: its `trainer_state` (a transformers TrainerState) holds `global_step`."""
    step = getattr(kwargs.get("trainer_state"), "global_step", None)
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _log(results: Sequence[pb.Result], prefix: str, kwargs: Mapping[str, Any]) -> None:
    log_metric, log_extra = kwargs.get("log_metric"), kwargs.get("log_extra")
    if callable(log_metric):
        summary = BatchSummary.of(results)
        for name, value in summary.means.items():
            log_metric(f"{prefix}/{name}", value)
        for name, value in summary.rates.items():
            log_metric(f"{prefix}/{name}_rate" if "/" not in name else f"{prefix}/{name}", value)
    if callable(log_extra):
        log_extra(f"{prefix}_status", [pb.Status.Name(r.status) for r in results])
        log_extra(f"{prefix}_findings", [",".join(sorted({f.code for f in r.findings})) for r in results])


class SandboxRewards:
    """One scoring call per batch, any number of named reward functions reading it.

    `components` maps each function's name to what it returns: None for the score, or a
    component's name (a REJECTED result is 0 on every component). `asynchronous` makes the
    functions coroutines, which TRL runs concurrently on its event-loop thread.
    """

    def __init__(
        self,
        spec: TaskSpec | None = None,
        options: ClientOptions | None = None,
        *,
        components: Mapping[str, str | None] | None = None,
        asynchronous: bool = False,
        log_prefix: str = "sandbox",
    ) -> None:
        core_args = {k: v for k, v in (("spec", spec), ("options", options)) if v is not None}
        self.core = RewardCore(**core_args, caller=trainer_caller("trl"))
        self.components = dict(components or {"sandbox": None})
        self.asynchronous = asynchronous
        self.log_prefix = log_prefix
        self._last: tuple[tuple[Any, ...], list[pb.Result]] | None = None
        self._pending: dict[tuple[Any, ...], asyncio.Future[list[pb.Result]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_last": None, "_pending": {}}

    @property
    def functions(self) -> list[Callable[..., Any]]:
        kind = _AsyncFunction if self.asynchronous else _Function
        return [kind(self, name, component) for name, component in self.components.items()]

    def _split(self, completions: Sequence[Any], kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
        columns = {k: v for k, v in kwargs.items() if k not in _TRAINER_KWARGS}
        return rows_from_columns(len(completions), columns)

    def results(self, completions: Sequence[Any], kwargs: Mapping[str, Any]) -> list[pb.Result]:
        rows = self._split(completions, kwargs)
        key = (*_batch_key(completions, rows), global_step(kwargs))  # a batch sent again later is scored again
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        results = self.core.score(completions, rows, global_step(kwargs))
        self._last = (key, results)
        _log(results, self.log_prefix, kwargs)
        return results

    async def aresults(self, completions: Sequence[Any], kwargs: Mapping[str, Any]) -> list[pb.Result]:
        rows = self._split(completions, kwargs)
        key = (*_batch_key(completions, rows), global_step(kwargs))  # a batch sent again later is scored again
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        pending = self._pending.get(key)
        if pending is not None:  # a sibling function is scoring this batch right now
            return await asyncio.shield(pending)
        future: asyncio.Future[list[pb.Result]] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            results = await self.core.ascore(completions, rows, global_step(kwargs))
            self._last = (key, results)
            _log(results, self.log_prefix, kwargs)
            future.set_result(results)
            return results
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            del self._pending[key]


class _Function:
    """One named reward over a shared `SandboxRewards` (TRL logs `rewards/<__name__>/mean`)."""

    def __init__(self, owner: SandboxRewards, name: str, component: str | None) -> None:
        self.owner = owner
        self.__name__ = name
        self.component = component

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
    ) -> list[float | None]:
        results = self.owner.results(completions, {"prompt": prompts, **kwargs})
        return [reward_value(r, self.component) for r in results]


class _AsyncFunction(_Function):
    """The same as a coroutine function: TRL gathers async rewards on its event-loop thread."""

    async def __call__(  # type: ignore[override]
        self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
    ) -> list[float | None]:
        results = await self.owner.aresults(completions, {"prompt": prompts, **kwargs})
        return [reward_value(r, self.component) for r in results]


def SandboxReward(
    spec: TaskSpec | None = None,
    options: ClientOptions | None = None,
    *,
    name: str = "sandbox",
    component: str | None = None,
    asynchronous: bool = False,
) -> Callable[..., Any]:
    """One reward function: the score (or one component) of each completion."""
    return SandboxRewards(spec, options, components={name: component}, asynchronous=asynchronous).functions[0]


class _EnvReward:
    """`trainer_plugin.trl.sandbox_reward`: configured from the environment when first called
    (so importing this module never needs a service, nor the variables set yet)."""

    __name__ = "sandbox"

    def __init__(self) -> None:
        self._function: Callable[..., Any] | None = None

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        if self._function is None:
            self._function = SandboxReward()
        return self._function(prompts, completions, **kwargs)


sandbox_reward = _EnvReward()
