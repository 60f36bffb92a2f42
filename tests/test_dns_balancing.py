"""`dns:` targets: one channel balanced by gRPC (round_robin) over every address a name
resolves to, following the name as it changes: what a headless Kubernetes Service needs.

A real authoritative DNS server on 127.0.0.1 (dnslib, UDP, an ephemeral port) answers the
test name; the client names it as the target's authority (`dns://127.0.0.1:PORT/NAME:PORT`),
so nothing of the host's resolver configuration is read or changed. Real services listen on
127.0.0.2, .3 and .4 (Linux routes all of 127/8 to lo) on one port, as a Service's pods do.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from grpc_health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpc_health.v1.health_pb2_grpc import HealthStub

from sandbox import cli
from sandbox.config import ServiceConfig
from sandbox.embedded import EmbeddedServer
from tests.conftest import start_server
from tests.helpers import HEALTHY_CODE, call_task, limits, status_name, wait_for
from trainer_plugin.client import ClientOptions, SandboxClient

NAME = "fleet.rft.test"
SLOW_CODE = "import time\n\ndef echo(x, seconds):\n    time.sleep(seconds)\n    return x\n"


class Zone(BaseResolver):
    """The name's A records, as the test sets them; every other name does not exist."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        if str(request.q.qname).rstrip(".") != NAME:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            for address in list(self.addresses):
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=0))
        return reply  # other types (AAAA): the name exists, with no such records


@pytest.fixture
def zone() -> Iterator[tuple[Zone, int]]:
    resolver = Zone("127.0.0.2", "127.0.0.3")
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    server = DNSServer(resolver, address="127.0.0.1", port=0, logger=quiet)
    server.start_thread()
    yield resolver, server.server.server_address[1]
    server.stop()
    server.server.server_close()


class Fleet:
    """The test's servers, by address: all on one port, as a headless Service's pods are."""

    def __init__(self) -> None:
        self.servers: dict[str, EmbeddedServer] = {}
        self.port = 0  # the first server's ephemeral port, then everyone's

    def serve(self, address: str, **config: object) -> None:
        self.servers[address] = start_server("bwrap", host=address, port=self.port, workers=1, **config)
        self.port = self.servers[address].server.port

    def stop(self, address: str) -> None:
        self.servers.pop(address).stop()

    def scored(self, address: str) -> int:
        return self.servers[address].server.pool.stats.jobs_completed


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    servers = Fleet()
    yield servers
    for address in list(servers.servers):
        servers.stop(address)


def client_for(dns_port: int, port: int, **options: object) -> SandboxClient:
    settings: dict[str, object] = {"batch_size": 2, "max_concurrency": 2, "timeout": 120}
    settings.update(options)
    return SandboxClient(ClientOptions(f"dns://127.0.0.1:{dns_port}/{NAME}:{port}", **settings))  # type: ignore[arg-type]


def adds(first: int, count: int) -> list:
    """Distinct tasks (identical ones would be scored once)."""
    return [call_task(f"t{i}", HEALTHY_CODE, "add", [([i, 1], i + 1)]) for i in range(first, first + count)]


def assert_all_passed(tasks: list, results: list) -> None:
    assert [r.id for r in results] == [t.id for t in tasks], "one result per task, in order"
    assert [status_name(r) for r in results] == ["PASSED"] * len(tasks), results


def test_a_batch_is_spread_over_every_address_of_the_name(zone, fleet) -> None:
    _, dns_port = zone
    fleet.serve("127.0.0.2")
    fleet.serve("127.0.0.3")
    client = client_for(dns_port, fleet.port)
    try:
        tasks = adds(0, 12)  # six ScoreBatch calls
        assert_all_passed(tasks, client.score_all(tasks))
    finally:
        client.close()
    counts = {address: fleet.scored(address) for address in fleet.servers}
    assert all(counts.values()), f"every address got work: {counts}"
    assert sum(counts.values()) == len(tasks), f"each task scored once: {counts}"


