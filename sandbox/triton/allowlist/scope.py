"""One function activation under analysis: its names, where it runs, and whose method it is."""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox.triton.allowlist.module import ClassModel
from sandbox.triton.allowlist.tables import Context
from sandbox.triton.allowlist.values import Value


@dataclass
class Scope:
    context: Context
    env: dict[str, Value] = field(default_factory=dict)
    owner: ClassModel | None = None  # the class whose method this is
    this: Value | None = None  # the instance it runs on (`self`), for super()
    returned: Value | None = None

    def child(self) -> Scope:
        """A comprehension's or lambda's scope: sees the enclosing names, binds its own."""
        return Scope(self.context, dict(self.env), self.owner, self.this)
