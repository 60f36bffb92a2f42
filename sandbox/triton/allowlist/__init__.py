"""An allow-list of what a PyTorch-to-Triton candidate module may contain.

Models trained against a kernel reward learn to launch a decoy kernel and compute the
answer with torch (in forward, in a grid lambda, in numpy, in a function built by a
factory), to fall back to torch when a kernel fails, to memoise outputs, to borrow the
reference, to patch the timer, or to walk frames up to the harness. A deny-list chases
each of these; this module instead accepts a candidate only where it can show every
construct is one of a few benign kinds, and rejects the rest (`not_allowlisted`, or the
specific code where one applies). Nothing is imported or run: this is AST analysis.

The rules, by place (tables.py holds the names):
* module level (toplevel.py): imports of torch, torch.nn(.functional), triton,
  triton.language and math; constants; kernels; host functions; classes deriving from
  nn.Module or torch.autograd.Function. No calls, no tensors, no patching.
* kernels (kernels.py): triton.language, parameters, locals, module constants, other
  kernels, Triton's builtins; `triton.jit`, constant `autotune`, arithmetic `heuristics`.
* host code reachable from `ModelNew(...)` and `forward` (entry.py, then exprs.py,
  statements.py, calls.py, methods.py, attributes.py, targets.py): every value has a kind
  (values.py) and each operation is allowed only for some kinds: kernel launches with
  int grids, allocation, views and layout, casts, `torch.cat`/`stack` as glue, int
  arithmetic; parameters and nn weight holders only in `__init__`; no state written
  across calls; no frames, dunders, computed attribute names or fallbacks.
* the source itself (guard.py): size and nesting bounds, so the checker cannot overflow.
"""

from __future__ import annotations

from rewards.model import Finding
from sandbox.triton.allowlist import entry, kernels, toplevel
from sandbox.triton.allowlist.analysis import Analysis
from sandbox.triton.allowlist.guard import CandidateSyntaxError, Unanalyzable, parse
from sandbox.triton.allowlist.report import Code

__all__ = ["CandidateSyntaxError", "Code", "Unanalyzable", "analyse"]


def analyse(code: str, reference_module: str) -> list[Finding]:
    """Critical findings for everything the allow-list does not accept (may raise what parse raises)."""
    tree = parse(code)
    an = Analysis(code, tree, reference_module)
    toplevel.check_module(an)
    for kernel in an.module.kernels.values():
        kernels.check_kernel(an, kernel)
    if not an.module.kernels:
        an.reject(None, "defines no @triton.jit kernel", Code.NO_KERNEL)
    entry.check_model(an)
    return an.report.findings
