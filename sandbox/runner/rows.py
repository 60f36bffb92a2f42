"""Fetching result rows up to a row cap and a byte cap, as tagged-JSON-ready values.

Shared by every SQL engine: SQLite and DuckDB inside the sandbox, PostgreSQL on the
service side. Stdlib only and free of sibling imports (the runner loads it as a
top-level module, the service as `sandbox.runner.rows`).
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Sequence
from typing import Any


def plain(value: Any) -> Any:
    """Engine values as plain data: numbers, text, bytes and NULL stay; the rest is text."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, decimal.Decimal):
        # the scale is the SQL type: numeric 15 (SUM of a bigint) is an integer, 2.0000 (AVG)
        # a fractional number, compared with the tolerance however integral its value
        if value.is_finite() and value.as_tuple().exponent >= 0 and abs(value) < 2**63:
            return int(value)
        return float(value)
    return str(value)  # dates, times, UUIDs, intervals: compared as text


class RowCap:
    """Accumulates encoded rows until `max_rows` or `max_bytes` would be passed."""

    def __init__(self, max_rows: int, max_bytes: int, encode: Callable[[Any], Any]) -> None:
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.encode = encode
        self.rows: list[Any] = []
        self.size = 0
        self.truncated = False

    def add(self, batch: Sequence[Sequence[Any]]) -> bool:
        """Take a fetched batch; False once the caps are reached (stop fetching)."""
        for row in batch:
            encoded = self.encode([plain(v) for v in row])
            self.size += len(repr(encoded))
            if len(self.rows) >= self.max_rows or self.size > self.max_bytes:
                self.truncated = True
                return False
            self.rows.append(encoded)
        return bool(batch)

    def record(self, columns: list[str]) -> dict[str, Any]:
        return {"kind": "ok", "columns": columns, "rows": self.rows, "truncated": self.truncated}