def test_the_client_follows_the_name_as_it_changes(zone, fleet) -> None:
    records, dns_port = zone
    aged = {"max_connection_age": 1.0}  # connections end often, so the client re-resolves often
    fleet.serve("127.0.0.2", **aged)
    fleet.serve("127.0.0.3", **aged)
    client = client_for(dns_port, fleet.port, channel_args=(("grpc.dns_min_time_between_resolutions_ms", 100),))
    firsts = iter(range(0, 10_000, 8))

    def batch() -> None:
        tasks = adds(next(firsts), 8)
        assert_all_passed(tasks, client.score_all(tasks))

    try:
        # a new channel's first calls go to whichever address is ready first: batches until both served
        spread = wait_for(lambda: batch() or (fleet.scored("127.0.0.2") and fleet.scored("127.0.0.3")), timeout=60)
        assert spread, "both addresses get work"
        fleet.serve("127.0.0.4", **aged)
        records.addresses = ["127.0.0.3", "127.0.0.4"]  # .2 leaves the Service, .4 joins
        assert wait_for(lambda: batch() or fleet.scored("127.0.0.4") > 0, timeout=60), "the new address gets work"
        left = fleet.scored("127.0.0.2")  # no call is in flight between batches
        for _ in range(2):
            batch()
        assert fleet.scored("127.0.0.2") == left, "the address that left gets no more work"
    finally:
        client.close()


def test_a_server_stopped_mid_batch_loses_no_task(zone, fleet) -> None:
    _, dns_port = zone
    fleet.serve("127.0.0.2")
    fleet.serve("127.0.0.3")
    # two calls of six 0.5 s tasks: a call outlives the stop's 2 s grace, so it is cut
    client = client_for(dns_port, fleet.port, batch_size=6)
    tasks = [call_task(f"slow{i}", SLOW_CODE, "echo", [([i, 0.5], i)]) for i in range(12)]
    results: list = []
    worker = threading.Thread(target=lambda: results.extend(client.score_all(tasks)))
    try:
        worker.start()
        # the first two calls may both go to one address (the first connected): stop one that has work
        assert wait_for(lambda: any(fleet.scored(a) for a in fleet.servers), timeout=60), "the batch started"
        victim, survivor = sorted(fleet.servers, key=fleet.scored, reverse=True)
        fleet.stop(victim)
        worker.join(120)
        assert not worker.is_alive()
    finally:
        client.close()
    assert_all_passed(tasks, results)
    assert fleet.scored(survivor) > 0, "the survivor scored what the stopped server left"


def test_a_draining_server_gets_no_new_call(zone, fleet) -> None:
    _, dns_port = zone
    fleet.serve("127.0.0.2")
    fleet.serve("127.0.0.3")
    draining = fleet.servers["127.0.0.2"]
    holder = SandboxClient(ClientOptions(f"127.0.0.2:{fleet.port}", timeout=60))  # keeps the drain waiting
    long_task = call_task("held", SLOW_CODE, "echo", [([0, 6], 0)], limits(test_ms=30_000, task_ms=30_000))
    held = threading.Thread(target=lambda: list(holder.score_batch([long_task])))
    held.start()
    assert wait_for(lambda: draining.server.servicer.gate.calls > 0, timeout=30)
    drain = threading.Thread(target=lambda: draining.call(draining.server.drain(30.0)))
    drain.start()
    health = HealthStub(holder.channel)
    not_serving = HealthCheckResponse.NOT_SERVING
    assert wait_for(lambda: health.Check(HealthCheckRequest(), timeout=10).status == not_serving, timeout=30)
    # no retries: a call routed to the draining server would come back SANDBOX_ERROR
    client = client_for(dns_port, fleet.port, retries=0)
    try:
        tasks = adds(0, 8)
        assert_all_passed(tasks, client.score_all(tasks))
    finally:
        client.close()
        held.join(60)
        drain.join(60)
        holder.close()
    assert fleet.scored("127.0.0.3") == len(tasks), "the client saw the health service's NOT_SERVING"


def test_serve_takes_a_max_connection_age(monkeypatch) -> None:
    seen: list = []

    async def serve(config, args) -> None:  # the server itself is exercised above
        seen.append(config.max_connection_age)

    monkeypatch.setattr(cli, "_serve", serve)
    monkeypatch.setattr(cli.logs, "configure", lambda level: None)  # leave the test run's logging alone
    assert cli.main(["serve", "--backend", "bwrap", "--max-connection-age", "2.5"]) == 0
    assert cli.main(["serve", "--backend", "bwrap"]) == 0
    assert seen == [2.5, ServiceConfig.max_connection_age]
    with pytest.raises(SystemExit, match="--max-connection-age must be >= 0"):
        cli.main(["serve", "--max-connection-age", "-1"])
