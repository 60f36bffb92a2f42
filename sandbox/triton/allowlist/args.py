"""The kinds a call passes, bound to a callee's parameters by functions.py.

A leaf module so that the Walker protocol (walker.py) can name it without depending on
functions.py, which depends on the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.triton.allowlist.values import Value


@dataclass(frozen=True)
class Args:
    positional: tuple[Value, ...] = ()
    star: Value | None = None  # what a `*xs` in the call holds
    keywords: tuple[tuple[str, Value], ...] = ()
    double_star: Value | None = None

    def values(self) -> list[Value]:
        extra = [v for v in (self.star, self.double_star) if v is not None]
        return [*self.positional, *(v for _, v in self.keywords), *extra]
