"""Who a call is for, as the audit trail records it: the run, step and caller the plugin sent
as request metadata (`sandbox.audit_record`'s METADATA_* keys), and the authenticated token.

The metadata is the caller's free text: a value that is not what it should be (a step that is
not an integer, a value longer than `MAX_VALUE` characters) is left out with a warning, never a
refused call: an audit trail's context must not cost a trainer its rewards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sandbox.audit_record import METADATA_CALLER, METADATA_RUN, METADATA_STEP

log = logging.getLogger(__name__)
MAX_VALUE = 200  # characters of one metadata value


@dataclass(frozen=True)
class CallContext:
    run: str | None = None
    step: int | None = None
    caller: str | None = None
    principal: str | None = None  # the named token's name (`sandbox.auth`), when tokens are named


def from_metadata(metadata: Iterable[tuple[str, Any]] | None, principal: str | None) -> CallContext:
    values: dict[str, str] = {}
    for key, value in metadata or ():
        if key not in (METADATA_RUN, METADATA_STEP, METADATA_CALLER):
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        if len(text) > MAX_VALUE:
            _ignored(key, f"longer than {MAX_VALUE} characters")
            continue
        values[key] = text
    step = None
    if METADATA_STEP in values:
        try:
            step = int(values[METADATA_STEP])
        except ValueError:
            _ignored(METADATA_STEP, f"not an integer: {values[METADATA_STEP][:40]!r}")
        else:
            if not -(2**63) <= step < 2**63:  # what a query engine's BIGINT holds
                _ignored(METADATA_STEP, "out of the 64-bit range")
                step = None
    return CallContext(values.get(METADATA_RUN) or None, step, values.get(METADATA_CALLER) or None, principal)


def _ignored(key: str, why: str) -> None:
    log.warning("request metadata ignored", extra={"fields": {"key": key, "why": why}})
