"""A tiny dataset for running real TRL `GRPOTrainer` steps on the CPU, with the tiny local
model of `trainer_plugin/tiny_model.py`: eight functions with their asserts.

`datasets` is imported inside `tiny_dataset`, so importing this module is cheap; tests
should `pytest.importorskip("trl")`.
"""

from __future__ import annotations

from typing import Any

_TASKS = [
    ("add", "def add(a, b):", ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]),
    ("sub", "def sub(a, b):", ["assert sub(5, 3) == 2"]),
    ("mul", "def mul(x, y):", ["assert mul(3, 4) == 12"]),
    ("is_even", "def is_even(n):", ["assert is_even(4)", "assert not is_even(3)"]),
    ("reverse", "def reverse(s):", ["assert reverse('abc') == 'cba'"]),
    ("total", "def total(xs):", ["assert total([1, 2, 3]) == 6"]),
    ("max_of", "def max_of(xs):", ["assert max_of([3, 9, 2]) == 9"]),
    ("fib", "def fib(n):", ["assert fib(10) == 55"]),
]


def tiny_rows(n: int) -> list[dict[str, Any]]:
    """`n` rows: a plain-string "prompt" plus "task_id", "entry_point" and "tests" columns."""
    rows = []
    for i in range(n):
        entry_point, signature, tests = _TASKS[i % len(_TASKS)]
        rows.append(
            {
                "prompt": f"Complete the function so that all the tests pass.\n{signature}\n",
                "task_id": f"tiny/{i}",
                "entry_point": entry_point,
                "tests": list(tests),
            }
        )
    return rows


def tiny_dataset(n: int = 8) -> Any:
    """`tiny_rows(n)` as a `datasets.Dataset` (a list of dicts when `datasets` is not installed)."""
    rows = tiny_rows(n)
    try:
        from datasets import Dataset
    except ImportError:
        return rows
    return Dataset.from_list(rows)
