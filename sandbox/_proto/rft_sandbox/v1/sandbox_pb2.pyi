from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Language(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LANGUAGE_UNSPECIFIED: _ClassVar[Language]
    PYTHON: _ClassVar[Language]
    SQL: _ClassVar[Language]
    TRITON: _ClassVar[Language]

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_UNSPECIFIED: _ClassVar[Status]
    PASSED: _ClassVar[Status]
    FAILED: _ClassVar[Status]
    SYNTAX_ERROR: _ClassVar[Status]
    RUNTIME_ERROR: _ClassVar[Status]
    TIMEOUT: _ClassVar[Status]
    MEMORY_LIMIT: _ClassVar[Status]
    OUTPUT_LIMIT: _ClassVar[Status]
    REJECTED: _ClassVar[Status]
    SANDBOX_ERROR: _ClassVar[Status]

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    INFO: _ClassVar[Severity]
    WARNING: _ClassVar[Severity]
    CRITICAL: _ClassVar[Severity]
LANGUAGE_UNSPECIFIED: Language
PYTHON: Language
SQL: Language
TRITON: Language
STATUS_UNSPECIFIED: Status
PASSED: Status
FAILED: Status
SYNTAX_ERROR: Status
RUNTIME_ERROR: Status
TIMEOUT: Status
MEMORY_LIMIT: Status
OUTPUT_LIMIT: Status
REJECTED: Status
SANDBOX_ERROR: Status
SEVERITY_UNSPECIFIED: Severity
INFO: Severity
WARNING: Severity
CRITICAL: Severity

class ScoreRequest(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class ScoreBatchRequest(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("id", "language", "code", "limits", "python", "sql", "triton")
    ID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    TRITON_FIELD_NUMBER: _ClassVar[int]
    id: str
    language: Language
    code: str
    limits: Limits
    python: PythonSpec
    sql: SqlSpec
    triton: TritonSpec
    def __init__(self, id: _Optional[str] = ..., language: _Optional[_Union[Language, str]] = ..., code: _Optional[str] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., python: _Optional[_Union[PythonSpec, _Mapping]] = ..., sql: _Optional[_Union[SqlSpec, _Mapping]] = ..., triton: _Optional[_Union[TritonSpec, _Mapping]] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("test_timeout_ms", "task_timeout_ms", "memory_bytes", "output_bytes")
    TEST_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    TASK_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    test_timeout_ms: int
    task_timeout_ms: int
    memory_bytes: int
    output_bytes: int
    def __init__(self, test_timeout_ms: _Optional[int] = ..., task_timeout_ms: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., output_bytes: _Optional[int] = ...) -> None: ...

class PythonSpec(_message.Message):
    __slots__ = ("entry_point", "call_tests", "io_tests", "assert_code", "rel_tol", "abs_tol", "setup_code")
    ENTRY_POINT_FIELD_NUMBER: _ClassVar[int]
    CALL_TESTS_FIELD_NUMBER: _ClassVar[int]
    IO_TESTS_FIELD_NUMBER: _ClassVar[int]
    ASSERT_CODE_FIELD_NUMBER: _ClassVar[int]
    REL_TOL_FIELD_NUMBER: _ClassVar[int]
    ABS_TOL_FIELD_NUMBER: _ClassVar[int]
    SETUP_CODE_FIELD_NUMBER: _ClassVar[int]
    entry_point: str
    call_tests: _containers.RepeatedCompositeFieldContainer[CallTest]
    io_tests: _containers.RepeatedCompositeFieldContainer[IoTest]
    assert_code: str
    rel_tol: float
    abs_tol: float
    setup_code: str
    def __init__(self, entry_point: _Optional[str] = ..., call_tests: _Optional[_Iterable[_Union[CallTest, _Mapping]]] = ..., io_tests: _Optional[_Iterable[_Union[IoTest, _Mapping]]] = ..., assert_code: _Optional[str] = ..., rel_tol: _Optional[float] = ..., abs_tol: _Optional[float] = ..., setup_code: _Optional[str] = ...) -> None: ...

class CallTest(_message.Message):
    __slots__ = ("args_json", "kwargs_json", "expected_json")
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    KWARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_JSON_FIELD_NUMBER: _ClassVar[int]
    args_json: str
    kwargs_json: str
    expected_json: str
    def __init__(self, args_json: _Optional[str] = ..., kwargs_json: _Optional[str] = ..., expected_json: _Optional[str] = ...) -> None: ...

class IoTest(_message.Message):
    __slots__ = ("stdin", "expected_stdout")
    STDIN_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_STDOUT_FIELD_NUMBER: _ClassVar[int]
    stdin: str
    expected_stdout: str
    def __init__(self, stdin: _Optional[str] = ..., expected_stdout: _Optional[str] = ...) -> None: ...

class SqlSpec(_message.Message):
    __slots__ = ("engine", "database", "inline_sqlite", "gold_sql", "expected_json", "order", "rel_tol", "abs_tol", "base_only")
    class Order(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ORDER_DEFAULT: _ClassVar[SqlSpec.Order]
        ORDER_MATTERS: _ClassVar[SqlSpec.Order]
        ORDER_IGNORED: _ClassVar[SqlSpec.Order]
    ORDER_DEFAULT: SqlSpec.Order
    ORDER_MATTERS: SqlSpec.Order
    ORDER_IGNORED: SqlSpec.Order
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    INLINE_SQLITE_FIELD_NUMBER: _ClassVar[int]
    GOLD_SQL_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_JSON_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    REL_TOL_FIELD_NUMBER: _ClassVar[int]
    ABS_TOL_FIELD_NUMBER: _ClassVar[int]
    BASE_ONLY_FIELD_NUMBER: _ClassVar[int]
    engine: str
    database: str
    inline_sqlite: bytes
    gold_sql: str
    expected_json: str
    order: SqlSpec.Order
    rel_tol: float
    abs_tol: float
    base_only: bool
    def __init__(self, engine: _Optional[str] = ..., database: _Optional[str] = ..., inline_sqlite: _Optional[bytes] = ..., gold_sql: _Optional[str] = ..., expected_json: _Optional[str] = ..., order: _Optional[_Union[SqlSpec.Order, str]] = ..., rel_tol: _Optional[float] = ..., abs_tol: _Optional[float] = ..., base_only: _Optional[bool] = ...) -> None: ...

class TritonSpec(_message.Message):
    __slots__ = ("reference", "trials", "atol", "rtol", "shapes_json", "skip_speed", "timing_reps", "seed", "weights")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    ATOL_FIELD_NUMBER: _ClassVar[int]
    RTOL_FIELD_NUMBER: _ClassVar[int]
    SHAPES_JSON_FIELD_NUMBER: _ClassVar[int]
    SKIP_SPEED_FIELD_NUMBER: _ClassVar[int]
    TIMING_REPS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    reference: str
    trials: int
    atol: float
    rtol: float
    shapes_json: _containers.RepeatedScalarFieldContainer[str]
    skip_speed: bool
    timing_reps: int
    seed: int
    weights: TritonWeights
    def __init__(self, reference: _Optional[str] = ..., trials: _Optional[int] = ..., atol: _Optional[float] = ..., rtol: _Optional[float] = ..., shapes_json: _Optional[_Iterable[str]] = ..., skip_speed: _Optional[bool] = ..., timing_reps: _Optional[int] = ..., seed: _Optional[int] = ..., weights: _Optional[_Union[TritonWeights, _Mapping]] = ...) -> None: ...

class TritonWeights(_message.Message):
    __slots__ = ("compiles", "correctness", "max_speedup_bonus", "plausible_speedup")
    COMPILES_FIELD_NUMBER: _ClassVar[int]
    CORRECTNESS_FIELD_NUMBER: _ClassVar[int]
    MAX_SPEEDUP_BONUS_FIELD_NUMBER: _ClassVar[int]
    PLAUSIBLE_SPEEDUP_FIELD_NUMBER: _ClassVar[int]
    compiles: float
    correctness: float
    max_speedup_bonus: float
    plausible_speedup: float
    def __init__(self, compiles: _Optional[float] = ..., correctness: _Optional[float] = ..., max_speedup_bonus: _Optional[float] = ..., plausible_speedup: _Optional[float] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("code", "severity", "message", "evidence")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    code: str
    severity: Severity
    message: str
    evidence: str
    def __init__(self, code: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., message: _Optional[str] = ..., evidence: _Optional[str] = ...) -> None: ...

class TestOutcome(_message.Message):
    __slots__ = ("index", "passed", "status", "name", "message", "duration_ms")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    index: int
    passed: bool
    status: Status
    name: str
    message: str
    duration_ms: float
    def __init__(self, index: _Optional[int] = ..., passed: _Optional[bool] = ..., status: _Optional[_Union[Status, str]] = ..., name: _Optional[str] = ..., message: _Optional[str] = ..., duration_ms: _Optional[float] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("queue_ms", "run_ms", "total_ms")
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    RUN_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    queue_ms: float
    run_ms: float
    total_ms: float
    def __init__(self, queue_ms: _Optional[float] = ..., run_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("id", "status", "score", "tests", "components", "findings", "timings", "message", "stdout_excerpt", "stderr_excerpt", "backend")
    class ComponentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TESTS_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STDOUT_EXCERPT_FIELD_NUMBER: _ClassVar[int]
    STDERR_EXCERPT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: Status
    score: float
    tests: _containers.RepeatedCompositeFieldContainer[TestOutcome]
    components: _containers.ScalarMap[str, float]
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    timings: Timings
    message: str
    stdout_excerpt: str
    stderr_excerpt: str
    backend: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[Status, str]] = ..., score: _Optional[float] = ..., tests: _Optional[_Iterable[_Union[TestOutcome, _Mapping]]] = ..., components: _Optional[_Mapping[str, float]] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., message: _Optional[str] = ..., stdout_excerpt: _Optional[str] = ..., stderr_excerpt: _Optional[str] = ..., backend: _Optional[str] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatsReply(_message.Message):
    __slots__ = ("backend", "workers", "busy_workers", "queued", "jobs_completed", "workers_recycled", "worker_failures", "version", "job_runs", "jobs_lost", "job_reruns", "control_jobs", "control_failures", "queued_by_caller")
    class QueuedByCallerEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    BUSY_WORKERS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    JOBS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    WORKERS_RECYCLED_FIELD_NUMBER: _ClassVar[int]
    WORKER_FAILURES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    JOB_RUNS_FIELD_NUMBER: _ClassVar[int]
    JOBS_LOST_FIELD_NUMBER: _ClassVar[int]
    JOB_RERUNS_FIELD_NUMBER: _ClassVar[int]
    CONTROL_JOBS_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FAILURES_FIELD_NUMBER: _ClassVar[int]
    QUEUED_BY_CALLER_FIELD_NUMBER: _ClassVar[int]
    backend: str
    workers: int
    busy_workers: int
    queued: int
    jobs_completed: int
    workers_recycled: int
    worker_failures: int
    version: str
    job_runs: int
    jobs_lost: int
    job_reruns: int
    control_jobs: int
    control_failures: int
    queued_by_caller: _containers.ScalarMap[str, int]
    def __init__(self, backend: _Optional[str] = ..., workers: _Optional[int] = ..., busy_workers: _Optional[int] = ..., queued: _Optional[int] = ..., jobs_completed: _Optional[int] = ..., workers_recycled: _Optional[int] = ..., worker_failures: _Optional[int] = ..., version: _Optional[str] = ..., job_runs: _Optional[int] = ..., jobs_lost: _Optional[int] = ..., job_reruns: _Optional[int] = ..., control_jobs: _Optional[int] = ..., control_failures: _Optional[int] = ..., queued_by_caller: _Optional[_Mapping[str, int]] = ...) -> None: ...
