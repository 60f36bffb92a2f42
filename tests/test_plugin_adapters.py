"""verl and OpenRLHF adapters, called exactly as those trainers call them, against a real service.

verl: `compute_score(data_source, solution_str, ground_truth, extra_info=None, **reward_kwargs)`
per sample (and its async and batch forms): always a dict with the same keys.
OpenRLHF: `reward_func(queries, prompts, labels)` from a reward file, and the HTTP endpoint
(`POST /get_reward` with {"query", "prompts", "labels"}).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.embedded import EmbeddedServer
from tests.conftest import start_server
from tests.helpers import free_port
from trainer_plugin import openrlhf, verl
from trainer_plugin.client import ClientOptions
from trainer_plugin.rewards import RewardCore
from trainer_plugin.tasks import TaskSpec

ROOT = Path(__file__).resolve().parents[1]
TESTS = {"test": "assert add(1, 2) == 3\nassert add(2, 2) == 4", "entry_point": "add"}
GOOD = "```python\ndef add(a, b):\n    return a + b\n```"
BAD = "```python\ndef add(a, b):\n    return a - b\n```"


@pytest.fixture(scope="module")
def service() -> Iterator[EmbeddedServer]:
    server = start_server("bwrap")
    yield server
    server.stop()


def test_verl_compute_score_always_has_the_same_keys(service: EmbeddedServer) -> None:
    kwargs = {"targets": service.target, "language": "python"}
    good = verl.compute_score("humaneval", GOOD, json.dumps(TESTS), {"index": 0}, **kwargs)
    bad = verl.compute_score("humaneval", BAD, json.dumps(TESTS), {"index": 1}, **kwargs)
    down = verl.compute_score("humaneval", GOOD, json.dumps(TESTS), None, targets=f"127.0.0.1:{free_port()}", timeout=3)
    assert good["score"] == 1.0 and good["infra_error"] == 0 and good["passed"] == 1
    assert bad["score"] == 0.0 and bad["infra_error"] == 0
    assert down["score"] == 0.0 and down["infra_error"] == 1  # flagged, so it can be filtered
    assert good.keys() == bad.keys() == down.keys()
    assert all(isinstance(v, float) for v in good.values())


def test_verl_ground_truth_as_extra_info_columns(service: EmbeddedServer) -> None:
    # keyword-only, with the reward kwargs merged in, as verl 0.9's reward loop calls it
    reward_kwargs = {"targets": service.target}
    result = verl.compute_score(
        data_source="mbpp",
        solution_str=GOOD,
        ground_truth="unused",
        extra_info={**TESTS, "index": 3, "num_turns": 2},
        **reward_kwargs,
    )
    assert result["score"] == 1.0


def test_verl_async_and_batch_forms(service: EmbeddedServer) -> None:
    async def many() -> list[dict[str, float]]:
        calls = [
            verl.compute_score_async("humaneval", code, json.dumps(TESTS), {"index": n}, targets=service.target)
            for n, code in enumerate([GOOD, BAD, GOOD, BAD])
        ]
        return await asyncio.gather(*calls)

    assert [r["score"] for r in asyncio.run(many())] == [1.0, 0.0, 1.0, 0.0]
    batch = verl.compute_score_batch(
        ["humaneval"] * 2, [GOOD, BAD], [json.dumps(TESTS)] * 2, [None, None], targets=service.target
    )
    assert [r["score"] for r in batch] == [1.0, 0.0]


def test_openrlhf_reward_func(service: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFT_SANDBOX_TARGETS", service.target)
    monkeypatch.setattr(openrlhf, "_core", None)
    prompts = ["Write add.\n", "Write add.\n"]
    answer = openrlhf.reward_func(
        [p + c for p, c in zip(prompts, [GOOD, BAD], strict=True)], prompts, [json.dumps(TESTS)] * 2
    )
    assert answer["rewards"].tolist() == [1.0, 0.0]
    assert answer["scores"].tolist() == [1.0, 0.0]
    assert float(answer["extra_logs"]["passed"]) == 0.5
    # as OpenRLHF 0.11 calls it: one sample at a time, the query decoded with special tokens
    raw = "def add(a, b):\n    return a + b\n"
    single = openrlhf.reward_func(
        ["<|im_start|>user\nadd<|im_end|>\n" + raw + "<|im_end|><|endoftext|>"],
        ["<|im_start|>user\nadd<|im_end|>\n"],
        [json.dumps(TESTS)],
    )
    assert single["rewards"].shape == (1,) and single["rewards"].tolist() == [1.0]


def post(url: str, payload: object) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_openrlhf_http_endpoint(service: EmbeddedServer) -> None:
    core = RewardCore(TaskSpec("python"), ClientOptions(targets=(service.target,)))
    server = openrlhf.make_reward_server(core, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/get_reward"
    try:
        prompts = ["Q: add?\n"] * 3
        queries = [p + c for p, c in zip(prompts, [GOOD, BAD, GOOD], strict=True)]
        status, answer = post(url, {"query": queries, "prompts": prompts, "labels": [json.dumps(TESTS)] * 3})
        assert status == 200
        assert answer["rewards"] == [1.0, 0.0, 1.0] and answer["scores"] == answer["rewards"]
        assert answer["extra_logs"]["sandbox_error"] == 0
        assert post(url, {"prompts": []})[0] == 400  # no "query"
        assert post(url, {"query": ["a"], "prompts": ["a", "b"], "labels": [None]})[0] == 400
        assert post(url.replace("get_reward", "nope"), {})[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_reward_server_command_answers(service: EmbeddedServer) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer_plugin", "reward-server", "--server", service.target, "--port", str(port)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, answer = post(
                    f"http://127.0.0.1:{port}/get_reward",
                    {"query": ["p" + GOOD], "prompts": ["p"], "labels": [json.dumps(TESTS)]},
                )
                break
            except (ConnectionError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert status == 200 and answer["rewards"] == [1.0]
    finally:
        process.terminate()
        process.wait(10)
