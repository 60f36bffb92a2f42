"""deploy/kubernetes: the manifests are valid API objects, consistent with the service, and the
service image run exactly as the pod spec says scores tasks with isolation on.

Loading: every document becomes its Kubernetes client model, and serializing the model back
gives the document again, so no field was unknown (the client drops unknown keys silently).
Running: the Deployment's container is translated into `docker run` (command, args, env,
user, capabilities, read-only root, seccomp profile, /proc unmasked, emptyDir as tmpfs); the
container gets no network but its own loopback, as a pod has its own network namespace, and
the test's client joins that namespace (nsenter --net), so everything stays on a loopback
the test made. hostUsers: false has no per-container form in Docker (only a daemon-wide
userns-remap), so the container runs in the host's user namespace: it holds no
capabilities there either.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from sandbox import metrics
from sandbox.cli import TOKEN_ENV

ROOT = Path(__file__).resolve().parents[1]
KUBE = ROOT / "deploy" / "kubernetes"
PROFILE = ROOT / "deploy" / "seccomp" / "rft-sandbox-bwrap.json"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kustomizations() -> list[Path]:
    return sorted(KUBE.rglob("kustomization.yaml"))


def _patches() -> set[Path]:
    """Strategic-merge patches: partial objects, checked through `kubectl kustomize` instead."""
    found = set()
    for kustomization in _kustomizations():
        for patch in yaml.safe_load(kustomization.read_text()).get("patches", []):
            found.add((kustomization.parent / patch["path"]).resolve())
    return found


def _resources() -> list[Path]:
    return sorted(p for p in KUBE.rglob("*.yaml") if p.name != "kustomization.yaml" and p.resolve() not in _patches())


def _model_name(doc: dict[str, Any]) -> str:
    version = doc["apiVersion"].split("/")[-1]
    return version[0].upper() + version[1:] + doc["kind"]  # apps/v1 Deployment -> V1Deployment


def _round_trip(doc: dict[str, Any]) -> Any:
    api = k8s.ApiClient()
    model = api.deserialize(json.dumps(doc), _model_name(doc), "application/json")
    assert api.sanitize_for_serialization(model) == doc, f"{doc['kind']}: a field the API does not know was dropped"
    return model


def _deployment() -> dict[str, Any]:
    return _docs(KUBE / "base" / "deployment.yaml")[0]


def _container() -> dict[str, Any]:
    return _deployment()["spec"]["template"]["spec"]["containers"][0]


def _flag(args: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"--{name}="))


# ---------------------------------------------------------------- the manifests


@pytest.mark.parametrize("path", _resources(), ids=lambda p: str(p.relative_to(KUBE)))
def test_manifest_loads_into_the_api_models_with_no_unknown_field(path):
    for doc in _docs(path):
        assert type(_round_trip(doc)).__name__ == _model_name(doc)


def test_round_trip_notices_an_unknown_field():
    doc = _deployment()
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True  # typo
    with pytest.raises(AssertionError, match="dropped"):
        _round_trip(doc)


def test_every_manifest_is_listed_in_a_kustomization():
    listed = set()
    for kustomization in _kustomizations():
        spec = yaml.safe_load(kustomization.read_text())
        assert spec["kind"] == "Kustomization"
        for entry in spec.get("resources", []) + [p["path"] for p in spec.get("patches", [])]:
            target = (kustomization.parent / entry).resolve()
            assert target.exists(), f"{kustomization}: {entry} does not exist"
            listed.add(target)
    unlisted = [p for p in KUBE.rglob("*.yaml") if p.name != "kustomization.yaml" and p.resolve() not in listed]
    assert not unlisted


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl (kustomize) here")
@pytest.mark.parametrize("root", ["", "overlays/gvisor"])
def test_kustomize_builds_and_every_built_object_loads(root):
    built = subprocess.run(["kubectl", "kustomize", str(KUBE / root)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    docs = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Secret"} <= kinds
    for doc in docs:
        _round_trip(doc)
    if root:
        deployment = next(doc for doc in docs if doc["kind"] == "Deployment")
        assert deployment["spec"]["template"]["spec"]["runtimeClassName"] == "gvisor"
        assert "RuntimeClass" in kinds


def test_the_pod_spec_agrees_with_the_service():
    pod = _deployment()["spec"]["template"]["spec"]
    container = _container()
    args = container["args"]
    assert container["command"] == ["python3", "-m", "sandbox", "serve"] and _flag(args, "backend") == "bwrap"
    assert pod["terminationGracePeriodSeconds"] > float(_flag(args, "drain-seconds")), "SIGKILL would cut the drain"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": int(_flag(args, "port")), "metrics": int(_flag(args, "metrics-port"))}
    assert int(_flag(args, "workers")) == int(container["resources"]["limits"]["cpu"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == ["python3", "-m", "sandbox.probe", f"--port={ports['grpc']}"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    secret = _docs(KUBE / "base" / "secret.yaml")[0]
    assert env[TOKEN_ENV] == {"name": secret["metadata"]["name"], "key": "token"} and "token" in secret["stringData"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert _flag(args, "audit-log").startswith(mounts["tmp"] + "/"), "the audit log must be on a writable volume"


def test_security_context_is_the_documented_least_privilege():
    pod = _deployment()["spec"]["template"]["spec"]
    context = _container()["securityContext"]
    assert pod["hostUsers"] is False and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert context["capabilities"] == {"drop": ["ALL"]} and context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] and context["procMount"] == "Unmasked"
    seccomp = pod["securityContext"]["seccompProfile"]
    assert seccomp["type"] == "Localhost" and Path(seccomp["localhostProfile"]).name == PROFILE.name


def test_seccomp_profile_is_generated_from_the_job_rules():
    spec = importlib.util.spec_from_file_location("generate", PROFILE.parent / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert PROFILE.read_text() == generate.render(), "stale: run python3 deploy/seccomp/generate.py"
    profile = json.loads(PROFILE.read_text())
    allowed = {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" for n in rule["names"]}
    assert set(generate.BWRAP_NEEDS) <= allowed
    for refused in ("ptrace", "bpf", "keyctl", "setns", "open_by_handle_at", "io_uring_setup", "init_module"):
        assert refused not in allowed, refused


def test_headless_service_pdb_and_hpa_select_the_pods():
    labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    service = _docs(KUBE / "base" / "service.yaml")[0]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["selector"].items() <= labels.items()
    pdb = _docs(KUBE / "base" / "pdb.yaml")[0]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = _docs(KUBE / "base" / "hpa.yaml")[0]
    assert hpa["spec"]["scaleTargetRef"]["name"] == _deployment()["metadata"]["name"]
    pods_metric = next(m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods")
    assert pods_metric == f"{metrics.PREFIX}_queue_depth"


# ---------------------------------------------------------------- the image, run as the pod spec says

IMAGE = "rft-sandbox-service:latest"


def _docker():
    docker = pytest.importorskip("docker")
    try:
        engine = docker.from_env()
        engine.images.get(IMAGE)
    except Exception as exc:
        if os.environ.get("RFT_REQUIRE_DOCKER"):
            raise
        pytest.skip(f"no Docker Engine or no {IMAGE} ({exc}); run scripts/docker-up")
    return engine


def _size(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


def docker_create(deployment: dict[str, Any], env: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod's one container as Engine API create options and host config (what the kubelet would ask runc for).

    procMount: Unmasked is the CLI's `--security-opt systempaths=unconfined`: empty masked
    and read-only path lists, which the SDK has no argument for."""
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    security = []
    if context.get("seccompProfile", {}).get("type") == "Localhost":
        profile = PROFILE.parent / Path(context["seccompProfile"]["localhostProfile"]).name
        security.append(f"seccomp={profile.read_text()}")
    if context.get("allowPrivilegeEscalation") is False:
        security.append("no-new-privileges")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    tmpfs = {}
    for mount in container.get("volumeMounts", []):
        source = volumes[mount["name"]]
        assert "emptyDir" in source, "only emptyDir volumes are translated"
        tmpfs[mount["mountPath"]] = f"size={_size(source['emptyDir'].get('sizeLimit', '64Mi'))}"
    limits = container["resources"]["limits"]
    cpus = min(float(limits["cpu"]), os.cpu_count() or 1)  # the engine refuses more CPUs than the host has
    caps = context.get("capabilities", {})
    host = {
        "CapDrop": caps.get("drop", []),
        "CapAdd": caps.get("add", []),
        "ReadonlyRootfs": bool(context.get("readOnlyRootFilesystem")),
        "SecurityOpt": security,
        "Tmpfs": tmpfs,
        "Memory": _size(limits["memory"]),
        "NanoCpus": int(cpus * 1e9),
        "NetworkMode": "none",  # its own network namespace with only loopback, as a pod's (no other address)
        "Privileged": bool(context.get("privileged")),
    }
    if context.get("procMount") == "Unmasked":
        host.update(MaskedPaths=[], ReadonlyPaths=[])
    create = {
        "entrypoint": container["command"],
        "command": container["args"],
        "environment": env,
        "user": f"{context['runAsUser']}:{context.get('runAsGroup', context['runAsUser'])}",
    }
    return create, host


