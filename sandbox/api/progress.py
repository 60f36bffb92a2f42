"""What a person running `score` sees: a live bar on stderr while results stream in, a summary at the end.

Both score commands (the service's `rft-sandbox score` on an embedded service, the plugin's
`python -m trainer_plugin score` on a running one) draw through here, with rich. The bar
goes to stderr and only when stderr is a terminal (or `--progress` asks for it), so a
pipe or a log file never fills with redraws; the results go to their file, and stdout
holds only the summary, as a table or, with `--json`, as one JSON object for scripts.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from types import TracebackType
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Task as BarTask
from rich.table import Table
from rich.text import Text

from sandbox.api import pb

_SANDBOX_ERROR = pb.Status.Name(pb.SANDBOX_ERROR)


def add_options(score: argparse.ArgumentParser) -> None:
    """Both score commands' display options, which `Scoring` and `report` read."""
    score.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: only when stderr is a terminal)",
    )
    score.add_argument("--quiet", dest="progress", action="store_false", default=None, help="no progress bar")
    score.add_argument("--json", action="store_true", help="the summary as one JSON object on stdout (for scripts)")


def stderr_console(show: bool | None) -> Console | None:
    """The console to draw the bar on, or None for no bar. `show` None decides by stderr being a
    terminal (rich's test, which honours FORCE_COLOR and TTY_COMPATIBLE); True draws on anything."""
    if show is False:
        return None
    console = Console(stderr=True, force_terminal=True if show else None, highlight=False)
    return console if show or (console.is_terminal and not console.is_dumb_terminal) else None


class _RateColumn(ProgressColumn):
    """Tasks per second over the whole run: results come back in bursts (each batch's slowest task
    holds the next batch), so rich's windowed speed would swing; the ETA column still uses it."""

    def render(self, task: BarTask) -> Text:
        elapsed = task.finished_time if task.finished_time is not None else task.elapsed
        if not elapsed or not task.completed:
            return Text("? tasks/s", style="progress.data.speed")
        return Text(f"{task.completed / elapsed:.1f} tasks/s", style="progress.data.speed")


class _TallyColumn(ProgressColumn):
    """Passed and flagged (any finding) so far, and infrastructure failures in red as soon as there is one."""

    def render(self, task: BarTask) -> Text:
        text = Text(f"{task.fields['passed']} passed · {task.fields['flagged']} flagged")
        if task.fields["sandbox_errors"]:
            text.append(f", {task.fields['sandbox_errors']} {_SANDBOX_ERROR}", style="bold red")
        return text


class Scoring:
    """Times the scoring of `total` tasks and, given a console, draws the bar as each result arrives.

    A context manager: the bar is drawn between enter and exit (an error inside ends it first,
    so the error's message is not overdrawn); `elapsed_s` is the time from enter to the last result.
    """

    def __init__(self, total: int, console: Console | None) -> None:
        self.total = total
        self.elapsed_s = 0.0
        self._started = 0.0
        self._tally = {"passed": 0, "flagged": 0, "sandbox_errors": 0}
        self._bar = (
            Progress(
                BarColumn(bar_width=20),
                MofNCompleteColumn(),
                _RateColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                _TallyColumn(),
                console=console,
                redirect_stdout=False,  # stdout is the summary's: nothing of the bar's goes there
                speed_estimate_period=60.0,
            )
            if console is not None
            else None
        )
        self._task = self._bar.add_task("scoring", total=total, **self._tally) if self._bar is not None else None

    def __enter__(self) -> Scoring:
        self._started = time.monotonic()
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, result: pb.Result) -> None:
        self.elapsed_s = time.monotonic() - self._started
        self._tally["passed"] += result.status == pb.PASSED
        self._tally["flagged"] += bool(result.findings)
        self._tally["sandbox_errors"] += result.status == pb.SANDBOX_ERROR
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=1, **self._tally)


def summary(results: list[pb.Result], elapsed_s: float) -> dict[str, Any]:
    """The numbers of a run, as `--json` prints them and the table shows them."""
    statuses = Counter(pb.Status.Name(r.status) for r in results)
    findings = Counter((f.code, pb.Severity.Name(f.severity)) for r in results for f in r.findings)
    flagged = Counter(key for r in results for key in {(f.code, pb.Severity.Name(f.severity)) for f in r.findings})
    return {
        "tasks": len(results),
        "statuses": dict(statuses.most_common()),
        "sandbox_errors": statuses[_SANDBOX_ERROR],
        "mean_score": sum(r.score for r in results) / len(results) if results else 0.0,
        "findings": [
            {"code": code, "severity": severity, "tasks": flagged[code, severity], "count": count}
            for (code, severity), count in sorted(findings.items(), key=lambda item: (-flagged[item[0]], item[0]))
        ],
        "elapsed_s": round(elapsed_s, 3),
        "tasks_per_s": round(len(results) / elapsed_s, 3) if elapsed_s > 0 else 0.0,
    }


def print_summary(numbers: dict[str, Any], console: Console) -> None:
    """Counts and shares by status (SANDBOX_ERROR always listed, red when not zero: trainers drop
    those results, so they are worth seeing), then the findings by code and severity: how many
    tasks carry each, and how many times it was found (a cheat is often caught twice, statically
    and at run time)."""
    total = numbers["tasks"]
    table = Table(title="score summary", box=box.SIMPLE_HEAD)
    table.add_column("status")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    statuses = dict(numbers["statuses"])
    statuses.setdefault(_SANDBOX_ERROR, 0)
    for name, count in statuses.items():
        style = ("bold red" if count else "dim") if name == _SANDBOX_ERROR else None
        table.add_row(name, str(count), _share(count, total), style=style)
    table.add_section()
    table.add_row("tasks", str(total), _share(total, total), style="bold")
    table.add_row("mean score", f"{numbers['mean_score']:.3f}", "")
    table.add_row("time", f"{numbers['elapsed_s']:.1f} s", "")
    table.add_row("rate", f"{numbers['tasks_per_s']:.1f} tasks/s", "")
    console.print(table)
    if numbers["sandbox_errors"]:
        line = f"{numbers['sandbox_errors']} {_SANDBOX_ERROR}: the service's failures, not the candidates': retry them"
        console.print(Text(line, style="bold red"))
    if numbers["findings"]:
        found = Table(title="findings", box=box.SIMPLE_HEAD)
        found.add_column("code")
        found.add_column("severity")
        found.add_column("tasks", justify="right")
        found.add_column("findings", justify="right")
        for f in numbers["findings"]:
            style = "red" if f["severity"] == pb.Severity.Name(pb.CRITICAL) else None
            found.add_row(f["code"], f["severity"], str(f["tasks"]), str(f["count"]), style=style)
        console.print(found)


def report(results: list[pb.Result], scoring: Scoring, out: str, *, as_json: bool) -> None:
    """The end of both score commands, on stdout: the table and the results' path, or one JSON object."""
    numbers = summary(results, scoring.elapsed_s)
    if as_json:
        print(json.dumps({**numbers, "results": out}))
        return
    print_summary(numbers, Console(highlight=False))
    print(f"results: {out}")


def _share(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}%" if total else "-"
