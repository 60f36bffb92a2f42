"""`python -m trainer_plugin`: the trainer side's commands, talking to a running service.

  score          score a JSONL file of tasks on a running service (HOST:PORT)
  reward-server  OpenRLHF's HTTP reward endpoint (POST /get_reward), scoring on the service

They need only the plugin and the wire (`sandbox.api`), never the service's code: scoring a
file on an embedded service is the service's own `rft-sandbox score`.
"""

from __future__ import annotations

import argparse
import os
import sys

from sandbox.api import progress, taskfile
from trainer_plugin.client import ClientOptions, SandboxClient

TOKEN_ENV = "RFT_SANDBOX_TOKEN"  # noqa: S105 - the variable's name, not a secret


def _token(args: argparse.Namespace) -> str | None:
    return args.token or os.environ.get(TOKEN_ENV) or None


def cmd_score(args: argparse.Namespace) -> int:
    """Lines are checked as far as the client can (proto JSON, unique ids); the rest is the
    service's validation, whose refusal names the file and line."""
    try:
        numbered = taskfile.read_tasks(args.tasks)
        out = taskfile.results_path(args.tasks, args.out)
        client = SandboxClient(ClientOptions(args.server, token=_token(args)))
        try:
            with progress.Scoring(len(numbered), progress.stderr_console(args.progress)) as scoring:
                results = taskfile.score_file(
                    numbered,
                    args.tasks,
                    out,
                    client.score_batch,
                    target=args.server,
                    batch_size=args.batch_size,
                    on_result=scoring.advance,
                )
        finally:
            client.close()
    except taskfile.TaskFileError as exc:
        raise SystemExit(str(exc)) from None
    progress.report(results, scoring, str(out), as_json=args.json)
    return 0


def cmd_reward_server(args: argparse.Namespace) -> int:
    from trainer_plugin.openrlhf import make_reward_server
    from trainer_plugin.rewards import RewardCore
    from trainer_plugin.tasks import TaskSpec

    options = ClientOptions(targets=args.server, token=_token(args), timeout=args.deadline)
    server = make_reward_server(RewardCore(TaskSpec(args.language), options), args.host, args.port)
    print(f"reward server on http://{args.host}:{server.server_port}/get_reward", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer_plugin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    score = commands.add_parser("score", help="score a JSONL file of tasks on a running service")
    score.add_argument("tasks", help="JSONL, one rft_sandbox.v1.Task per line (proto JSON)")
    score.add_argument("--server", required=True, metavar="HOST:PORT", help="the running service")
    score.add_argument("--token", default=None, help=f"the service's bearer token (or ${TOKEN_ENV})")
    score.add_argument("--out", default=None, help="results JSONL (default: TASKS.results.jsonl)")
    score.add_argument("--batch-size", type=int, default=512)
    progress.add_options(score)
    score.set_defaults(func=cmd_score)

    reward = commands.add_parser("reward-server", help="HTTP reward endpoint for OpenRLHF (POST /get_reward)")
    reward.add_argument("--server", default="127.0.0.1:50051", help="sandbox service(s): HOST:PORT[,HOST:PORT...]")
    reward.add_argument("--token", default=None, help=f"the service's bearer token (or ${TOKEN_ENV})")
    reward.add_argument("--language", default="python", choices=("python", "sql", "triton"))
    reward.add_argument("--host", default="127.0.0.1")
    reward.add_argument("--port", type=int, default=5000)
    reward.add_argument(
        "--deadline", type=float, default=150.0, help="seconds per request (OpenRLHF gives up after 180)"
    )
    reward.set_defaults(func=cmd_reward_server)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
