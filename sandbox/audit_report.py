"""What `rft-sandbox audit` shows people: rich tables, the trend's plot (PNG) and a
self-contained HTML report.

The HTML report carries everything inline (the plot as a base64 PNG data URI, the table,
the style) so it opens from a file, a CI artifact or a mail attachment with no network and
nothing else beside it. Plots use matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from sandbox.api import pb
from sandbox.audit_query import INCOMPLETE_NOTE
from sandbox.audit_record import decode_blob

_LEXERS = {"python": "python", "triton": "python", "sql": "sql"}
_SUMMARY_SECTIONS = (
    ("by_code", "findings by code"),
    ("by_severity", "attempts by worst severity"),
    ("by_language", "by language"),
    ("by_caller", "by caller"),
    ("by_run", "by run"),
    ("top_tasks", "top offending tasks"),
    ("events", "service events"),
)


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*("" if value is None else str(value) for value in row))
    return out


def _dict_table(title: str, rows: list[dict[str, Any]]) -> Table:
    columns = list(rows[0]) if rows else ["(none)"]
    return table(title, columns, ([row[c] for c in columns] for row in rows))


def print_summary(console: Console, data: dict[str, Any]) -> None:
    totals = data["totals"]
    console.print(
        f"[bold]{totals['attempts']}[/] attempts, [bold]{totals['flagged']}[/] with findings "
        f"({totals['findings']} findings), {totals['events']} service events"
    )
    for key, title in _SUMMARY_SECTIONS:
        if data[key]:
            console.print(_dict_table(title, data[key]))


def trend_rows(data: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The trend as one table: a row per step, per code `flagged/attempts (rate)`."""
    columns = ["step", "attempts", "flagged", *data["codes"]]
    rows = []
    for step in data["steps"]:
        cells = [step["step"], step["attempts"], step["flagged"]]
        for code in data["codes"]:
            hit = step["codes"].get(code)
            cells.append(f"{hit['attempts']}/{step['attempts']} ({hit['rate']:.1%})" if hit else "0")
        rows.append(cells)
    return columns, rows


def print_trend(console: Console, data: dict[str, Any]) -> None:
    if not data["complete"]:
        console.print(f"[yellow]note:[/] {INCOMPLETE_NOTE}")
    if data["attempts_without_step"]:
        console.print(f"{data['attempts_without_step']} attempts carry no step (no rft-step metadata): not shown")
    columns, rows = trend_rows(data)
    console.print(
        table("cheat rate per training step (attempts with the finding / attempts at the step)", columns, rows)
    )


def plot_png(data: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 4.5), dpi=100)
    axes = figure.subplots()
    steps = [row["step"] for row in data["steps"]]
    for code in data["codes"]:
        rates = [row["codes"].get(code, {"rate": 0.0})["rate"] for row in data["steps"]]
        axes.plot(steps, rates, marker="o", label=code)
    axes.set_xlabel("training step")
    axes.set_ylabel("attempts with the finding / attempts")
    axes.set_ylim(bottom=0)
    axes.set_title("cheat rate per training step" + ("" if data["complete"] else " (flagged attempts only)"))
    axes.grid(True, alpha=0.3)
    if data["codes"]:
        axes.legend(loc="upper left", fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def trend_html(data: dict[str, Any], png: bytes, title: str = "rft-sandbox audit: cheat rate per step") -> str:
    columns, rows = trend_rows(data)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    note = "" if data["complete"] else f'<p class="note">{html.escape(INCOMPLETE_NOTE)}</p>'
    image = base64.b64encode(png).decode("ascii")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin-top: 16px; }}
th, td {{ border: 1px solid #bbb; padding: 4px 10px; text-align: right; }}
th {{ background: #eee; }}
.note {{ color: #a60; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
{note}
<img id="plot" alt="cheat rate per training step" src="data:image/png;base64,{image}">
<table id="trend"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
</body></html>
"""


def write_report(data: dict[str, Any], png_path: str | None, html_path: str | None) -> None:
    png = plot_png(data)
    if png_path:
        Path(png_path).write_bytes(png)
    if html_path:
        Path(html_path).write_text(trend_html(data, png), encoding="utf-8")


def decoded(record: dict[str, Any]) -> tuple[str | None, pb.Task | None]:
    """The stored code and task (None where the writer stored none)."""
    code = decode_blob(record["code_z"]) if record.get("code_z") else None
    task = None
    if record.get("task"):
        task = json_format.Parse(decode_blob(record["task"]), pb.Task(), ignore_unknown_fields=True)
    return code, task


def evidence_lines(code: str, evidences: Iterable[str]) -> set[int]:
    """1-based lines of `code` where any line of an evidence excerpt occurs."""
    lines = code.splitlines()
    hits: set[int] = set()
    for evidence in evidences:
        for piece in (p.strip() for p in evidence.splitlines()):
            if piece:
                hits.update(n for n, line in enumerate(lines, 1) if piece in line)
    return hits


def _tests(task: pb.Task) -> Table | Text:
    spec_name = task.WhichOneof("spec")
    if spec_name is None:
        return Text("(no spec)")
    spec = json_format.MessageToDict(getattr(task, spec_name), preserving_proto_field_name=True)
    return Text(f"{spec_name}: " + json.dumps(spec, indent=2, ensure_ascii=False))


def print_attempt(console: Console, record: dict[str, Any]) -> None:
    code, task = decoded(record)
    fields = ("id", "time", "run", "step", "caller", "principal", "task_id", "task_key", "language", "status", "score")
    console.print(table(f"attempt {record['id']}", ("field", "value"), ((f, record.get(f)) for f in fields)))
    components = record.get("components") or {}
    if components:
        console.print(table("components", ("component", "value"), sorted(components.items())))
    findings = record.get("findings") or []
    if findings:
        rows = ((f["severity"], f["code"], f["message"], f["evidence"]) for f in findings)
        console.print(table("findings", ("severity", "code", "message", "evidence"), rows))
    if code is None:
        console.print(f"code not stored (sha256 {record.get('code_sha256')}, {record.get('code_bytes')} bytes)")
    else:
        marked = evidence_lines(code, (f["evidence"] for f in findings))
        truncated = " (truncated)" if record.get("code_truncated") else ""
        syntax = Syntax(
            code,
            _LEXERS.get(record.get("language") or "", "text"),
            line_numbers=True,
            highlight_lines=marked,
            word_wrap=True,
        )
        note = f"evidence on line(s) {', '.join(map(str, sorted(marked)))}" if marked else "no evidence line found"
        console.print(Panel(Group(syntax, Text(note, style="bold red")), title=f"code{truncated}"))
    if task is not None:
        console.print(Panel(_tests(task), title="task (tests)"))


def attempt_json(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its code and task decoded, for --json."""
    code, task = decoded(record)
    out = {k: v for k, v in record.items() if k not in ("code_z", "task")}
    out["code"] = code
    out["task"] = json_format.MessageToDict(task, preserving_proto_field_name=True) if task is not None else None
    return out


def print_rows(console: Console, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    console.print(table(None, columns, rows))
    console.print(f"{len(rows)} row(s)")
