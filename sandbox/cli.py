"""`rft-sandbox`: serve the API, score a JSONL file of tasks on an embedded service, query the audit log.

The trainer side's commands (scoring a file on a running service, the OpenRLHF reward
endpoint) are the plugin's: `python -m trainer_plugin --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

from sandbox import logs
from sandbox.api import CLIENT_CHANNEL_ARGS, Stub, pb, progress, taskfile
from sandbox.config import ServiceConfig

TOKEN_ENV = "RFT_SANDBOX_TOKEN"  # noqa: S105 - the variable's name, not a secret
PROFILE_ENV = "RFT_SANDBOX_PROFILE"  # set: `serve` runs under cProfile, stats to $RFT_SANDBOX_PROFILE.<pid>
_BATCH_DEADLINE_S = 600.0  # one ScoreBatch call of `score`


def _make_backend(args: argparse.Namespace) -> Any:
    from sandbox.backends.base import BackendUnavailable
    from sandbox.backends.select import make_backend

    try:
        backend = make_backend(args.backend, image=args.docker_image, runtime=args.docker_runtime)
    except BackendUnavailable as exc:
        raise SystemExit(f"backend {args.backend}: {exc}") from None
    if args.slot_offset and hasattr(backend, "instance"):  # one of `serve --processes`' processes:
        backend.instance = f"{backend.instance}-{args.slot_offset}"  # its cleanup must spare its siblings'
    if args.triton_device == "cuda" and backend.name != "docker":
        raise SystemExit("--triton-device cuda needs the docker backend (it passes the GPUs through)")
    return backend


def _config(args: argparse.Namespace, **overrides: Any) -> ServiceConfig:
    values = {
        "host": args.host,
        "port": args.port,
        "token": args.token or os.environ.get(TOKEN_ENV) or None,
        "audit_log": args.audit_log,
        "audit_results": args.audit_results,
        "audit_code": args.audit_code,
        "audit_code_bytes": args.audit_code_bytes,
        "audit_rotate_bytes": args.audit_rotate_bytes,
        "audit_rotate_seconds": args.audit_rotate_seconds,
        "audit_fsync": args.audit_fsync,
        "job_uid_base": ServiceConfig.job_uid_base + args.slot_offset,
    }
    if args.workers:
        values["workers"] = args.workers
    if args.tokens_file:
        from sandbox.config import read_tokens

        try:
            values["tokens"] = read_tokens(args.tokens_file)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--tokens-file: {exc}") from None
    if args.queue_limit < 1 or args.caller_queue_limit < 0:
        raise SystemExit("--queue-limit must be >= 1 and --caller-queue-limit >= 0")
    values["queue_limit"], values["caller_queue_limit"] = args.queue_limit, args.caller_queue_limit
    values["triton_device"] = args.triton_device
    if args.audit_code_bytes < 0 or args.audit_rotate_bytes < 0 or args.audit_rotate_seconds < 0:
        raise SystemExit("--audit-code-bytes, --audit-rotate-bytes and --audit-rotate-seconds must be >= 0")
    if args.drain_seconds < 0:
        raise SystemExit("--drain-seconds must be >= 0")
    values["drain_seconds"] = args.drain_seconds
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("--tls-cert and --tls-key go together")
    values["tls_cert"], values["tls_key"] = args.tls_cert, args.tls_key
    if args.triton_workers:
        values["triton_workers"] = args.triton_workers
    values.update(overrides)
    return ServiceConfig(**values)


def _languages(args: argparse.Namespace) -> Any:
    """The standard languages, SQL with the databases registered on the command line."""
    from sandbox.languages import standard_languages_with

    cache = Path(args.variants_cache).expanduser() if args.variants_cache else None
    try:
        return standard_languages_with(args.database, cache)
    except ValueError as exc:
        raise SystemExit(f"--database: {exc}") from None


async def _serve(config: ServiceConfig, args: argparse.Namespace) -> None:
    from sandbox.server import SandboxServer

    server = SandboxServer(config, _make_backend(args), _languages(args))
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.drain(config.drain_seconds)


def cmd_serve(args: argparse.Namespace) -> int:
    logs.configure(args.log_level)
    if args.metrics_port < 0:
        raise SystemExit("--metrics-port must be >= 0 (0: no metrics)")
    if args.max_connection_age < 0:
        raise SystemExit("--max-connection-age must be >= 0 (0: connections never age)")
    # a bad flag fails here, once (before `--processes` starts any process)
    config = _config(args, metrics_port=args.metrics_port or None, max_connection_age=args.max_connection_age)
    if args.processes != 1:
        return _supervise(args, config)
    profile = os.environ.get(PROFILE_ENV)
    if profile:  # where a service process's own CPU goes (bench/service_cpu.py --profile)
        import cProfile

        with cProfile.Profile() as profiler:
            asyncio.run(_serve(config, args))
        profiler.dump_stats(f"{profile}.{os.getpid()}")
        return 0
    asyncio.run(_serve(config, args))
    return 0


def _supervise(args: argparse.Namespace, config: ServiceConfig) -> int:
    from sandbox.multiproc import supervise

    if args.processes < 1:
        raise SystemExit("--processes must be >= 1")
    if config.triton_device == "cuda":
        raise SystemExit("--processes > 1 with --triton-device cuda: every process would claim every GPU")
    try:
        return supervise(args.argv, config.host, config.port, config.workers, args.processes, args.metrics_port)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def _validated(config: ServiceConfig) -> Callable[[pb.Task], None]:
    """The server's own validation of a task (default limits), so a bad line is named by file and line."""
    from sandbox.intake import prepare
    from sandbox.languages import standard_languages

    languages = {language.enum: language for language in standard_languages()}

    def check(task: pb.Task) -> None:
        if task.language != pb.SQL:  # SQL tasks name databases only the server knows
            prepare(task, config, languages)

    return check


