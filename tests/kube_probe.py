"""Run inside the service container's network namespace (nsenter --net): score tasks there.

tests/test_deploy_kubernetes.py starts the service image with no network but its own
loopback, as a pod has its own; this client joins that namespace, so the test reaches the
service on 127.0.0.1 and nothing else. Prints one JSON object: the health answers and, per
task, its status and score.
"""

from __future__ import annotations

import json
import os
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers import call_task, healthy_task, status_name
from trainer_plugin.client import ClientOptions, SandboxClient

# Each probe returns what it could reach; [] (what the task expects) means contained.
PROBES = {
    "shadow-and-service-env": """
def f():
    seen = []
    for path in ("/etc/shadow", "/etc/passwd", "/opt/rft-sandbox/site", "/tmp/rft-sandbox-audit.jsonl"):
        try:
            with open(path, "rb") as handle:
                handle.read(1)
            seen.append(path)
        except IsADirectoryError:
            seen.append(path)
        except OSError:
            pass
    return seen
""",
    "network-to-service": """
import socket

def f():
    seen = []
    for host in ("127.0.0.1", "::1"):
        try:
            socket.create_connection((host, 50051), timeout=2).close()
            seen.append(host)
        except OSError:
            pass
    return seen
""",
    "token-in-any-environment": """
import glob, os

def f():
    seen = [name for name in os.environ if "TOKEN" in name]
    for path in glob.glob("/proc/[0-9]*/environ"):  # every process this sandbox can see
        try:
            with open(path, "rb") as handle:
                seen += [path for entry in handle.read().split(b"\\0") if b"TOKEN" in entry]
        except OSError:
            pass
    return seen
""",
}


def health(channel: grpc.Channel, token: str | None) -> str:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), metadata=metadata, timeout=5)
    except grpc.RpcError as exc:
        return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(target: str, deadline_s: float) -> int:
    token = os.environ["RFT_SANDBOX_TOKEN"]
    client = SandboxClient(ClientOptions(target, token=token, timeout=120, retries=0))
    try:
        give_up = time.monotonic() + deadline_s
        while (serving := health(client.channel, token)) != "SERVING" and time.monotonic() < give_up:
            time.sleep(0.5)
        report: dict[str, object] = {"health": serving, "health_without_token": health(client.channel, None)}
        tasks = [healthy_task("healthy")] + [call_task(name, code, "f", [([], [])]) for name, code in PROBES.items()]
        report["results"] = {
            result.id: {"status": status_name(result), "score": result.score, "message": result.message[:300]}
            for result in client.score_batch(tasks)
        }
    finally:
        client.close()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], float(sys.argv[2])))
