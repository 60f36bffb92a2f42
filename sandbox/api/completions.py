"""Pull the Python program out of a raw model completion: one rule for both sides of the wire.

The trainer plugin applies it to Python completions before sending them (a Python task's
`code` is the program itself); the service applies it to Triton completions, which travel
raw. SQL has its own extractor on the service side (`sandbox/sql/extract.py`).
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^\s*```\s*([\w+-]*)\s*$")


def extract_code(completion: str) -> str:
    """The last ```python / ```py / untagged fenced block, else the whole completion.

    An unclosed last fence (a completion cut off by the token limit) counts up to the end.
    """
    blocks: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for line in completion.splitlines():
        match = _FENCE.match(line)
        if current is None:
            if match:
                current = []
                blocks.append((match.group(1).lower(), current))
        elif match and not match.group(1):
            current = None
        else:
            current.append(line)
    python = [body for tag, body in blocks if tag in ("", "python", "py", "python3")]
    return "\n".join(python[-1]) + "\n" if python else completion