@contextlib.contextmanager
def _embedded_server(args: argparse.Namespace) -> Iterator[str]:
    from sandbox.embedded import EmbeddedServer

    config = _config(args, host="127.0.0.1", port=0, token=None, tokens=(), tls_cert=None, tls_key=None)
    with EmbeddedServer(config, _make_backend(args), _languages(args)) as server:
        yield server.target


def cmd_score(args: argparse.Namespace) -> int:
    try:
        numbered = taskfile.read_tasks(args.tasks, _validated(ServiceConfig()))
        out = taskfile.results_path(args.tasks, args.out)
        with (
            _embedded_server(args) as target,
            grpc.insecure_channel(target, options=CLIENT_CHANNEL_ARGS) as channel,
            progress.Scoring(len(numbered), progress.stderr_console(args.progress)) as scoring,
        ):
            stub = Stub(channel)
            results = taskfile.score_file(
                numbered,
                args.tasks,
                out,
                lambda tasks: stub.ScoreBatch(pb.ScoreBatchRequest(tasks=tasks), timeout=_BATCH_DEADLINE_S),
                target=target,
                batch_size=args.batch_size,
                on_result=scoring.advance,
            )
    except taskfile.TaskFileError as exc:
        raise SystemExit(str(exc)) from None
    progress.report(results, scoring, str(out), as_json=args.json)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from sandbox.audit import query

    if not Path(args.log).exists():
        raise SystemExit(f"no audit log at {args.log}")
    for entry in query(args.log, code=args.code, severity=args.severity, task_id=args.task, since=args.since):
        print(json.dumps(entry, ensure_ascii=False))
    return 0


def cmd_audit_query(args: argparse.Namespace) -> int:
    """`audit summary|trend|show|sql|replay`: DuckDB over the log (sandbox.audit_query)."""
    if args.audit_command is None:
        return cmd_audit(args)
    from rich.console import Console

    from sandbox import audit_query

    console = Console(soft_wrap=False)
    filters = audit_query.Filters(run=getattr(args, "run", None), since=args.since)
    try:
        with audit_query.AuditStore(args.log, filters) as store:
            return _AUDIT_COMMANDS[args.audit_command](args, store, console)
    except audit_query.AuditQueryError as exc:
        raise SystemExit(f"audit {args.audit_command}: {exc}") from None


def _audit_summary(args: argparse.Namespace, store: Any, console: Any) -> int:
    from sandbox import audit_query, audit_report

    data = audit_query.summary(store, top=args.top)
    print(audit_report.dumps(data)) if args.json else audit_report.print_summary(console, data)
    return 0


def _audit_trend(args: argparse.Namespace, store: Any, console: Any) -> int:
    from sandbox import audit_query, audit_report

    data = audit_query.trend(store)
    if args.png or args.html:
        audit_report.write_report(data, args.png, args.html)
    if args.json:
        print(audit_report.dumps({**data, "note": None if data["complete"] else audit_query.INCOMPLETE_NOTE}))
    else:
        audit_report.print_trend(console, data)
    return 0


