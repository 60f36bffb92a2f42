"""`python3 -m sandbox.probe`: the pod's readiness and liveness check, through the gRPC health service.

A kubelet `grpc:` probe sends no metadata, and the service asks for the bearer token on
every call, health included (sandbox/auth.py); so the probe runs inside the pod, on its
loopback, with the token the service itself was given (RFT_SANDBOX_TOKEN). Exit 0 when
the service answers SERVING; 1, with the reason on stderr, otherwise (NOT_SERVING while
it drains or has no live worker, UNAUTHENTICATED, unreachable).
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TOKEN_ENV = "RFT_SANDBOX_TOKEN"  # noqa: S105 - the variable's name (sandbox.cli's), not a secret


def check(target: str, token: str | None, timeout: float, service: str = "") -> str:
    """The health status's name for `service` at `target`; raises grpc.RpcError when there is no answer."""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), metadata=metadata, timeout=timeout
        )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m sandbox.probe", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=50051, help="the service's port on this host's loopback")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    try:
        status = check(f"127.0.0.1:{args.port}", os.environ.get(TOKEN_ENV) or None, args.timeout)
    except grpc.RpcError as exc:
        print(f"health: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    if status != "SERVING":
        print(f"health: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
