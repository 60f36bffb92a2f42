"""The v1 contract as Python: generated messages plus the method paths and codecs.

Generated code lives in `sandbox/_proto` (regenerate with `scripts/gen-proto`); this
module is the one place the rest of the code imports it from.
"""

from __future__ import annotations

from sandbox._proto.rft_sandbox.v1 import sandbox_pb2 as pb

SERVICE = "rft_sandbox.v1.Sandbox"
SCORE = f"/{SERVICE}/Score"
SCORE_BATCH = f"/{SERVICE}/ScoreBatch"
STATS = f"/{SERVICE}/Stats"

__all__ = ["SCORE", "SCORE_BATCH", "SERVICE", "STATS", "pb"]
