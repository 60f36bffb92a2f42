"""Bad requests: each gets INVALID_ARGUMENT naming the bad field, and nothing else happens.

A bad request must cost nothing: no task of it runs, no worker is disturbed, and the
service answers the next (good) request normally.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator

import grpc
import pytest

from sandbox.api import SCORE, SCORE_BATCH, STATS, pb
from tests.helpers import call_task, healthy_task, limits, status_name

GOOD_CODE = "def f(x):\n    return x + 1\n"
DAY_MS = 24 * 3600 * 1000


def good_task(task_id: str = "t") -> pb.Task:
    return call_task(task_id, GOOD_CODE, "f", [([1], 2), ([5], 6)])


def edited(mutate: Callable[[pb.Task], object], task_id: str = "t") -> pb.Task:
    task = good_task(task_id)
    mutate(task)
    return task


@pytest.fixture(scope="module")
def channel(server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as chan:
        yield chan


@pytest.fixture
def raw_score(channel):
    """Score with a request given as bytes (for messages the typed client cannot build)."""
    call = channel.unary_unary(SCORE, request_serializer=lambda b: b, response_deserializer=pb.Result.FromString)
    return lambda data: call(data, timeout=60)


@pytest.fixture
def raw_batch(channel):
    call = channel.unary_stream(SCORE_BATCH, request_serializer=lambda b: b, response_deserializer=pb.Result.FromString)
    return lambda data: list(call(data, timeout=60))


def rejected(action: Callable[[], object], field: str) -> str:
    """Run `action`; it must fail with INVALID_ARGUMENT whose details start with `field`."""
    with pytest.raises(grpc.RpcError) as info:
        result = action()
        if isinstance(result, Iterator):
            list(result)
    error = info.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    details = error.details()
    assert details.startswith(f"{field}:"), details
    return details


def jobs_completed(client) -> int:
    return client.stats().jobs_completed


# ---------------------------------------------------------------- one bad task (Score)


def _clear_tests(task: pb.Task) -> None:
    del task.python.call_tests[:]


def _add_io_test(task: pb.Task) -> None:
    task.python.io_tests.add(stdin="1\n", expected_stdout="2\n")


def _set(path: str, value: object) -> Callable[[pb.Task], None]:
    def mutate(task: pb.Task) -> None:
        *parents, last = path.split(".")
        target = task
        for name in parents:
            target = getattr(target, name)
        setattr(target, last, value)

    return mutate


def _spec(**fields: object) -> Callable[[pb.Task], None]:
    def mutate(task: pb.Task) -> None:
        task.python.CopyFrom(pb.PythonSpec(**fields))

    return mutate


BAD_TASKS = [
    # (test id, mutation, field named in details, words the details must contain)
    ("empty-code", _set("code", ""), "task.code", "empty"),
    ("whitespace-code", _set("code", "  \n\t\n   "), "task.code", "empty"),
    ("oversized-code", _set("code", GOOD_CODE + "#" * (256 * 1024)), "task.code", "262144"),
    # 140k two-byte characters: under the limit in characters, over it in bytes
    ("oversized-code-bytes", _set("code", GOOD_CODE + "# " + "ä" * 140_000), "task.code", "262144"),
    ("nul-in-code", _set("code", GOOD_CODE + "x = '\x00'\n"), "task.code", "NUL"),
    ("unknown-language", _set("language", 99), "task.language", "99"),
    ("unspecified-language", _set("language", pb.LANGUAGE_UNSPECIFIED), "task.language", "required"),
    ("sql-without-sql-spec", _set("language", pb.SQL), "task.sql", "sql spec"),
    ("triton", _set("language", pb.TRITON), "task.triton", "needs a triton spec"),
    ("missing-id", _set("id", ""), "task.id", "required"),
    ("long-id", _set("id", "x" * 1000), "task.id", "256"),
    ("missing-spec", lambda t: t.ClearField("python"), "task.python", "python spec"),
    ("missing-entry-point", _set("python.entry_point", ""), "task.python.entry_point", "identifier"),
    ("bad-entry-point", _set("python.entry_point", "f; import os"), "task.python.entry_point", "identifier"),
    ("dotted-entry-point", _set("python.entry_point", "os.system"), "task.python.entry_point", "identifier"),
    ("no-tests", _clear_tests, "task.python", "needs tests"),
    ("two-kinds-of-tests", _add_io_test, "task.python", "call_tests and io_tests"),
    (
        "call-and-assert-tests",
        _set("python.assert_code", "assert f(1) == 2"),
        "task.python",
        "call_tests and assert_code",
    ),
    ("negative-test-timeout", _set("limits.test_timeout_ms", -1), "task.limits.test_timeout_ms", "negative"),
    ("negative-memory", _set("limits.memory_bytes", -(1 << 20)), "task.limits.memory_bytes", "negative"),
    ("negative-output", _set("limits.output_bytes", -5), "task.limits.output_bytes", "negative"),
    ("absurd-memory", _set("limits.memory_bytes", 10**15), "task.limits.memory_bytes", "between"),
    ("tiny-memory", _set("limits.memory_bytes", 1024), "task.limits.memory_bytes", "between"),
    ("test-timeout-days", _set("limits.test_timeout_ms", 3 * DAY_MS), "task.limits.test_timeout_ms", "between"),
    ("task-timeout-days", _set("limits.task_timeout_ms", 7 * DAY_MS), "task.limits.task_timeout_ms", "between"),
    ("absurd-output", _set("limits.output_bytes", 1 << 40), "task.limits.output_bytes", "between"),
    ("nan-rel-tol", _set("python.rel_tol", math.nan), "task.python.rel_tol", "nan"),
    ("negative-rel-tol", _set("python.rel_tol", -0.1), "task.python.rel_tol", "-0.1"),
    ("nan-abs-tol", _set("python.abs_tol", math.nan), "task.python.abs_tol", "nan"),
    ("negative-abs-tol", _set("python.abs_tol", -1e-9), "task.python.abs_tol", "[0, 1]"),
    ("infinite-abs-tol", _set("python.abs_tol", math.inf), "task.python.abs_tol", "inf"),
    (
        "args-not-json",
        _spec(entry_point="f", call_tests=[pb.CallTest(args_json="[1,", expected_json="2")]),
        "task.python.call_tests[0].args_json",
        "JSON",
    ),
    (
        "args-not-array",
        _spec(
            entry_point="f",
            call_tests=[
                pb.CallTest(args_json="[1]", expected_json="2"),
                pb.CallTest(args_json='{"x": 1}', expected_json="2"),
            ],
        ),
        "task.python.call_tests[1].args_json",
        "array",
    ),
    (
        "kwargs-not-object",
        _spec(entry_point="f", call_tests=[pb.CallTest(args_json="[]", kwargs_json="[1]", expected_json="2")]),
        "task.python.call_tests[0].kwargs_json",
        "object",
    ),
    (
        "expected-not-json",
        _spec(entry_point="f", call_tests=[pb.CallTest(args_json="[1]", expected_json="two")]),
        "task.python.call_tests[0].expected_json",
        "JSON",
    ),
    (
        "expected-missing",
        _spec(entry_point="f", call_tests=[pb.CallTest(args_json="[1]")]),
        "task.python.call_tests[0].expected_json",
        "required",
    ),
    (
        "assert-code-does-not-parse",
        _spec(entry_point="f", assert_code="assert f(1) == = 2\n"),
        "task.python.assert_code",
        "compile",
    ),
    (
        "assert-code-without-asserts",
        _spec(entry_point="f", assert_code="def check(candidate):\n    candidate(1)\n"),
        "task.python.assert_code",
        "no assert",
    ),
    (
        "too-many-call-tests",
        _spec(entry_point="f", call_tests=[pb.CallTest(args_json="[1]", expected_json="2")] * 5000),
        "task.python.call_tests",
        "1000",
    ),
    (
        "too-many-io-tests",
        _spec(io_tests=[pb.IoTest(stdin="1", expected_stdout="1")] * 1001),
        "task.python.io_tests",
        "1000",
    ),
    (
        "too-many-asserts",
        _spec(entry_point="f", assert_code="".join(f"assert f({i}) == {i + 1}\n" for i in range(1500))),
        "task.python.assert_code",
        "1000",
    ),
]


@pytest.mark.parametrize(("mutate", "field", "words"), [b[1:] for b in BAD_TASKS], ids=[b[0] for b in BAD_TASKS])
def test_bad_task_is_invalid_argument(client, assert_healthy, mutate, field, words):
    before = jobs_completed(client)
    task = edited(mutate)
    details = rejected(lambda: client.score(task), field)
    assert words.lower() in details.lower(), details
    # the same task inside a batch names its index
    batch_details = rejected(
        lambda: client.score_batch([good_task("ok"), edited(mutate, "bad")]), "tasks[1]." + field[5:]
    )
    assert words.lower() in batch_details.lower(), batch_details
    assert jobs_completed(client) == before, "a rejected request must not run anything"
    assert_healthy()


def test_missing_task(raw_score, assert_healthy):
    rejected(lambda: raw_score(pb.ScoreRequest().SerializeToString()), "task")
    rejected(lambda: raw_score(b""), "task")
    assert_healthy()


# ---------------------------------------------------------------- malformed bytes


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (tag and length fit in one byte each here)."""
    assert number < 16 and len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_invalid_utf8_in_code(raw_score, assert_healthy):
    code = b"def f(x):\n    return '\xff\xfe'\n"
    task = _field(1, b"bad-utf8") + b"\x10\x01" + _field(3, code)  # id, language=PYTHON, code
    with pytest.raises(grpc.RpcError) as info:
        raw_score(_field(1, task))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in info.value.details(), info.value.details()
    assert "ScoreRequest" in info.value.details(), info.value.details()
    assert_healthy()


