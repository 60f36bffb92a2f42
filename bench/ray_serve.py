"""Ray Serve's gRPC ingress against the fleet's plain actors: the transport's cost per result.

    pip install "ray[serve]"    # not a dependency of the project; this benchmark only
    python3 -m bench.ray_serve [--results 20000] [--rounds 3]

The fleet runs on plain actors, each replica its own gRPC server that clients reach directly
(docs/deployment-ray.md). This measures what the alternative would cost: the same
server-streaming `ScoreBatch` answered by a Ray Serve deployment behind Serve's gRPC proxy.
Both sides answer canned results (no scoring), so the figure is the transport alone:
  - direct: a Ray actor running a grpc.aio server with the ScoreBatch handler, on its port;
  - serve: a deployment whose `ScoreBatch` generator yields the same results, called through
    Serve's gRPC proxy (`grpc_servicer_functions`, the `application` metadata).
Figures: results/s, microseconds per result, and the time to the first result of a stream
whose results come 100 ms apart (it streams if that is 100 ms, not the whole stream's time).
The service itself spends about 1.5 ms of CPU per cheap task (bench/service_cpu.py). Runs in
a fresh network namespace, like bench/fleet.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc

from sandbox.api import SERVICE, Stub, pb

ROOT = Path(__file__).resolve().parent.parent
_IN_NETNS = "RFT_BENCH_NETNS"
APP = "serve-echo"


def echo(request: pb.ScoreBatchRequest, gap: float = 0.0) -> Iterator[pb.Result]:
    """What both sides answer: one PASSED result per task, `gap` seconds apart."""
    for task in request.tasks:
        if gap:
            time.sleep(gap)
        yield pb.Result(id=task.id, status=pb.PASSED, score=1.0)


def gap_of(request: pb.ScoreBatchRequest) -> float:
    """The spaced stream is asked for by its first task's entry point (the same request type)."""
    return 0.1 if request.tasks and request.tasks[0].python.entry_point == "gap" else 0.0


def add_SandboxServicer_to_server(servicer: object, server: grpc.Server) -> None:
    """The generated-code shape Serve's proxy needs (`grpc_servicer_functions`): the service
    itself registers a generic handler and has no generated servicer module."""
    handlers = {
        "ScoreBatch": grpc.unary_stream_rpc_method_handler(
            servicer.ScoreBatch,  # type: ignore[attr-defined]
            request_deserializer=pb.ScoreBatchRequest.FromString,
            response_serializer=pb.Result.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


class DirectEcho:
    """A replica's shape: an actor that serves gRPC on its own port."""

    def __init__(self) -> None:
        import asyncio
        import threading

        self.port = 0
        ready = threading.Event()

        async def serve() -> None:
            server = grpc.aio.server()

            class Servicer:
                async def ScoreBatch(  # the RPC's name
                    self, request: pb.ScoreBatchRequest, context: grpc.aio.ServicerContext
                ) -> AsyncIterator[pb.Result]:
                    for result in echo(request, gap_of(request)):
                        yield result

            add_SandboxServicer_to_server(Servicer(), server)
            self.port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            ready.set()
            await server.wait_for_termination()

        threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
        ready.wait(30)

    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def batch(count: int, gap: bool = False) -> pb.ScoreBatchRequest:
    spec = pb.PythonSpec(entry_point="gap" if gap else "f")
    return pb.ScoreBatchRequest(tasks=[pb.Task(id=str(i), language=pb.PYTHON, python=spec) for i in range(count)])


def warm(stub: Stub, metadata: tuple, timeout: float = 60.0) -> None:
    """Connected, and the route known (Serve's proxy learns a new application a little later)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            stream(stub, batch(100), metadata)
            return
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:  # type: ignore[attr-defined]
                raise
            time.sleep(0.5)


def stream(stub: Stub, request: pb.ScoreBatchRequest, metadata: tuple) -> tuple[int, float, float]:
    """(results, seconds, seconds to the first result)."""
    started = time.perf_counter()
    first, count = 0.0, 0
    for _ in stub.ScoreBatch(request, timeout=300, metadata=metadata):
        if count == 0:
            first = time.perf_counter() - started
        count += 1
    return count, time.perf_counter() - started, first


def run(args: argparse.Namespace) -> None:
    import ray
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve_port = _free_port()
    serve.start(
        http_options={"host": "127.0.0.1", "port": _free_port()},
        grpc_options={"port": serve_port, "grpc_servicer_functions": ["bench.ray_serve:add_SandboxServicer_to_server"]},
    )

    @serve.deployment
    class ServeEcho:
        def ScoreBatch(self, request: pb.ScoreBatchRequest) -> Iterator[pb.Result]:  # the RPC's name
            yield from echo(request, gap_of(request))

    serve.run(ServeEcho.bind(), name=APP, route_prefix=f"/{APP}")
    direct = ray.remote(DirectEcho).remote()
    paths = {
        "direct (actor's own port)": (ray.get(direct.target.remote()), ()),
        "serve (gRPC proxy)": (f"127.0.0.1:{serve_port}", (("application", APP),)),
    }
    figures: dict[str, list[float]] = {name: [] for name in paths}
    firsts: dict[str, float] = {}
    try:
        for name, (target, metadata) in paths.items():
            with grpc.insecure_channel(target) as channel:
                warm(Stub(channel), metadata)
                _, _, firsts[name] = stream(Stub(channel), batch(5, gap=True), metadata)
        for _ in range(args.rounds):
            for name, (target, metadata) in paths.items():
                with grpc.insecure_channel(target) as channel:
                    count, seconds, _ = stream(Stub(channel), batch(args.results), metadata)
                assert count == args.results, f"{name}: {count} of {args.results} results"
                figures[name].append(seconds / count * 1e6)
        print(f"\n{args.results} canned results per stream, {args.rounds} rounds alternated (median):")
        base = statistics.median(figures["direct (actor's own port)"])
        for name, values in figures.items():
            us = statistics.median(values)
            print(
                f"  {name:27s} {us:8.1f} us/result  {1e6 / us:9.0f} results/s  {us / base:5.1f}x direct  "
                f"first of a 100 ms-spaced stream after {firsts[name] * 1000:.0f} ms"
            )
    finally:
        serve.shutdown()
        ray.shutdown()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=int, default=20000, help="results per stream")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.environ.get(_IN_NETNS) != "1":
        if shutil.which("unshare") is None:
            raise SystemExit("bench/ray_serve needs unshare (util-linux)")
        # Serve pickles each request and result between its proxy and the replica: the generated
        # messages' module must import by its own name there
        path = os.pathsep.join([str(ROOT), str(ROOT / "sandbox" / "_proto")])
        env = {**os.environ, _IN_NETNS: "1", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": path}
        env.pop("RAY_ADDRESS", None)
        command = " ".join([f"ip link set lo up && exec {sys.executable} -m bench.ray_serve", *sys.argv[1:]])
        raise SystemExit(subprocess.run(["unshare", "--net", "sh", "-c", command], cwd=ROOT, env=env).returncode)
    run(args)


if __name__ == "__main__":
    main()
