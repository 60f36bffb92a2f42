"""The messages that cross the isolation boundary, named once for both sides.

Stdlib only and free of sibling imports: the service imports it as `sandbox.wire.messages`,
the runner (which finds this directory next to its own, `../wire`) as `messages`. Every
writer and reader of a job, a record or a runner's meta spells tags, kinds and modes
with the names below, so a typo is a NameError (or a type checker's error), never a record
that the other side silently skips.

The encoding is plain JSON in length-prefixed frames (`framing`); the TypedDicts here are
plain dicts at run time, so `CallsJob(mode=Mode.CALLS, ...)` is exactly the dict that goes
on the wire. One job is two frames, the job and its secret (`WholeSecret` for whole mode,
`{}` otherwise); the reply is the runner's meta (`RunnerMeta`) and one frame holding the
job's records, each a dict whose `t` is a `Tag`.

Jobs, by mode (the constructors the job builders use; `limits` is filled in by the service):

    CallsJob   calls   one candidate call per request: {"call": [args, kwargs]} (tagged values)
    IoJob      io      one run of the program as __main__ per request: {"stdin": text}
    WholeJob   whole   the task's assert code, run whole in the isolated harness (WholeSecret)
    SqlJob     sql     one read-only query over each database (SQLite/DuckDB files, inline
                       SQLite, or PostgreSQL schemas: those run on the service, not in a sandbox)
    TritonJob  triton  `role` reference | candidate | compile (`Role`)
    PingJob    ping    the pool's control job: a child with the job uid and rlimits says pong

Who writes a mode's records decides what an unknown tag means (`RECORDS`, `FORGEABLE`):
calls, io and ping records are built by the trusted runner, whole-mode ones by the isolated
harness (which a candidate can kill, never steer), SQL ones by the runner or its DuckDB child
(the query is data there, the engine locked down): an unexpected record in those modes is a
bug of ours, SANDBOX_ERROR (`unexpected_records`). Triton records are written in the
candidate's own process, so anything there may be forged: `rewards.triton_report` checks
each record's tag, fields and order, and a record it does not expect rejects the candidate
(forged_report), never an error of ours.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypedDict


class Mode:
    """A job's `mode`: which part of the runner runs it."""

    CALLS: Final = "calls"
    IO: Final = "io"
    WHOLE: Final = "whole"
    SQL: Final = "sql"
    TRITON: Final = "triton"
    PING: Final = "ping"


ModeName = Literal["calls", "io", "whole", "sql", "triton", "ping"]
MODES = frozenset({Mode.CALLS, Mode.IO, Mode.WHOLE, Mode.SQL, Mode.TRITON, Mode.PING})


class Role:
    """A Triton job's `role`: the task's reference, the candidate, or (on the CPU) the
    ahead-of-time compile of the kernels the candidate launched."""

    REFERENCE: Final = "reference"
    CANDIDATE: Final = "candidate"
    COMPILE: Final = "compile"


class Engine:
    """An SQL job's `engine`."""

    SQLITE: Final = "sqlite"
    DUCKDB: Final = "duckdb"
    POSTGRES: Final = "postgres"


class Tag:
    """A record's `t`."""

    # Python (calls, io): one `test` per request; whole: `site` per assert, then one `check`
    TEST: Final = "test"
    SITE: Final = "site"
    CHECK: Final = "check"
    LOAD: Final = "load"  # the candidate did not load (Python); the module loaded or not (Triton)
    DONE: Final = "done"  # the harness finished (Python, SQL, Triton candidate and reference)
    # The trusted harness's own failure (the runner's, the isolated harness's, the SQL
    # engine's): SANDBOX_ERROR. Its wire name dates from when the harness was the "judge".
    INTERNAL_ERROR: Final = "judge_error"
    SQL: Final = "sql"  # one database's result
    # Triton, written in the candidate's process
    TRIAL: Final = "trial"
    ERROR: Final = "error"  # the reference failed (a reference job only)
    TIMING: Final = "timing"
    RERUN: Final = "rerun"
    GHOST: Final = "ghost"
    LAUNCH: Final = "launch"
    COMPILE: Final = "compile"
    COMPILED: Final = "compiled"
    HARNESS_ERROR: Final = "harness_error"  # the harness failed in the candidate's process: its failure
    # ping
    PONG: Final = "pong"
    EXIT: Final = "exit"


TagName = Literal[
    "test", "site", "check", "load", "done", "judge_error", "sql", "trial", "error", "timing",
    "rerun", "ghost", "launch", "compile", "compiled", "harness_error", "pong", "exit",
]  # fmt: skip

# The tags each mode's writer produces.
RECORDS: dict[str, frozenset[str]] = {
    Mode.CALLS: frozenset({Tag.TEST, Tag.LOAD, Tag.DONE, Tag.INTERNAL_ERROR}),
    Mode.IO: frozenset({Tag.TEST, Tag.LOAD, Tag.DONE, Tag.INTERNAL_ERROR}),
    Mode.WHOLE: frozenset({Tag.SITE, Tag.CHECK, Tag.LOAD, Tag.DONE, Tag.INTERNAL_ERROR}),
    Mode.SQL: frozenset({Tag.SQL, Tag.DONE, Tag.INTERNAL_ERROR}),
    Mode.TRITON: frozenset({Tag.LOAD, Tag.TRIAL, Tag.ERROR, Tag.TIMING, Tag.RERUN, Tag.GHOST, Tag.LAUNCH})
    | frozenset({Tag.DONE, Tag.COMPILE, Tag.COMPILED, Tag.HARNESS_ERROR}),
    Mode.PING: frozenset({Tag.PONG, Tag.EXIT}),
}
FORGEABLE = frozenset({Mode.TRITON})  # modes whose records the candidate's own process writes


