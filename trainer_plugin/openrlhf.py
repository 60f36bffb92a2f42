"""OpenRLHF: a reward function file, and the HTTP reward endpoint.

File:      --reward.remote_url <site-packages>/trainer_plugin/openrlhf.py
           (OpenRLHF imports it and calls `reward_func(queries, prompts, labels)`, per sample)
Endpoint:  python -m trainer_plugin reward-server --port 5000 --server 127.0.0.1:50051
           --reward.remote_url http://127.0.0.1:5000/get_reward

`queries` are prompt + response decoded with special tokens (the response is
`query[len(prompt):]`, less the end-of-sequence and other special tokens); each `label` is
the dataset's label column: a JSON object whose keys are the task's columns (tests, entry
point, db_id, reference...), or a plain string (then the `label` column). The answer is
`{"rewards", "scores", "extra_logs"}`; an infrastructure failure scores 0 (OpenRLHF cannot
drop a sample) and shows in `extra_logs["sandbox_error"]`. Configuration comes from the
environment (RFT_SANDBOX_TARGETS, RFT_SANDBOX_TOKEN, RFT_SANDBOX_LANGUAGE; RFT_SANDBOX_RUN and
RFT_SANDBOX_CALLER for the service's audit trail). OpenRLHF passes no training step, neither to
`reward_func` nor in the endpoint's body (query, prompts, labels), so audit records carry none.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from trainer_plugin.rewards import BatchSummary, RewardCore, reward_value, trainer_caller

log = logging.getLogger(__name__)
_MAX_BODY = 256 << 20
_core: RewardCore | None = None


_SPECIAL = re.compile(r"(?:<\|[A-Za-z0-9_]+\|>|</s>|<eos>|<pad>)+\s*$")


def response_of(query: str, prompt: str) -> str:
    """The response in an OpenRLHF query: after the prompt, trailing special tokens dropped."""
    response = query[len(prompt) :] if query.startswith(prompt) else query
    return _SPECIAL.sub("", response)


def _row(label: Any) -> dict[str, Any]:
    if isinstance(label, str):
        try:
            parsed = json.loads(label)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    return dict(label) if isinstance(label, Mapping) else {"label": label}


def score_queries(
    core: RewardCore, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any]
) -> dict[str, Any]:
    """Plain lists: the HTTP endpoint's answer, and the file function's before tensors."""
    if not (len(queries) == len(prompts) == len(labels)):
        raise ValueError(
            f"queries, prompts and labels differ in length ({len(queries)}, {len(prompts)}, {len(labels)})"
        )
    responses = [response_of(q, p) for q, p in zip(queries, prompts, strict=True)]
    results = core.score(responses, [_row(label) for label in labels])
    rewards = [reward_value(r) for r in results]
    values = [0.0 if value is None else value for value in rewards]
    summary = BatchSummary.of(results)
    extra_logs = {**{f"sandbox/{k}": v for k, v in summary.means.items()}, **summary.rates}
    return {"rewards": values, "scores": values, "extra_logs": extra_logs}


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any]) -> dict[str, Any]:
    import torch

    global _core
    if _core is None:
        _core = RewardCore(caller=trainer_caller("openrlhf"))
    answer = score_queries(_core, queries, prompts, labels)
    return {
        "rewards": torch.tensor(answer["rewards"], dtype=torch.float32),
        "scores": torch.tensor(answer["scores"], dtype=torch.float32),
        "extra_logs": {k: torch.tensor(v) for k, v in answer["extra_logs"].items()},
    }


class _Handler(BaseHTTPRequestHandler):
    core: RewardCore

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/get_reward":
            self._reply(404, {"error": f"no such endpoint {self.path!r}: POST /get_reward"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 < length <= _MAX_BODY:
                raise ValueError(f"a JSON body of 1 to {_MAX_BODY} bytes is needed")
            body = json.loads(self.rfile.read(length))
            queries, prompts, labels = body["query"], body.get("prompts"), body.get("labels")
            prompts = prompts if prompts is not None else [""] * len(queries)
            labels = labels if labels is not None else [None] * len(queries)
            answer = score_queries(self.core, queries, prompts, labels)
        except (ValueError, KeyError, TypeError) as exc:
            self._reply(400, {"error": f"bad request: {exc}"})
            return
        self._reply(200, answer)

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("reward-server: " + format, *args)


def make_reward_server(core: RewardCore, host: str = "127.0.0.1", port: int = 5000) -> ThreadingHTTPServer:
    """An HTTP server answering OpenRLHF's `POST /get_reward`; serve it with serve_forever()."""
    if core.caller is None:  # the audit trail's caller, unless the options name one
        core = dataclasses.replace(core, caller=trainer_caller("openrlhf"))
    handler = type("Handler", (_Handler,), {"core": core})
    return ThreadingHTTPServer((host, port), handler)