def _audit_show(args: argparse.Namespace, store: Any, console: Any) -> int:
    from sandbox import audit_query, audit_report

    record = audit_query.attempt(store, args.id)
    if record is None:
        raise SystemExit(f"audit show: no attempt {args.id} in {args.log}")
    print(audit_report.dumps(audit_report.attempt_json(record))) if args.json else audit_report.print_attempt(
        console, record
    )
    return 0


def _audit_sql(args: argparse.Namespace, store: Any, console: Any) -> int:
    from sandbox import audit_report

    columns, rows = store.user_query(args.query)
    if args.json:
        print(audit_report.dumps([dict(zip(columns, row, strict=True)) for row in rows]))
    else:
        audit_report.print_rows(console, columns, rows)
    return 0


def _audit_replay(args: argparse.Namespace, store: Any, console: Any) -> int:
    from sandbox import audit_report
    from sandbox.audit_replay import candidates, replay
    from sandbox.embedded import EmbeddedServer

    records = candidates(store, args.code, args.limit)
    # the replay's own scoring is not audited: it would append to the log it reads
    config = _config(args, host="127.0.0.1", port=0, audit_log=None, token=None, tokens=(), tls_cert=None, tls_key=None)
    with (
        EmbeddedServer(config, _make_backend(args), _languages(args)) as server,
        grpc.insecure_channel(server.target, options=CLIENT_CHANNEL_ARGS) as channel,
    ):
        stub = Stub(channel)
        outcome = replay(
            records,
            lambda tasks: list(stub.ScoreBatch(pb.ScoreBatchRequest(tasks=tasks), timeout=_BATCH_DEADLINE_S)),
        )
    if args.json:
        print(audit_report.dumps(outcome.as_dict()))
        return 0
    console.print(
        f"replayed {outcome.replayed} attempts, {len(outcome.changed)} verdicts would change; "
        f"{outcome.not_replayable} not replayable (stored without code or task, or code truncated)"
    )

    def arrow(change: dict[str, Any], key: str) -> str:
        before, after = change["before"][key], change["after"][key]
        shown = (", ".join(before) or "-", ", ".join(after) or "-") if key == "findings" else (before, after)
        return f"{shown[0]} -> {shown[1]}" if before != after else str(shown[0])

    rows = ((c["id"], c["task_id"], *(arrow(c, k) for k in ("status", "score", "findings"))) for c in outcome.changed)
    console.print(audit_report.table("changed verdicts", ("id", "task", "status", "score", "findings"), rows))
    return 0


_AUDIT_COMMANDS: dict[str, Callable[[argparse.Namespace, Any, Any], int]] = {
    "summary": _audit_summary,
    "trend": _audit_trend,
    "show": _audit_show,
    "sql": _audit_sql,
    "replay": _audit_replay,
}


