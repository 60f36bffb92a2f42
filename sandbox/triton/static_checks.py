"""Static anti-cheat checks on a PyTorch-to-Triton candidate, run on the trusted side.

The checks are an allow-list (sandbox/triton/allowlist/): a candidate is accepted only
where every construct is one the checker can show benign. This module is its face: it
never raises anything but CandidateSyntaxError (the candidate is not Python), and a
candidate the checker cannot analyse, whatever the reason, is that candidate's
`unanalyzable` critical finding, never the batch's error.
"""

from __future__ import annotations

import logging

from rewards.model import Finding, Severity
from sandbox.triton.allowlist import CandidateSyntaxError, Code, Unanalyzable, analyse

__all__ = ["CandidateSyntaxError", "check_triton"]

log = logging.getLogger(__name__)


def check_triton(code: str, *, reference_module: str = "reference") -> list[Finding]:
    """Findings for a Triton candidate; raises CandidateSyntaxError if it does not parse."""
    try:
        return analyse(code, reference_module)
    except CandidateSyntaxError:
        raise
    except Unanalyzable as exc:
        return [_unanalyzable(f"the checker cannot analyse this candidate: {exc}")]
    except (RecursionError, MemoryError) as exc:
        return [_unanalyzable(f"the checker ran out of {'stack' if isinstance(exc, RecursionError) else 'memory'}")]
    except Exception:  # a bug of ours must not fail the batch: this candidate is not paid, and it is logged
        log.exception("the Triton static checker failed on a candidate")
        return [_unanalyzable("the checker failed on this candidate")]


def _unanalyzable(message: str) -> Finding:
    return Finding(Code.UNANALYZABLE, Severity.CRITICAL, message, "")
