"""Turn a trainer's (completion, dataset row) into a sandbox task.

Trainers hand a reward function the generated completion (a string, or chat messages
whose last message is the model's) and the dataset row's columns. A `TaskSpec` says which
language the task is and which columns hold its tests; a column the row lacks is a clear
error naming it and the columns that are there (a configuration mistake, raised at once).

Code extraction: Python candidates are taken from the last ```python fence (or an
optional `<tag>...</tag>` pair) on this side; SQL and Triton completions go to the service
raw, which extracts them itself by the same rules.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.api import pb
from sandbox.api.completions import extract_code

LANGUAGES = ("python", "sql", "triton")
# role -> default dataset column, per language
DEFAULT_COLUMNS: dict[str, dict[str, str]] = {
    "python": {
        "entry_point": "entry_point",
        "assert_code": "test",  # HumanEval / MBPP-style asserts
        "call_tests": "call_tests",  # JSON list of {"args": [...], "kwargs": {...}, "expected": ...}
        "io_tests": "io_tests",  # JSON list of {"stdin": ..., "stdout": ...}
        # trusted code the asserts may use (HumanEval's prompt defines `poly`...); the default
        # column is taken only when it holds Python that defines something
        "setup_code": "prompt",
    },
    "sql": {"database": "db_id", "gold_sql": "gold_sql", "expected_json": "expected_json"},
    "triton": {"reference": "reference"},
}


class TaskBuildError(ValueError):
    """The dataset row cannot make a task (a missing or malformed column)."""


def completion_text(completion: Any) -> str:
    """A completion as text: a string, or chat messages (the last message's content,
    whose parts are joined when it is a list of typed parts)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if isinstance(completion, (list, tuple)) and completion:
        content = completion[-1].get("content", "") if isinstance(completion[-1], Mapping) else completion[-1]
        if isinstance(content, list):
            return "".join(str(p.get("text", "")) if isinstance(p, Mapping) else str(p) for p in content)
        return str(content)
    return ""


@dataclass(frozen=True)
class TaskSpec:
    language: str = "python"
    columns: Mapping[str, str] = field(default_factory=dict)  # role -> column, over DEFAULT_COLUMNS
    tag: str | None = None  # take the code from the last <tag>...</tag> first
    extract: bool = True  # Python: take the last fenced block (False: the completion as is)
    limits: pb.Limits | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # extra spec fields, e.g. {"trials": 3}

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)} (got {self.language!r})")
        unknown = set(self.columns) - set(DEFAULT_COLUMNS[self.language])
        if unknown:
            known = ", ".join(DEFAULT_COLUMNS[self.language])
            raise ValueError(f"unknown column roles {sorted(unknown)} for {self.language} (known: {known})")

    def column(self, role: str) -> str:
        return self.columns.get(role, DEFAULT_COLUMNS[self.language][role])

    def code(self, completion: Any) -> str:
        text = completion_text(completion)
        if self.tag:
            found = re.findall(rf"<{re.escape(self.tag)}>(.*?)(?:</{re.escape(self.tag)}>|\Z)", text, re.S)
            text = found[-1] if found else text
        if self.language == "python" and self.extract:
            text = extract_code(text)
        return text

    def build(self, task_id: str, completion: Any, row: Mapping[str, Any]) -> pb.Task:
        task = pb.Task(id=task_id, code=self.code(completion) or " ")
        if self.limits is not None:
            task.limits.CopyFrom(self.limits)
        if self.language == "python":
            task.language = pb.PYTHON
            task.python.CopyFrom(self._python(row))
        elif self.language == "sql":
            task.language = pb.SQL
            task.sql.CopyFrom(self._sql(row))
        else:
            task.language = pb.TRITON
            task.triton.CopyFrom(pb.TritonSpec(reference=self._get(row, "reference"), **self.options))
        return task

    def _get(self, row: Mapping[str, Any], role: str, required: bool = True) -> Any:
        name = self.column(role)
        if name in row and row[name] is not None:
            return row[name]
        if required:
            have = ", ".join(sorted(map(str, row))) or "none"
            raise TaskBuildError(
                f"the dataset row has no column {name!r} ({self.language} {role}); columns: {have}. "
                f"Map another column with TaskSpec(columns={{{role!r}: '<column>'}})"
            )
        return None

    def _python(self, row: Mapping[str, Any]) -> pb.PythonSpec:
        spec = pb.PythonSpec(**self.options)
        entry = self._get(row, "entry_point", required=False)
        if entry:
            spec.entry_point = str(entry)
        calls, io = self._get(row, "call_tests", required=False), self._get(row, "io_tests", required=False)
        if calls is not None:
            for case in _json_list(calls, self.column("call_tests")):
                spec.call_tests.add(
                    args_json=json.dumps(case.get("args", [])),
                    kwargs_json=json.dumps(case.get("kwargs", {})),
                    expected_json=json.dumps(case.get("expected")),
                )
        elif io is not None:
            for case in _json_list(io, self.column("io_tests")):
                spec.io_tests.add(stdin=str(case.get("stdin", "")), expected_stdout=str(case.get("stdout", "")))
        else:
            asserts = self._get(row, "assert_code")
            spec.assert_code = "\n".join(map(str, asserts)) if isinstance(asserts, (list, tuple)) else str(asserts)
            setup = self._get(row, "setup_code", required=False)
            if isinstance(setup, str) and ("setup_code" in self.columns or defines_python(setup)):
                spec.setup_code = setup
        return spec

    def _sql(self, row: Mapping[str, Any]) -> pb.SqlSpec:
        spec = pb.SqlSpec(database=str(self._get(row, "database")), **self.options)
        gold = self._get(row, "gold_sql", required=False)
        if gold is not None:
            spec.gold_sql = str(gold)
        else:
            expected = self._get(row, "expected_json")
            spec.expected_json = expected if isinstance(expected, str) else json.dumps(expected)
        return spec


def defines_python(text: str) -> bool:
    """Whether a prompt is Python source that defines something (a function, a class, an
    import): HumanEval's prompts are, chat prompts and prose are not."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    return any(isinstance(stmt, definitions) for stmt in tree.body)


def _json_list(value: Any, column: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise TaskBuildError(f"column {column!r} is not JSON: {exc}") from None
    if not isinstance(value, list) or not all(isinstance(case, Mapping) for case in value):
        raise TaskBuildError(f"column {column!r} must be a list of objects")
    return value
