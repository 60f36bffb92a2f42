"""Service settings: defaults and hard maxima for what a request may ask for."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

MiB = 1 << 20
_TOKEN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class LimitBounds:
    default: int
    maximum: int
    minimum: int = 1


@dataclass(frozen=True)
class ServiceConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    token: str | None = None  # one shared bearer token: authenticates; callers are told apart by connection
    tokens: tuple[tuple[str, str], ...] = ()  # (name, secret): authenticates, and names the caller
    tls_cert: str | None = None  # PEM certificate chain and key: serve TLS instead of plaintext
    tls_key: str | None = None
    metrics_port: int | None = None  # Prometheus metrics on host:PORT (None: off; 0: an ephemeral port)
    workers: int = max(os.cpu_count() or 1, 1)
    queue_limit: int = 4096  # queued jobs; past it only callers under their fair share are admitted
    caller_queue_limit: int = 0  # queued jobs of one caller (0: queue_limit)
    max_jobs_per_worker: int = 1000
    # seconds a client connection may live before the server asks the client to reconnect (which
    # makes a `dns:` client re-resolve: docs/deployment-dns.md); calls in flight are not cut; 0: forever
    max_connection_age: float = 300.0
    # worker slot n runs its jobs as uid job_uid_base + n; `serve --processes` gives each process
    # its own range, so no uid (and no RLIMIT_NPROC count) is shared by two processes' sandboxes
    job_uid_base: int = 61000
    drain_seconds: float = 30.0  # after SIGTERM: how long accepted tasks may take to finish (`SandboxServer.drain`)
    audit_log: str = "rft-sandbox-audit.jsonl"
    audit_results: bool = False  # every attempt in the audit log, not only those with a finding
    audit_code: str = "findings"  # whose code the log keeps: none, findings (attempts with one), all
    audit_code_bytes: int = 64 * 1024  # code kept per attempt, at most
    audit_rotate_bytes: int = 0  # rotate the log when it would pass this size (0: never)
    audit_rotate_seconds: float = 0.0  # rotate the log when its first line is this old (0: never)
    audit_fsync: str = "interval"  # none, interval (about once a second) or always (every line)
    max_code_bytes: int = 256 * 1024
    max_batch: int = 4096
    max_request_bytes: int = 64 * MiB
    test_timeout_ms: LimitBounds = LimitBounds(5_000, 60_000, 10)
    task_timeout_ms: LimitBounds = LimitBounds(30_000, 600_000, 10)
    memory_bytes: LimitBounds = LimitBounds(512 * MiB, 8192 * MiB, 64 * MiB)
    output_bytes: LimitBounds = LimitBounds(1 * MiB, 16 * MiB, 1024)
    max_processes: int = 64
    max_open_files: int = 256
    max_file_bytes: int = 16 * MiB
    triton_device: str = "cpu"  # "cpu" (interpreter, correctness only) or "cuda" (speed scored)
    triton_workers: int = 1  # warm Triton runners, started with the first Triton task
    # Tests only (no CLI flag): score Triton candidates with their static findings ignored, so
    # the dynamic evidence is tested alone. The static checks are the deciding line in service.
    triton_static_gate: bool = True


def read_tokens(path: str) -> tuple[tuple[str, str], ...]:
    """Named bearer tokens from a file: one `NAME=SECRET` a line; `#` comments and blank
    lines are skipped. A file keeps the secrets off the command line (and out of `ps`).
    Raises ValueError naming the line of the first problem."""
    tokens: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, secret = line.partition("=")
            if not sep or not _TOKEN_NAME.fullmatch(name) or not secret or any(c.isspace() for c in secret):
                raise ValueError(f"{path}:{number}: expected NAME=SECRET (NAME: letters, digits, _ . -)")
            if name in tokens:
                raise ValueError(f"{path}:{number}: token name {name!r} given twice")
            if secret in tokens.values():
                raise ValueError(f"{path}:{number}: the secret of {name!r} is another name's too")
            tokens[name] = secret
    if not tokens:
        raise ValueError(f"{path}: no tokens")
    return tuple(tokens.items())
