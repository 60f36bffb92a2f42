"""Findings, each with the line and the construct that caused it, once per construct."""

from __future__ import annotations

import ast

from rewards.model import Finding, Severity

_EVIDENCE = 200
_MAX_FINDINGS = 60  # a candidate with 600 offending terms gets the first ones, not 600 findings


class Code:
    NO_KERNEL = "no_triton_kernel"
    NOT_LAUNCHED = "kernel_not_launched"
    TORCH_COMPUTE = "torch_compute_in_forward"
    FORBIDDEN = "forbidden_construct"
    FALLBACK = "fallback_path"
    CACHE = "module_level_cache"  # also state kept in `self` across calls
    REFERENCE = "reference_access"
    INTROSPECTION = "introspection"  # frames, the heap, dunder attributes, globals()
    NOT_ALLOWLISTED = "not_allowlisted"  # anything else the allow-list does not name
    UNANALYZABLE = "unanalyzable"


class Report:
    def __init__(self, code: str) -> None:
        self._code = code
        self._lines: list[bytes] | None = None
        self._seen: set[tuple[str, str]] = set()
        self.findings: list[Finding] = []

    def add(self, code: str, message: str, node: ast.AST | None = None) -> None:
        evidence = self.evidence(node) if node is not None else ""
        key = (code, evidence)
        if key in self._seen or len(self.findings) >= _MAX_FINDINGS:
            return
        self._seen.add(key)
        self.findings.append(Finding(code, Severity.CRITICAL, message, evidence))

    def has(self, code: str) -> bool:
        return any(f.code == code for f in self.findings)

    def evidence(self, node: ast.AST) -> str:
        """`line N: <source of the construct>` (its first lines, cut at the evidence size)."""
        line = getattr(node, "lineno", None)
        if line is None:
            return ""
        if self._lines is None:
            self._lines = [text.encode() for text in self._code.splitlines()]
        end = min(getattr(node, "end_lineno", line) or line, line + 4)
        chunk = self._lines[line - 1 : end]
        if not chunk:
            return f"line {line}"
        if getattr(node, "end_lineno", None) == end:
            chunk[-1] = chunk[-1][: node.end_col_offset]  # type: ignore[attr-defined]
        chunk[0] = chunk[0][node.col_offset :]  # type: ignore[attr-defined]
        text = "\n".join(part.decode(errors="replace") for part in chunk)
        return f"line {line}: {text}"[:_EVIDENCE]
