"""Fair scheduling between callers: the queue itself, then the service over real gRPC.

One caller's backlog of slow tasks must not hold up another caller's task, and a caller
that fills the queue is the only one refused (RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from sandbox.config import ServiceConfig
from sandbox.embedded import EmbeddedServer
from sandbox.fairqueue import FairQueue, Overloaded
from tests.conftest import make_backend, start_server
from tests.helpers import call_task, free_port, healthy_task, status_name, wait_for
from trainer_plugin.client import ClientOptions, SandboxClient

# ---------------------------------------------------------------- the queue


def _drain(queue: FairQueue[str], count: int) -> list[str]:
    async def take() -> list[str]:
        return [await queue.get() for _ in range(count)]

    return asyncio.run(take())


def _filled(jobs: list[tuple[str, str]], limit: int = 100) -> tuple[FairQueue[str], list[asyncio.Future[object]]]:
    """A queue holding `jobs` as (caller, item), with a future each; made on a loop of its own."""
    queue: FairQueue[str] = FairQueue(limit)
    loop = asyncio.new_event_loop()
    futures = []
    for caller, item in jobs:
        future = loop.create_future()
        futures.append(future)
        queue.put(caller, item, future)
    loop.close()
    return queue, futures


def test_callers_are_served_round_robin_and_each_in_order():
    queue, _ = _filled([("a", "a1"), ("a", "a2"), ("a", "a3"), ("a", "a4"), ("b", "b1"), ("c", "c1"), ("c", "c2")])
    assert queue.depths() == {"a": 4, "b": 1, "c": 2} and len(queue) == 7
    assert _drain(queue, 7) == ["a1", "b1", "c1", "a2", "c2", "a3", "a4"]
    assert len(queue) == 0 and queue.depths() == {}


def test_a_newcomer_waits_for_one_job_per_other_caller_not_the_backlog():
    queue, _ = _filled([("a", f"a{i}") for i in range(1000)] + [("b", f"b{i}") for i in range(1000)])
    assert _drain(queue, 3) == ["a0", "b0", "a1"]
    loop = asyncio.new_event_loop()
    queue.put("c", "c0", loop.create_future())
    loop.close()
    assert _drain(queue, 3) == ["b1", "a2", "c0"]


def test_per_caller_limit_refuses_only_that_caller():
    queue: FairQueue[str] = FairQueue(100, caller_limit=10)
    loop = asyncio.new_event_loop()
    for i in range(8):
        queue.put("a", f"a{i}", loop.create_future())
    loop.close()
    queue.admit("a", 2)
    with pytest.raises(
        Overloaded, match=r"caller 'a' has 8 jobs queued; 3 more would exceed the per-caller queue limit of 10"
    ):
        queue.admit("a", 3)
    queue.admit("b", 10)
    with pytest.raises(Overloaded, match="per-caller queue limit of 10"):
        queue.admit("b", 11)


def test_a_full_queue_refuses_the_caller_over_its_fair_share_only():
    queue, _ = _filled([("a", f"a{i}") for i in range(10)], limit=10)
    queue.admit("a", 0)
    with pytest.raises(Overloaded, match=r"queue limit 10\).*fair share of 10 \(queue limit / 1 callers"):
        queue.admit("a", 1)
    queue.admit("b", 5)  # the queue is full, but b holds nothing: half of it is b's share
    with pytest.raises(Overloaded, match=r"fair share of 5 \(queue limit / 2 callers"):
        queue.admit("b", 6)


def test_a_job_whose_caller_gave_up_stops_counting_and_never_comes_out():
    async def scenario() -> tuple[list[str], dict[str, int], int, list[str]]:
        queue: FairQueue[str] = FairQueue(100)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(5)]
        for i, future in enumerate(futures):
            queue.put("a" if i < 4 else "b", f"j{i}", future)
        futures[0].cancel()  # taken out before its done-callback ran: must still be skipped
        first = [await queue.get()]
        futures[2].cancel()
        futures[3].set_result(None)  # answered elsewhere (e.g. the call's deadline passed)
        await asyncio.sleep(0)  # the done-callbacks run
        depths, total = queue.depths(), len(queue)
        rest = [await queue.get()]
        return first, depths, total, rest

    first, depths, total, rest = asyncio.run(scenario())
    assert first == ["j1"]  # j0 was cancelled
    assert depths == {"b": 1} and total == 1  # j2 cancelled, j3 done: neither counts
    assert rest == ["j4"]


def test_a_waiting_getter_gets_the_next_job_and_a_cancelled_one_passes_it_on():
    async def scenario() -> tuple[str, str]:
        queue: FairQueue[str] = FairQueue(100)
        first = asyncio.create_task(queue.get())
        second = asyncio.create_task(queue.get())
        await asyncio.sleep(0)  # both wait
        queue.put("a", "x", asyncio.get_running_loop().create_future())
        first.cancel()  # woken, but cancelled before it could take the job
        got = await asyncio.wait_for(second, 5)
        third = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        queue.put("b", "y", asyncio.get_running_loop().create_future())
        return got, await asyncio.wait_for(third, 5)

    assert asyncio.run(scenario()) == ("x", "y")


# ---------------------------------------------------------------- the service

SLEEPY = "import time\n\ndef f(x, seconds):\n    time.sleep(seconds)\n    return x\n"
BACKLOG = 24  # slow tasks: 24 x 0.5 s on 2 workers is about 6 s of work


def sleepy_task(task_id: str, seconds: float, x: int = 1):
    return call_task(task_id, SLEEPY, "f", [([x, seconds], x)])


def slow_task(task_id: str, x: int = 1):
    return sleepy_task(task_id, 0.5, x)


def connect(target: str, timeout: float, token: str | None = None) -> SandboxClient:
    """A client on a connection of its own: gRPC shares one connection between channels of a
    process to the same target, and without named tokens a caller is a connection."""
    return SandboxClient(
        ClientOptions(target, token=token, timeout=timeout, channel_args=(("grpc.use_local_subchannel_pool", 1),))
    )


class Batch:
    """A ScoreBatch call running on a thread of its own (one caller's backlog)."""

    def __init__(self, client: SandboxClient, tasks: list) -> None:
        self.results: list = []
        self.errors: list = []
        self.thread = threading.Thread(target=self._consume, args=(client, tasks))
        self.thread.start()

    def _consume(self, client: SandboxClient, tasks: list) -> None:
        try:
            self.results.extend(client.score_batch(tasks))
        except grpc.RpcError as exc:
            self.errors.append(exc)

    def join(self, timeout: float = 120) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the batch never finished"


@pytest.fixture(scope="module")
def fair_server(backend_name: str) -> Iterator[EmbeddedServer]:
    embedded = start_server(backend_name, workers=2, queue_limit=BACKLOG)
    yield embedded
    embedded.stop()


def _idle(client: SandboxClient) -> None:
    assert wait_for(lambda: (s := client.stats()).queued == 0 and s.busy_workers == 0, 30), client.stats()


def test_one_task_is_not_stuck_behind_another_callers_backlog(fair_server):
    a, b = connect(fair_server.target, 120), connect(fair_server.target, 60)
    try:
        _idle(b)
        backlog = Batch(a, [slow_task(f"a-{i}", i) for i in range(BACKLOG)])
        assert wait_for(lambda: b.stats().queued >= BACKLOG - 4, 20), "the backlog never queued"
        started = time.monotonic()
        result = b.score(healthy_task("b"))
        waited = time.monotonic() - started
        still_running = len(backlog.results) < BACKLOG
        backlog.join()
        assert status_name(result) == "PASSED", result.message
        # FIFO: ~5 s behind the backlog; fair: about one slow job (0.5 s) plus its own run
        assert waited < 3.0, f"caller B waited {waited:.1f}s behind caller A's backlog"
        assert still_running, "the backlog finished first: nothing was shown"
        assert not backlog.errors and [status_name(r) for r in backlog.results] == ["PASSED"] * BACKLOG
    finally:
        a.close()
        b.close()


def test_only_the_caller_that_filled_the_queue_is_refused(fair_server):
    # jobs of 2 s: nothing leaves the queue while it is checked; A gives up after 4 s
    a, b = connect(fair_server.target, 4), connect(fair_server.target, 60)
    try:
        _idle(b)
        backlog = Batch(a, [sleepy_task(f"fill-{i}", 2.0) for i in range(BACKLOG)])
        assert wait_for(lambda: (s := b.stats()).busy_workers == 2 and s.queued == BACKLOG - 2, 10), b.stats()
        more = Batch(a, [sleepy_task(f"more-{i}", 2.0) for i in range(2)])
        assert wait_for(lambda: b.stats().queued == BACKLOG, 10), b.stats()  # A holds the whole queue
        with pytest.raises(grpc.RpcError) as refused:
            list(a.score_batch([healthy_task("a-over")]))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        results = list(b.score_batch([healthy_task("b-1"), healthy_task("b-2")]))  # the queue is full; B is not
        assert [status_name(r) for r in results] == ["PASSED", "PASSED"], [r.message for r in results]
        details = refused.value.details()
        assert f"queue limit {BACKLOG}" in details and "fair share" in details and "retry" in details, details
        backlog.join()
        more.join()
    finally:
        a.close()
        b.close()


def test_abandoned_jobs_leave_the_queue_at_once_and_never_run(fair_server):
    impatient, monitor = connect(fair_server.target, 1.0), connect(fair_server.target, 30)
    try:
        _idle(monitor)
        before = monitor.stats().job_runs
        with pytest.raises(grpc.RpcError) as info:
            list(impatient.score_batch([slow_task(f"gone-{i}", i) for i in range(BACKLOG)]))
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert wait_for(lambda: monitor.stats().queued == 0, 2.0), "abandoned jobs still count as queued"
        assert dict(monitor.stats().queued_by_caller) == {}
        _idle(monitor)
        assert monitor.stats().job_runs - before <= 6, "abandoned jobs still ran"  # the ~2 s in flight, no more
    finally:
        impatient.close()
        monitor.close()


# ---------------------------------------------------------------- identities from named tokens

TOKENS = (("team-a", "secret-a"), ("team-b", "secret-b"))


@pytest.fixture(scope="module")
def team_server() -> Iterator[EmbeddedServer]:
    config = ServiceConfig(
        host="127.0.0.1", port=0, workers=2, audit_log=None, queue_limit=8, token="shared", tokens=TOKENS
    )
    embedded = EmbeddedServer(config, make_backend("bwrap")).start()
    yield embedded
    embedded.stop()


def test_a_named_token_is_one_caller_across_connections(team_server):
    """Two connections with team-a's token share team-a's line; team-b has its own."""
    a1 = connect(team_server.target, 4, "secret-a")  # jobs of 2 s; gives up after 4
    a2 = connect(team_server.target, 4, "secret-a")
    b = connect(team_server.target, 60, "secret-b")
    shared = connect(team_server.target, 60, "shared")  # the single token still works
    try:
        backlog = Batch(a1, [sleepy_task(f"team-{i}", 2.0) for i in range(8)])
        assert wait_for(lambda: (s := b.stats()).busy_workers == 2 and s.queued == 6, 10), b.stats()
        more = Batch(a2, [sleepy_task(f"team-more-{i}", 2.0) for i in range(2)])
        assert wait_for(lambda: b.stats().queued == 8, 10), b.stats()
        assert dict(b.stats().queued_by_caller) == {"team-a": 8}
        with pytest.raises(grpc.RpcError) as refused:
            a2.score(healthy_task("a2"))  # another connection, the same caller: over its share
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "caller 'team-a'" in refused.value.details()
        assert status_name(b.score(healthy_task("b"))) == "PASSED"
        assert status_name(shared.score(healthy_task("shared"))) == "PASSED"
        backlog.join()
        more.join()
        named = ClientOptions(team_server.target, token="team-a", timeout=10)  # a name is not a secret
        with pytest.raises(grpc.RpcError) as wrong:
            SandboxClient(named).stats()
        assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        for client in (a1, a2, b, shared):
            client.close()


# ---------------------------------------------------------------- the command line

ROOT = Path(__file__).resolve().parent.parent


def test_serve_takes_named_tokens_from_a_file_and_queue_limits(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("# team tokens\nteam-a=secret-a\n\nteam-b=secret-b\n")
    port = free_port()
    command = [sys.executable, "-m", "sandbox", "serve", "--backend", "bwrap", "--workers", "1", "--port", str(port)]
    options = ["--tokens-file", str(tokens), "--token", "shared", "--queue-limit", "6", "--caller-queue-limit", "3"]
    process = subprocess.Popen([*command, *options], cwd=ROOT, stderr=subprocess.DEVNULL)
    target = f"127.0.0.1:{port}"
    clients = [connect(target, 60, token) for token in ("secret-a", "shared", "team-a")]
    try:
        team, shared, named = clients
        assert wait_for(lambda: _answers(team), 30), "the server never came up"
        assert status_name(team.score(healthy_task("team"))) == "PASSED"
        assert status_name(shared.score(healthy_task("shared"))) == "PASSED"
        with pytest.raises(grpc.RpcError) as wrong:
            named.stats()  # a token's name is not its secret
        assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as over:
            list(team.score_batch([healthy_task(f"t-{i}") for i in range(4)]))
        assert over.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "caller 'team-a'" in over.value.details() and "per-caller queue limit of 3" in over.value.details()
    finally:
        for client in clients:
            client.close()
        process.terminate()
        process.wait(30)


def _answers(client: SandboxClient) -> bool:
    try:
        client.stats()
    except grpc.RpcError:
        return False
    return True


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("team-a\n", "tokens:1: expected NAME=SECRET"),
        ("team a=s\n", "tokens:1: expected NAME=SECRET"),
        ("a=s1\na=s2\n", "tokens:2: token name 'a' given twice"),
        ("a=s\nb=s\n", "tokens:2: the secret of 'b' is another name's too"),
        ("# nothing\n", "tokens: no tokens"),
    ],
)
def test_a_bad_tokens_file_is_a_clear_error(tmp_path, content, problem):
    tokens = tmp_path / "tokens"
    tokens.write_text(content)
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "serve", "--tokens-file", str(tokens), "--backend", "bwrap"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and problem in done.stderr, done.stderr
