"""The audit trail's record: one JSON line per scored attempt (or service event).

The writer (`sandbox.audit`) and the readers (`rft-sandbox audit ...`, DuckDB queries)
share this one definition. A line is a whole attempt, findings nested, so a rate has its
denominator (with `--audit-results` every attempt is written, not only those with a
finding) and `audit show ID` has everything in one place. The candidate's code and its
task (tests included: the log is on the trusted side, it never enters a sandbox) are
zlib-compressed and base64-encoded: they are read back only by `show` and `replay`, and a
line stays small for the queries that scan millions of them.
"""

from __future__ import annotations

import base64
import secrets
import time
import zlib
from typing import Literal, NotRequired, TypedDict

VERSION = 2
METADATA_RUN = "rft-run"  # request metadata the plugin sends: the training run's name
METADATA_STEP = "rft-step"  # the trainer's global step (an integer)
METADATA_CALLER = "rft-caller"  # who calls, e.g. "trl:rank0"


class FindingRecord(TypedDict):
    code: str
    severity: str  # Severity name: INFO, WARNING, CRITICAL
    message: str
    evidence: str


class AttemptRecord(TypedDict):
    v: int
    kind: Literal["attempt"]
    id: str
    time: str
    run: str | None
    step: int | None
    caller: str | None
    principal: str | None  # the authenticated token's name, when tokens are named
    task_id: str  # as the caller named this attempt (trainers number their batch: not a problem's name)
    task_key: str | None  # the problem: a hash of the task without its id and code (equal for every sample of it)
    language: str
    status: str  # pb.Status name
    score: float
    components: dict[str, float]
    findings: list[FindingRecord]
    max_severity: str | None
    code_sha256: str
    code_bytes: int
    code_z: str | None  # encode_blob(code), per --audit-code
    code_truncated: bool
    task: str | None  # encode_blob(the Task as protobuf JSON, its code cleared)


class EventRecord(TypedDict):
    v: int
    kind: Literal["event"]
    id: str
    time: str
    code: str
    severity: str
    evidence: str
    message: NotRequired[str]


def new_id() -> str:
    """16 hex characters: unique enough for a log, short enough to type after `audit show`."""
    return secrets.token_hex(8)


def now() -> str:
    """UTC with milliseconds: sorts as text, parses as a timestamp in DuckDB."""
    seconds = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"


def encode_blob(text: str) -> str:
    return base64.b64encode(zlib.compress(text.encode("utf-8", "replace"), 6)).decode("ascii")


def decode_blob(blob: str, limit: int = 64 << 20) -> str:
    """The text back; a blob that inflates past `limit` bytes is refused (the log may be edited)."""
    inflater = zlib.decompressobj()
    data = inflater.decompress(base64.b64decode(blob, validate=True), limit)
    if inflater.unconsumed_tail:
        raise ValueError(f"an audit blob inflates past {limit} bytes")
    return data.decode("utf-8", "replace")
