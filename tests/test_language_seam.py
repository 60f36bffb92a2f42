"""A language is one folder plus one registry line: a test-only toy language (tests/toy_language)
runs through the real service, its gold a memo shared by tasks, its failures clear errors."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from rewards.model import Status, Verdict
from sandbox.api import pb
from sandbox.config import ServiceConfig
from sandbox.embedded import EmbeddedServer
from sandbox.fairqueue import FairQueue, Overloaded
from sandbox.language import Language
from sandbox.languages import standard_languages
from sandbox.steps import Flow, Job
from sandbox.worker import RunnerReply
from tests.conftest import make_backend
from tests.helpers import call_task, status_name
from tests.toy_language import RPN_ENUM, RpnLanguage
from trainer_plugin.client import ClientOptions, SandboxClient


def rpn_task(task_id: str, candidate: str, gold: str, inputs: list[int]) -> pb.Task:
    spec = pb.PythonSpec(assert_code=gold, io_tests=[pb.IoTest(stdin=str(x)) for x in inputs])
    return pb.Task(id=task_id, language=RPN_ENUM, code=candidate, python=spec)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def toy() -> Iterator[tuple[EmbeddedServer, SandboxClient]]:
    config = ServiceConfig(host="127.0.0.1", port=0, workers=2, audit_log=None)
    embedded = EmbeddedServer(config, make_backend("bwrap"), (*standard_languages(), RpnLanguage())).start()
    yield embedded, SandboxClient(ClientOptions(embedded.target, timeout=60))
    embedded.stop()


def _jobs(embedded: EmbeddedServer) -> int:
    return embedded.server.pool.stats.jobs_completed


def test_a_right_program_passes_and_a_wrong_one_gets_partial_credit(toy: tuple[EmbeddedServer, SandboxClient]) -> None:
    _, client = toy
    right = client.score(rpn_task("right", "x x *", "x x *", [2, 3, -4]))
    assert status_name(right) == "PASSED" and right.score == 1.0, right.message
    wrong = client.score(rpn_task("wrong", "x x +", "x x *", [2, 3]))  # right for x = 2 only
    assert status_name(wrong) == "FAILED" and wrong.score == 0.5
    assert [t.passed for t in wrong.tests] == [True, False]


def test_the_gold_runs_once_for_every_task_that_shares_it(toy: tuple[EmbeddedServer, SandboxClient]) -> None:
    embedded, client = toy
    before = _jobs(embedded)
    tasks = [rpn_task(f"shared-{n}", "x 1 +", "1 x +", [5, 6, 7]) for n in range(4)]
    results = list(client.score_batch(tasks))
    assert [status_name(r) for r in results] == ["PASSED"] * 4
    assert _jobs(embedded) - before == 1 + 4, "one gold job, then one job per candidate"
    again = list(client.score_batch([rpn_task("shared-again", "x 1 +", "1 x +", [5, 6, 7])]))
    assert status_name(again[0]) == "PASSED"
    assert _jobs(embedded) - before == 1 + 4 + 1, "the gold's outputs were kept"


def test_a_gold_that_fails_makes_the_request_invalid_before_any_candidate_runs(
    toy: tuple[EmbeddedServer, SandboxClient],
) -> None:
    embedded, client = toy
    before = _jobs(embedded)
    tasks = [rpn_task("fine", "x", "x", [1]), rpn_task("broken-gold", "x", "x +", [1])]  # `+` on one value
    with pytest.raises(grpc.RpcError) as raised:
        list(client.score_batch(tasks))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tasks[1].python.assert_code" in raised.value.details()
    assert _jobs(embedded) - before <= 2, "only gold jobs ran: no candidate"


def test_the_language_validates_its_own_tasks(toy: tuple[EmbeddedServer, SandboxClient]) -> None:
    embedded, client = toy
    with pytest.raises(grpc.RpcError) as raised:
        client.score(rpn_task("no-inputs", "x", "x", []))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "task.python.io_tests: needs inputs" in raised.value.details()
    before = _jobs(embedded)
    result = client.score(rpn_task("not-rpn", "x y", "x", [1]))
    assert status_name(result) == "SYNTAX_ERROR" and _jobs(embedded) == before  # decided without running


def test_a_language_the_service_was_not_given_is_an_unknown_language(client: SandboxClient) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        client.score(rpn_task("toy-elsewhere", "x", "x", [1]))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"unknown language {RPN_ENUM}" in raised.value.details()


# ---------------------------------------------------------------- admission counts every lane


class HoldLane:
    """A lane of a test language that keeps its jobs queued until the test lets them go: a
    request's admission must count what waits here, as it counts the main pool's queue."""

    def __init__(self, caller_limit: int) -> None:
        self.queue: FairQueue[Job] = FairQueue(64, caller_limit)
        self.release = threading.Event()
        self.queued = 0

    async def run(self, job: Job, caller: str) -> RunnerReply:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.queue.put(caller, job, future)
        self.queued += 1
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        future.set_result(None)
        return RunnerReply({"ending": "closed", "elapsed_ms": 0.0}, [])

    def admit(self, caller: str, count: int) -> None:
        self.queue.admit(caller, count)

    async def start(self) -> None:
        """Nothing to start."""

    def abandon(self, reason: str) -> None:
        self.release.set()

    async def close(self) -> None:
        self.release.set()


class HeldLanguage(Language):
    name = "held"
    enum = RPN_ENUM + 1
    admission_lane = "held"

    def __init__(self, lane: HoldLane) -> None:
        self.lane = lane

    def lanes(self) -> dict[str, HoldLane]:
        return {"held": self.lane}

    def prepare(self, task: Any, limits: dict[str, int]) -> dict[str, int]:
        return limits

    def flow(self, plan: dict[str, int]) -> Flow:
        yield Job({"mode": "held"}, plan["task_ms"], lane="held")
        return Verdict(Status.PASSED, 1.0)


def held_task(task_id: str) -> pb.Task:
    return pb.Task(id=task_id, language=HeldLanguage.enum, code="held")  # type: ignore[arg-type]


def test_a_request_is_refused_when_its_language_lane_is_full_not_only_the_main_queue() -> None:
    lane = HoldLane(caller_limit=2)
    config = ServiceConfig(host="127.0.0.1", port=0, workers=1, audit_log=None, caller_queue_limit=2)
    embedded = EmbeddedServer(config, make_backend("bwrap"), (*standard_languages(), HeldLanguage(lane))).start()
    client = SandboxClient(ClientOptions(embedded.target, timeout=60))
    try:
        first: list[pb.Result] = []
        waiting = threading.Thread(target=lambda: first.extend(client.score_batch([held_task("a"), held_task("b")])))
        waiting.start()
        deadline = time.monotonic() + 30
        while lane.queued < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lane.queued == 2, "the first request's jobs wait in the held lane"
        with pytest.raises(grpc.RpcError) as raised:
            client.score(held_task("c"))
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "per-caller queue limit of 2" in raised.value.details()
        python = client.score(call_task("other-lane", "def f(x):\n    return x\n", "f", [([1], 1)]))
        assert status_name(python) == "PASSED", "the main lane's queue is the caller's own: admitted"
        lane.release.set()
        waiting.join(30)
        assert [status_name(r) for r in first] == ["PASSED", "PASSED"]
    finally:
        lane.release.set()
        embedded.stop()


def test_the_triton_lanes_admit_by_the_service_queue_limits() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("triton")
    config = ServiceConfig(host="127.0.0.1", port=0, workers=1, audit_log=None, caller_queue_limit=3)
    embedded = EmbeddedServer(config, make_backend("bwrap"))
    try:
        lane = embedded.server.lanes["triton"]
        lane.admit("someone", 3)
        with pytest.raises(Overloaded, match="per-caller queue limit of 3"):
            lane.admit("someone", 4)
    finally:
        embedded.server.audit.close()


def test_a_language_cannot_take_another_ones_enum_or_lane() -> None:
    config = ServiceConfig(host="127.0.0.1", port=0, workers=1, audit_log=None)
    with pytest.raises(ValueError, match="share an enum value"):
        EmbeddedServer(config, make_backend("bwrap"), (*standard_languages(), RpnLanguage(), RpnLanguage()))

    class Greedy(HeldLanguage):
        enum = RPN_ENUM + 2

        def lanes(self) -> dict[str, HoldLane]:
            return {"main": self.lane}

    with pytest.raises(ValueError, match="names the lane 'main', which is taken"):
        EmbeddedServer(config, make_backend("bwrap"), (*standard_languages(), Greedy(HoldLane(1))))