def test_invalid_utf8_in_batch_id(raw_batch, assert_healthy):
    good = good_task("fine").SerializeToString()
    bad = _field(1, b"id-\xc3\x28") + b"\x10\x01" + _field(3, GOOD_CODE.encode())
    with pytest.raises(grpc.RpcError) as info:
        raw_batch(bytes([0x0A]) + _varint(len(good)) + good + _field(1, bad))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in info.value.details(), info.value.details()
    assert_healthy()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


GARBAGE = [b"\xff" * 16, b"this is not a protobuf message at all", b"\x0a\xff\xff\xff\xff\x0f", b"\x0f\x00\x01"]


@pytest.mark.parametrize("garbage", GARBAGE, ids=["ff", "text", "huge-length", "bad-wire-type"])
def test_garbage_bytes(channel, raw_score, raw_batch, assert_healthy, garbage):
    for send, name in ((raw_score, "ScoreRequest"), (raw_batch, "ScoreBatchRequest")):
        with pytest.raises(grpc.RpcError) as info:
            send(garbage)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (info.value.code(), info.value.details())
        assert f"not a valid {name}" in info.value.details(), info.value.details()
    stats = channel.unary_unary(STATS, request_serializer=lambda b: b, response_deserializer=pb.StatsReply.FromString)
    with pytest.raises(grpc.RpcError) as info:
        stats(garbage, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_healthy()


# ---------------------------------------------------------------- batches


def test_empty_batch(client, assert_healthy):
    details = rejected(lambda: client.score_batch([]), "tasks")
    assert "empty" in details
    assert_healthy()


def test_duplicate_ids_in_batch(client, assert_healthy):
    before = jobs_completed(client)
    details = rejected(lambda: client.score_batch([good_task("same"), good_task("same")]), "tasks[1].id")
    assert "'same'" in details and "duplicate" in details
    rejected(lambda: client.score_batch([good_task("a"), good_task("b"), good_task("a")]), "tasks[2].id")
    assert jobs_completed(client) == before
    assert_healthy()


def test_only_task_3_bad_runs_nothing(client, assert_healthy):
    tasks = [good_task(f"task-{i}") for i in range(6)]
    tasks[3].python.call_tests[1].args_json = "not json"
    before = jobs_completed(client)
    received: list[pb.Result] = []
    with pytest.raises(grpc.RpcError) as info:
        for result in client.score_batch(tasks):
            received.append(result)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("tasks[3].python.call_tests[1].args_json:"), info.value.details()
    assert received == [], "no task of a rejected batch may be answered"
    assert jobs_completed(client) == before, "no task of a rejected batch may run"
    assert_healthy()


def test_too_many_tasks_in_a_batch(server, client, assert_healthy):
    limit = server.server.config.max_batch
    details = rejected(lambda: client.score_batch([good_task(f"t{i}") for i in range(limit + 1)]), "tasks")
    assert str(limit) in details
    assert_healthy()


# ---------------------------------------------------------------- edges that are NOT bad requests


def test_thousand_tests_is_accepted_and_scored(client, assert_healthy):
    task = pb.Task(
        id="thousand",
        language=pb.PYTHON,
        code=GOOD_CODE,
        python=pb.PythonSpec(
            entry_point="f",
            call_tests=[pb.CallTest(args_json=f"[{i}]", expected_json=json.dumps(i + 1)) for i in range(1000)],
        ),
    )
    result = client.score(task)
    assert status_name(result) == "PASSED", result.message
    assert result.score == 1.0
    assert len(result.tests) == 1000 and all(t.passed for t in result.tests)
    assert_healthy()


UNCOMPILABLE_ASSERTS = {
    "break-outside-loop": "assert f(1) == 2\nbreak\n",
    "return-outside-function": "assert f(1) == 2\nreturn 5\n",
    "await-outside-function": "assert f(1) == 2\nawait f(1)\n",
    "yield-outside-function": "assert (yield f(1)) == 2\n",
    "bad-nonlocal": "def check(candidate):\n    assert candidate(1) == 2\n    nonlocal q\n",
    "future-braces": "assert f(1) == 2\nfrom __future__ import braces\n",
}


@pytest.mark.parametrize("test_code", UNCOMPILABLE_ASSERTS.values(), ids=UNCOMPILABLE_ASSERTS.keys())
def test_assert_code_that_does_not_compile(client, test_code):
    task = pb.Task(
        id="uncompilable",
        language=pb.PYTHON,
        code=GOOD_CODE,
        python=pb.PythonSpec(entry_point="f", assert_code=test_code),
    )
    rejected(lambda: client.score(task), "task.python.assert_code")


def test_generator_check_never_passes_a_wrong_candidate(client):
    task = pb.Task(
        id="generator-check",
        language=pb.PYTHON,
        code="def f(x):\n    return 0\n",
        python=pb.PythonSpec(
            entry_point="f", assert_code="def check(candidate):\n    assert (yield candidate(1)) == 2\n"
        ),
    )
    try:
        result = client.score(task)
    except grpc.RpcError as error:  # rejecting the test code is a fine answer too
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith("task.python.assert_code:")
        return
    assert status_name(result) != "PASSED" and result.score == 0.0, result


@pytest.mark.parametrize("keyword", ["class", "None", "lambda"])
def test_keyword_entry_point(client, keyword):
    task = call_task("keyword", GOOD_CODE, keyword, [([1], 2)])
    details = rejected(lambda: client.score(task), "task.python.entry_point")
    assert keyword in details


def test_syntax_error_is_a_result_not_a_bad_request(client, assert_healthy):
    result = client.score(call_task("syntax", "def f(x)\n    return x +\n", "f", [([1], 2)]))
    assert result.id == "syntax"
    assert status_name(result) == "SYNTAX_ERROR"
    assert result.score == 0.0
    assert result.message
    assert_healthy()


def test_limits_at_the_maximum_are_accepted(server, client):
    config = server.server.config
    task = good_task("max-limits")
    task.limits.CopyFrom(
        limits(
            test_ms=config.test_timeout_ms.maximum,
            task_ms=config.task_timeout_ms.maximum,
            memory=config.memory_bytes.maximum,
            output=config.output_bytes.maximum,
        )
    )
    result = client.score(task)
    assert status_name(result) == "PASSED", result.message


def test_healthy_task_baseline(client):
    """The helper task the health checks rely on does pass (guards the checks above)."""
    result = client.score(healthy_task("baseline"))
    assert status_name(result) == "PASSED" and result.score == 1.0
