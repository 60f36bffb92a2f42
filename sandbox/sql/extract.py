"""Pull the SQL out of a raw model completion.

Models wrap answers in prose and Markdown fences, and sometimes show a draft before the
final query. The rule is deliberately small and deterministic so a reward never depends
on guessing intent:

1. the body of the LAST fenced block (```` ``` ````) whose info string names SQL
   (``sql``, ``sqlite``, ``sqlite3``, ``postgresql``, ``postgres``, ``pgsql``,
   ``duckdb``; any letter case);
2. otherwise the body of the last fenced block of any kind;
3. otherwise the whole completion.

A fence opens with three backticks followed by an optional info word and the rest of that
line; its body runs to the next three backticks or, for a truncated completion, to the end
of the text. The result is stripped, and one trailing ``;`` (with the whitespace around
it) is dropped. Nothing else is rewritten: whether the text is one safe statement is the
gate's job, not the extractor's.
"""

from __future__ import annotations

import re

SQL_FENCE_TAGS = frozenset({"sql", "sqlite", "sqlite3", "postgresql", "postgres", "pgsql", "duckdb"})
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def extract_sql(completion: str) -> str:
    """The candidate query in `completion` (see the module docstring for the rule)."""
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(completion)]
    sql_blocks = [body for tag, body in blocks if tag in SQL_FENCE_TAGS]
    if sql_blocks:
        text = sql_blocks[-1]
    elif blocks:
        text = blocks[-1][1]
    else:
        text = completion
    text = text.strip()
    if text.endswith(";"):
        text = text[:-1].rstrip()
    return text