def cmd_ray(args: argparse.Namespace) -> int:
    """The fleet on a Ray cluster: the work is `sandbox.fleet.commands`'."""
    from sandbox.fleet import commands
    from sandbox.fleet.spec import ReplicaSpec

    commands.connect(args.address)
    if args.action == "up":
        spec = ReplicaSpec(
            _config(args, metrics_port=0 if args.metrics else None),
            args.backend,
            args.docker_image,
            args.docker_runtime,
            tuple(args.database),
            args.variants_cache,
            args.cpus_per_replica,
            args.workers,
        )
        print(commands.render(commands.up(args.name, spec, args.replicas, args.wait)))
    elif args.action == "down":
        print(commands.dumps(commands.down(args.name, args.drain_seconds)))
    else:
        state = commands.status(args.name)
        print(commands.dumps(state) if args.json else commands.render(state))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rft-sandbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def service_options(p: argparse.ArgumentParser, listen: bool = True) -> None:
        p.add_argument(
            "--backend",
            default="auto",
            choices=("auto", "docker", "bwrap"),
            help="isolation: docker (hardened containers), bwrap (Linux namespaces), or auto "
            "(default: docker when an engine answers and the image exists, else bwrap)",
        )
        p.add_argument("--docker-image", default=None, help="sandbox image (default rft-sandbox:latest)")
        p.add_argument("--docker-runtime", default=None, help="container runtime, e.g. runsc for gVisor")
        p.add_argument("--workers", type=int, default=0, help="warm sandboxes (default: CPU count)")
        p.add_argument(
            "--triton-device",
            default="cpu",
            choices=("cpu", "cuda"),
            help="where Triton kernels run: cpu (interpreter, correctness only; default) or cuda "
            "(GPUs passed through to docker sandboxes; speed scored)",
        )
        p.add_argument(
            "--triton-workers", type=int, default=0, help="warm Triton sandboxes (default 1; with cuda: one per GPU)"
        )
        p.add_argument(
            "--token",
            default=None,
            help=f"bearer token (or ${TOKEN_ENV}) shared by all callers; they are told apart by connection",
        )
        p.add_argument(
            "--tokens-file",
            default=None,
            metavar="PATH",
            help="named bearer tokens, one NAME=SECRET a line: each name is one caller for fair "
            "scheduling and queue shares (teams sharing a service); works alongside --token",
        )
        p.add_argument(
            "--queue-limit",
            type=int,
            default=ServiceConfig.queue_limit,
            help="queued jobs; past it only callers under their fair share (limit / callers with "
            "queued jobs) are admitted, others get RESOURCE_EXHAUSTED (default %(default)s)",
        )
        p.add_argument(
            "--caller-queue-limit",
            type=int,
            default=0,
            help="queued jobs of any one caller, whatever the queue holds (default: --queue-limit)",
        )
        p.add_argument("--tls-cert", default=None, help="PEM certificate (chain): serve TLS (with --tls-key)")
        p.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
        p.add_argument(
            "--audit-log",
            default="rft-sandbox-audit.jsonl",
            help="JSONL file of audited attempts (docs/audit-write.md); rotated files sit next to it",
        )
        p.add_argument(
            "--audit-results",
            action="store_true",
            help="log every attempt with its result (status, score, components), not only those with a "
            "finding: cheat rates get their denominator",
        )
        p.add_argument(
            "--audit-code",
            default=ServiceConfig.audit_code,
            choices=("none", "findings", "all"),
            help="whose code (and task) the log keeps, compressed: none, findings (attempts with a "
            "finding) or all written attempts (default %(default)s)",
        )
        p.add_argument(
            "--audit-code-bytes",
            type=int,
            default=ServiceConfig.audit_code_bytes,
            metavar="N",
            help="code kept per attempt, at most (default %(default)s)",
        )
        p.add_argument(
            "--audit-rotate-bytes",
            type=int,
            default=0,
            metavar="N",
            help="rotate the log before it passes N bytes, to STEM.YYYYMMDDTHHMMSSZ.jsonl (default 0: never)",
        )
        p.add_argument(
            "--audit-rotate-seconds",
            type=float,
            default=0.0,
            metavar="S",
            help="rotate the log when its first line is S seconds old (default 0: never)",
        )
        p.add_argument(
            "--audit-fsync",
            default=ServiceConfig.audit_fsync,
            choices=("none", "interval", "always"),
            help="fsync the log: none, interval (about once a second) or always (every line; slowest) "
            "(default %(default)s)",
        )
        p.add_argument(
            "--database",
            action="append",
            default=[],
            metavar="NAME=PATH",
            help="register a database: a .sqlite/.duckdb file (automatic variants are built for it; "
            "PATH?variants=none for none, ?count=8&seed=0&keep=4&max_mb=128&budget_s=120 to tune them), "
            "a directory (base + variants), or a postgresql:// DSN (?schemas=base,variant1)",
        )
        p.add_argument(
            "--variants-cache",
            default=None,
            metavar="DIR",
            help="where automatic database variants are cached "
            "(default: $RFT_SANDBOX_CACHE or ~/.cache/rft-sandbox, then sql-variants/)",
        )
        p.add_argument(
            "--drain-seconds",
            type=float,
            default=ServiceConfig.drain_seconds,
            help="on SIGTERM/SIGINT: refuse new calls (UNAVAILABLE, health NOT_SERVING), let accepted tasks "
            "finish for this long, answer any still running SANDBOX_ERROR, then exit (default %(default)s)",
        )
        # set by `serve --processes` for each process: the node's slots before its own
        p.add_argument("--slot-offset", type=int, default=0, help=argparse.SUPPRESS)
        if listen:  # a Ray replica listens on its node's IP, on a free port
            p.add_argument("--host", default="127.0.0.1")
            p.add_argument("--port", type=int, default=50051)

    serve = commands.add_parser("serve", help="run the gRPC service")
    service_options(serve)
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="N",
        help="serve Prometheus metrics on --host:N at /metrics (default 0: no metrics); "
        "with --processes, process i on N+i",
    )
    serve.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="service processes sharing --port (SO_REUSEPORT), to use more than one core; --workers "
        "is split among them, --queue-limit is per process; see docs/deployment-cores.md (default 1)",
    )
    serve.add_argument(
        "--max-connection-age",
        type=float,
        default=ServiceConfig.max_connection_age,
        metavar="SECONDS",
        help="ask each client to reconnect after this long, so clients of a dns:/// target (a headless "
        "Service) re-resolve it and find new replicas; calls in flight finish (default %(default)s; 0: never)",
    )
    serve.set_defaults(func=cmd_serve)

    score = commands.add_parser(
        "score",
        help="score a JSONL file of tasks on an embedded service (a running one: python -m trainer_plugin score)",
    )
    score.add_argument("tasks", help="JSONL, one rft_sandbox.v1.Task per line (proto JSON)")
    score.add_argument("--out", default=None, help="results JSONL (default: TASKS.results.jsonl)")
    score.add_argument("--batch-size", type=int, default=512)
    progress.add_options(score)
    service_options(score)
    score.set_defaults(func=cmd_score)

    fleet = commands.add_parser("ray", help="deploy the service onto a Ray cluster: up, down, status")
    fleet.add_argument("action", choices=("up", "down", "status"))
    fleet.add_argument("--address", default="auto", help="the Ray cluster (default %(default)s)")
    fleet.add_argument("--name", default="rft-sandbox", help="the fleet; clients use ray://NAME (default %(default)s)")
    fleet.add_argument("--replicas", type=int, default=0, help="up: how many (default: one per node with CPUs)")
    fleet.add_argument(
        "--cpus-per-replica",
        type=int,
        default=0,
        metavar="K",
        help="up: one replica per K CPUs, each reserving them in Ray (default 0: one per node, "
        "reserving none, its workers the node's CPUs)",
    )
    fleet.add_argument("--wait", type=float, default=300.0, help="up: seconds to wait for the replicas to serve")
    fleet.add_argument("--json", action="store_true", help="status: as JSON")
    fleet.add_argument(
        "--metrics", action="store_true", help="up: each replica serves Prometheus metrics on a free port (in status)"
    )
    service_options(fleet, listen=False)
    fleet.set_defaults(func=cmd_ray, host="127.0.0.1", port=0)

    audit = commands.add_parser("audit", help="query the audit log")
    audit.add_argument("--log", default="rft-sandbox-audit.jsonl")
    audit.add_argument("--code", help="finding code, e.g. always_equal_object")
    audit.add_argument("--severity", help="minimum severity: INFO, WARNING or CRITICAL")
    audit.add_argument("--task", help="task id")
    audit.add_argument("--since", help="ISO time, e.g. 2026-11-25T00:00")
    audit.set_defaults(func=cmd_audit_query)
    queries = audit.add_subparsers(dest="audit_command", metavar="{summary,trend,show,sql,replay}")

    def query_options(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
        # SUPPRESS: `audit --log X summary` keeps X (a subparser's default would replace it)
        p.add_argument(
            "--log",
            default=argparse.SUPPRESS,
            help="the current log; rotated STEM.*SUFFIX files beside it are read too",
        )
        p.add_argument("--run", default=argparse.SUPPRESS, help="only this run (rft-run metadata)")
        p.add_argument("--since", default=argparse.SUPPRESS, help="only from this UTC time on, e.g. 2026-12-01T18:00")
        if json_flag:
            p.add_argument("--json", action="store_true", help="JSON for scripts instead of tables")

    summary = queries.add_parser("summary", help="counts by finding, severity, language, caller, run; top tasks")
    query_options(summary)
    summary.add_argument("--top", type=int, default=10, help="how many offending tasks (default %(default)s)")
    trend = queries.add_parser("trend", help="cheat rate per training step per finding code")
    query_options(trend)
    trend.add_argument("--by", choices=("step",), default="step")
    trend.add_argument("--png", metavar="FILE", help="write the plot as PNG")
    trend.add_argument("--html", metavar="FILE", help="write a self-contained HTML report (plot inlined, table)")
    show = queries.add_parser("show", help="one attempt in full: code with the evidence marked, result, tests")
    query_options(show)
    show.add_argument("id", help="the attempt's id (16 hex characters)")
    sql = queries.add_parser("sql", help="a read-only SELECT over the views attempts, findings, events")
    query_options(sql)
    sql.add_argument("query", help='e.g. "SELECT code, count(*) FROM findings GROUP BY code"')
    replay = queries.add_parser("replay", help="re-score stored attempts with the current detectors: what changes")
    query_options(replay)
    replay.add_argument("--code", default=None, help="only attempts with this finding")
    replay.add_argument("--limit", type=int, default=None, help="at most this many attempts (oldest first)")
    service_options(replay, listen=False)
    replay.set_defaults(host="127.0.0.1", port=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what `serve --processes` passes on
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