def test_translation_is_the_pod_spec():
    create, host = docker_create(_deployment(), {TOKEN_ENV: "x"})
    assert create["user"] == "10001:10001" and host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["ReadonlyRootfs"] and "/tmp" in host["Tmpfs"] and not host["Privileged"]
    assert {o.split("=")[0] for o in host["SecurityOpt"]} == {"seccomp", "no-new-privileges"}
    assert host["MaskedPaths"] == [] and host["ReadonlyPaths"] == []


@pytest.fixture(scope="module")
def pod_container():
    engine = _docker()
    token = secrets.token_hex(16)
    deployment = _deployment()
    create, host = docker_create(deployment, {TOKEN_ENV: token})
    created = engine.api.create_container(IMAGE, host_config=host, **create)["Id"]
    container = engine.containers.get(created)
    try:
        container.start()
        yield container, token, int(_flag(deployment["spec"]["template"]["spec"]["containers"][0]["args"], "port"))
    finally:
        container.remove(force=True)


def _in_pod_netns(container, *argv: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    container.reload()
    pid = container.attrs["State"]["Pid"]
    assert pid, f"the service container is not running: {container.logs()[-2000:]!r}"
    return subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def _serving_report(pod_container) -> dict[str, Any]:
    container, token, port = pod_container
    client = (sys.executable, "-m", "tests.kube_probe", f"127.0.0.1:{port}", "90")
    run = _in_pod_netns(container, *client, env={TOKEN_ENV: token}, timeout=240)
    assert run.returncode == 0, f"{run.stderr[-3000:]}\nservice log: {container.logs()[-3000:]!r}"
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(shutil.which("nsenter") is None or os.geteuid() != 0, reason="joining a netns needs root")
def test_service_image_as_the_pod_spec_says_scores_with_isolation_on(pod_container):
    report = _serving_report(pod_container)
    assert report["health"] == "SERVING" and report["health_without_token"] == "UNAUTHENTICATED"
    results = report["results"]
    assert results["healthy"]["status"] == "PASSED" and results["healthy"]["score"] == 1.0, results["healthy"]
    for name in ("shadow-and-service-env", "network-to-service", "token-in-any-environment"):
        assert results[name]["status"] == "PASSED" and results[name]["score"] == 1.0, f"not contained: {results[name]}"
    container = pod_container[0]
    logs = container.logs().decode("utf-8", "replace")
    assert "bwrap" in logs or "serving" in logs.lower(), logs[-2000:]


@pytest.mark.skipif(shutil.which("nsenter") is None or os.geteuid() != 0, reason="joining a netns needs root")
def test_the_pods_exec_probe_answers_as_the_kubelet_runs_it(pod_container):
    container, _, _ = pod_container
    _serving_report(pod_container)  # up and serving
    probe = _container()["readinessProbe"]["exec"]["command"]
    ok = container.exec_run(probe, user=f"{_deployment()['spec']['template']['spec']['securityContext']['runAsUser']}")
    assert ok.exit_code == 0, ok.output
    # Without the token the service refuses health too, and the probe says so.
    refused = container.exec_run(["env", f"{TOKEN_ENV}=wrong", *probe])
    assert refused.exit_code == 1 and b"UNAUTHENTICATED" in refused.output, refused.output


def test_service_is_up_in_time_on_started_container(pod_container):
    container, _, _ = pod_container
    deadline = time.monotonic() + 60
    while container.status != "running" and time.monotonic() < deadline:
        time.sleep(0.5)
        container.reload()
    assert container.status == "running", container.logs()[-2000:]
