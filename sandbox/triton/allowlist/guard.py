"""Parsing a candidate within bounds the checker can analyse, whatever the candidate is.

`ast.parse` recurses on nesting, and how deep it can go depends on how deep the caller's
stack already is (measured on CPython 3.11: a chain of 2,500 `+` parses at the top of a
thread, 100 fail 900 frames down; 3,000 unary minuses or `lambda:`s end in RecursionError
or MemoryError). The checker itself recurses once or twice per level of an expression. So
before parsing, the source is measured (size, and operators per statement: a bound on the
depth of any expression in it), and after parsing, the tree's depth and size; a candidate
over any bound is unanalyzable, which rejects it. Honest kernels nest about 12 deep.
"""

from __future__ import annotations

import ast
import re

MAX_CHARS = 120_000
MAX_LINES = 6_000
MAX_OPERATORS_PER_STATEMENT = 1_500
MAX_DEPTH = 100
MAX_NODES = 60_000

# Strings and comments (skipped), brackets, line ends and the tokens that nest expressions.
_SCAN = re.compile(
    r"""(?P<skip>[rRbBuUfF]{0,2}(?:\"\"\"(?:\\.|[^\\])*?\"\"\"|'''(?:\\.|[^\\])*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')|\#[^\n]*)
      |(?P<open>[(\[{])|(?P<close>[)\]}])|(?P<cont>\\\n)|(?P<end>\n|;)
      |(?P<op>\*\*|//|<<|>>|:=|[-+*/%@&|^~<>.]|\b(?:not|and|or|if|lambda|await|in|is)\b)""",
    re.VERBOSE,
)
_ROUGH = re.compile(r"[-+*/%@&|^~<>.(\[{]|\b(?:not|and|or|if|lambda|await|in|is)\b")


class CandidateSyntaxError(ValueError):
    """The candidate is not Python: it could not be imported either."""


class Unanalyzable(Exception):
    """The candidate is outside what the checker analyses (too big, too deep)."""


def parse(code: str) -> ast.Module:
    _measure_source(code)
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError) as exc:
        raise CandidateSyntaxError(str(exc)[:300]) from None
    except (RecursionError, MemoryError) as exc:  # the parser's own stack, not the candidate's Python
        raise Unanalyzable(f"the parser ran out of stack ({type(exc).__name__})") from None
    _measure_tree(tree)
    return tree


def _measure_source(code: str) -> None:
    if len(code) > MAX_CHARS:
        raise Unanalyzable(f"{len(code)} characters; the checker analyses at most {MAX_CHARS}")
    lines = code.count("\n") + 1
    if lines > MAX_LINES:
        raise Unanalyzable(f"{lines} lines; the checker analyses at most {MAX_LINES}")
    if len(_ROUGH.findall(code)) <= MAX_OPERATORS_PER_STATEMENT:
        return  # fewer in the whole file (strings included) than a statement may have
    depth = operators = 0
    for match in _SCAN.finditer(code):
        group = match.lastgroup
        if group == "open":
            depth += 1
            operators += 1
        elif group == "close":
            depth = max(depth - 1, 0)
        elif group == "end" and depth == 0:
            operators = 0
        elif group == "op":
            operators += 1
        if operators > MAX_OPERATORS_PER_STATEMENT:
            line = code.count("\n", 0, match.start()) + 1
            raise Unanalyzable(
                f"a statement near line {line} has over {MAX_OPERATORS_PER_STATEMENT} operators; "
                "the checker cannot bound its depth"
            )


def _measure_tree(tree: ast.Module) -> None:
    """Depth and size of the tree, a level at a time (no recursion)."""
    level: list[ast.AST] = [tree]
    depth = nodes = 0
    while level:
        depth += 1
        nodes += len(level)
        if depth > MAX_DEPTH:
            line = min((n.lineno for n in level if hasattr(n, "lineno")), default="?")
            raise Unanalyzable(f"line {line} nests over {MAX_DEPTH} deep; the checker analyses at most {MAX_DEPTH}")
        if nodes > MAX_NODES:
            raise Unanalyzable(f"over {MAX_NODES} syntax nodes; the checker analyses at most {MAX_NODES}")
        level = [child for node in level for child in ast.iter_child_nodes(node)]