class Kind:
    """A record's `kind`: how a test (`test`, `load`) or a database (`sql`) went."""

    VALUE: Final = "value"  # a call returned a value
    IO: Final = "io"  # a program ran to its end: its stdout
    EXCEPTION: Final = "exception"
    LOAD_ERROR: Final = "load_error"
    NOT_RUN: Final = "not_run"  # the task's time ran out first
    TIMEOUT: Final = "timeout"
    EXIT: Final = "exit"
    CRASH: Final = "crash"
    OUTPUT_LIMIT: Final = "output_limit"
    REPORT_LIMIT: Final = "report_limit"
    MEMORY: Final = "memory"
    GARBAGE: Final = "garbage"  # the candidate wrote what is not the protocol into its channel
    HARNESS_KILLED: Final = "harness_killed"  # no candidate process could be started (the zygote died)
    # whole mode, why a proxied call failed (the start of a site's `why`)
    LOST: Final = "lost"  # the candidate process that held the object is gone
    UNSERIALIZABLE: Final = "unserializable"
    # SQL
    OK: Final = "ok"
    ERROR: Final = "error"
    REJECTED: Final = "rejected"
    DB_ERROR: Final = "db_error"  # the database could not be opened: ours


CUSTOM_EQ: Final = "custom_eq"  # a whole-mode check's event: an object with the candidate's own __eq__ compared


class Ending:
    """The runner's meta `ending`: how the job's report ended."""

    CLOSED: Final = "closed"
    DEADLINE: Final = "deadline"
    OVERFLOW: Final = "overflow"


def unexpected_records(mode: str, records: list[Any]) -> str | None:
    """Why a reply from a mode whose records only trusted code writes is not one that code
    could have written (its first record of a tag the mode does not produce), or None."""
    tags = RECORDS.get(mode) if type(mode) is str else None
    if tags is None:
        return f"the runner replied for a job of mode {str(mode)[:40]!r}, which is no mode"
    for at, record in enumerate(records):
        tag = record.get("t") if type(record) is dict else None
        if tag not in tags:
            shown = tag if tag is not None else type(record).__name__
            return f"record {at} is {str(shown)[:40]!r}, which a {mode} job does not produce"
    return None


# --------------------------------------------------------------------------- jobs


class Limits(TypedDict, total=False):
    task_ms: int
    test_ms: int
    memory_bytes: int
    max_processes: int
    max_open_files: int
    max_file_bytes: int
    output_bytes: int
    sql_steps: int
    max_rows: int
    max_result_bytes: int


class CallRequest(TypedDict):
    call: list[Any]  # [encoded args, encoded kwargs]


class IoRequest(TypedDict):
    stdin: str


class _Job(TypedDict, total=False):
    limits: Limits
    code: str  # the candidate's module (Python and Triton)


class CallsJob(_Job):
    mode: Literal["calls"]
    entry_point: str
    requests: list[CallRequest]


class IoJob(_Job):
    mode: Literal["io"]
    requests: list[IoRequest]


class WholeJob(_Job):
    mode: Literal["whole"]
    entry_point: str


class WholeSecret(TypedDict):
    check_code: str  # holds the expected values: only the isolated harness reads it
    setup_code: str


class SqlJob(_Job, total=False):
    mode: Literal["sql"]
    engine: str  # Engine
    query: str
    databases: list[str]  # sandbox paths (SQLite, DuckDB)
    schemas: list[str]  # PostgreSQL
    inline: str | None  # a base64 SQLite file, for `databases == ["inline"]`
    dsn: str  # PostgreSQL


class TritonJob(_Job, total=False):
    mode: Literal["triton"]
    role: str  # Role
    reference: str  # the reference module (role reference)
    trials: list[dict[str, Any]]
    variants: list[Any]
    init_seed: int
    timing: dict[str, Any] | None
    launches: list[dict[str, Any]]  # role compile
    aot_target: Any


class PingJob(_Job):
    mode: Literal["ping"]


# --------------------------------------------------------------------------- the reply


class RunnerMeta(TypedDict, total=False):
    """What the runner itself knows about a job (trusted), the first frame of its reply."""

    mode: str  # the mode it ran the job as: the records are that mode's
    ending: str  # Ending; the pool's own `worker_lost` for a job whose worker was lost
    leftover_processes: int
    elapsed_ms: float
    oom_kills: int  # counted by the kernel, where the sandbox has a cgroup of its own
    exit_code: int  # a Triton job's child
    recycle: bool  # the runner cannot take another job (an SQL engine stalled)
    runner_error: str  # the runner could not run the job (the service's bug): SANDBOX_ERROR


class TestRecord(TypedDict, total=False):
    t: Literal["test"]
    i: int
    kind: str  # Kind
    value: Any  # kind value: a tagged value
    stdout: str  # kind io
    type: str  # kind exception
    msg: str
    ms: float


class SqlRecord(TypedDict, total=False):
    t: Literal["sql"]
    i: int
    kind: str  # Kind: ok, error, timeout, memory, rejected, output_limit, db_error
    columns: list[str]
    rows: list[Any]
    truncated: bool
    msg: str
    ms: float


class DoneRecord(TypedDict, total=False):
    t: Literal["done"]
    stdout: str  # Python: excerpts of the job's output
    stderr: str
    deadline_hit: bool
