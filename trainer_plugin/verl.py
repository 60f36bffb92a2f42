"""verl: the sandbox as `custom_reward_function`.

    reward.custom_reward_function.path=<site-packages>/trainer_plugin/verl.py
    reward.custom_reward_function.name=compute_score          # or compute_score_async
    +reward.custom_reward_function.reward_kwargs.targets=127.0.0.1:50051
    +reward.custom_reward_function.reward_kwargs.language=python

verl 0.9 calls `compute_score(data_source=..., solution_str=..., ground_truth=...,
extra_info=..., **reward_kwargs)` per sample (`solution_str`: the decoded response
without the prompt); an `async def` is awaited, many at once, by its reward loop. verl
stacks every sample's dict by the first sample's keys, hence the fixed keys. The task's columns
come from `extra_info` and from `ground_truth` (a JSON object's keys, or the string itself
as `ground_truth`). verl cannot drop a sample, so the answer is always a dict with the
same keys: `score` (0 for an infrastructure failure), every numeric component, and
`infra_error` (1 when the service could not score it: filter on it). With
`reward_kwargs.on_infra_error=raise` (or RFT_SANDBOX_ON_INFRA_ERROR=raise) such a sample
raises `SandboxUnavailableError` instead: the step stops rather than train on that 0.

The audit trail's context: the run from `reward_kwargs.run` or RFT_SANDBOX_RUN, the caller from
`reward_kwargs.caller` or RFT_SANDBOX_CALLER (default "verl"). verl 0.9 passes no training step
to a reward function (its `extra_info` holds the dataset's columns, `num_turns` and
`rollout_reward_scores`; the step stays in the batch's meta_info), so records carry none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sandbox.api import pb
from trainer_plugin.rewards import COMPONENTS, RewardCore, check_scored, options_from_env, spec_from_env, trainer_caller

_cores: dict[tuple[Any, ...], RewardCore] = {}  # one client per configuration, per process


def _core(kwargs: Mapping[str, Any]) -> RewardCore:
    key = tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
    if key not in _cores:
        options = options_from_env(
            targets=kwargs.get("targets"),
            token=kwargs.get("token"),
            timeout=kwargs.get("timeout"),
            run=kwargs.get("run"),
            caller=kwargs.get("caller"),
        )
        spec = spec_from_env(language=kwargs.get("language"), columns=kwargs.get("columns") or None)
        _cores[key] = RewardCore(spec, options, caller=trainer_caller("verl"))
    return _cores[key]


def _row(ground_truth: Any, extra_info: Mapping[str, Any] | None) -> dict[str, Any]:
    row: dict[str, Any] = dict(extra_info or {})
    if isinstance(ground_truth, str):
        try:
            parsed = json.loads(ground_truth)
        except ValueError:
            parsed = None
        ground_truth = parsed if isinstance(parsed, dict) else ground_truth
    if isinstance(ground_truth, Mapping):
        row.update(ground_truth)
    else:
        row["ground_truth"] = ground_truth
    return row


def _answer(result: pb.Result) -> dict[str, float]:
    infra = result.status == pb.SANDBOX_ERROR
    answer = {"score": 0.0 if infra else float(result.score), "infra_error": float(infra)}
    answer.update({name: 0.0 if infra else float(result.components.get(name, 0.0)) for name in COMPONENTS})
    answer["passed"] = float(result.status == pb.PASSED)
    answer["rejected"] = float(result.status == pb.REJECTED)
    return answer


def compute_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None, **kwargs: Any
) -> dict[str, float]:
    core = _core(kwargs)
    (result,) = core.score([solution_str], [_row(ground_truth, extra_info)])
    check_scored([result], kwargs.get("on_infra_error"))
    return _answer(result)


async def compute_score_async(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None, **kwargs: Any
) -> dict[str, float]:
    """The same, for verl's asynchronous reward loop: many samples in flight at once."""
    core = _core(kwargs)
    (result,) = await core.ascore([solution_str], [_row(ground_truth, extra_info)])
    check_scored([result], kwargs.get("on_infra_error"))
    return _answer(result)


def compute_score_batch(
    data_sources: list[str],
    solution_strs: list[str],
    ground_truths: list[Any],
    extra_infos: list[Mapping[str, Any] | None],
    **kwargs: Any,
) -> list[dict[str, float]]:
    """A whole batch in one scoring call, for batch-style reward managers and offline scoring."""
    core = _core(kwargs)
    rows = [_row(g, e) for g, e in zip(ground_truths, extra_infos, strict=True)]
    results = core.score(solution_strs, rows)
    check_scored(results, kwargs.get("on_infra_error"))
    return [_answer(r) for r in results]
