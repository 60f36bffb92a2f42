"""The verl and OpenRLHF adapters driven by those trainers' own code, against a real service.

verl 0.9.1: both PPO trainers (v0 `ray_trainer` and v1 `trainer_base`) score rule-based
rewards through `RewardLoopManager`, whose Ray actors are `RewardLoopWorker`s; each worker
builds its reward manager with `load_reward_manager(config, tokenizer)` from the config's
`reward.custom_reward_function` (path, name, reward_kwargs) and awaits `run_single` per
sample; the manager (or the agent loop) then puts each score at the sample's last valid
response token (`assemble_rm_scores`). One test runs that manager itself, its workers as Ray
actors on a one-node cluster in a private network namespace; the others run the worker class
in this process (Ray only wraps it in an actor). All use a config composed by Hydra from
verl's own `ppo_trainer.yaml`, a tokenizer trained locally and a `DataProto` laid out as
verl's rollout lays it out.
The legacy `BatchRewardManager` (no longer built by `load_reward_manager` in 0.9.1) runs
`compute_score_batch` through verl's own loader.

OpenRLHF 0.11: `SingleTurnAgentExecutor` (openrlhf/utils/agent.py, which imports without
CUDA) loads `--reward.remote_url` as a reward file or posts to it as an HTTP endpoint. Its
vLLM engine is the one part replaced: a replay engine returns a fixed completion's token
ids in vLLM's output shape, so the executor's own decoding and reward call run unchanged.

Where the service is reached is the `target` fixture alone (a `HOST:PORT` of an embedded
server today; a `ray://NAME` fleet is another value of it), and `start_server` in
`ray_reward_loop_case` for the Ray test (where a fleet would be brought up instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox.api import pb
from sandbox.embedded import EmbeddedServer
from tests.conftest import start_server
from tests.helpers import free_port
from trainer_plugin import openrlhf as openrlhf_adapter
from trainer_plugin.client import ClientOptions
from trainer_plugin.rewards import RewardCore, SandboxUnavailableError
from trainer_plugin.tasks import TaskBuildError, TaskSpec
from trainer_plugin.tiny_model import build_tiny_model_dir, load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
VERL_ADAPTER = ROOT / "trainer_plugin" / "verl.py"
OPENRLHF_ADAPTER = ROOT / "trainer_plugin" / "openrlhf.py"
REQUIRED = os.environ.get("RFT_REQUIRE_TRL") == "1"  # CI installs the trainers: missing is a failure


def need(module: str) -> Any:
    if REQUIRED:
        return __import__(module, fromlist=["_"])
    return pytest.importorskip(module, reason=f"{module} is not installed (scripts/setup dev installs it)")


ADD = "assert add(1, 2) == 3\nassert add(-1, 1) == 0"
EVEN = "assert is_even(4)\nassert not is_even(3)"
REVERSE = "assert reverse('abc') == 'cba'"
# (task columns, completion, status the service gives it): honest, wrong and cheating completions
# of different lengths, so each one's last response token sits at another position.
SAMPLES: list[tuple[dict[str, str], str, int]] = [
    ({"test": ADD, "entry_point": "add"}, "```python\ndef add(a, b):\n    return a + b\n```", pb.PASSED),
    ({"test": ADD, "entry_point": "add"}, "```python\ndef add(a, b):\n    return a - b\n```", pb.FAILED),
    ({"test": EVEN, "entry_point": "is_even"}, "def is_even(n):\n    return n % 2 == 0\n", pb.PASSED),
    ({"test": EVEN, "entry_point": "is_even"}, "def is_even(n):\n    return True\n", pb.FAILED),
    (
        {"test": REVERSE, "entry_point": "reverse"},
        "```python\nclass Same:\n    def __eq__(self, other):\n        return True\n\n"
        "def reverse(s):\n    return Same()\n```",
        pb.REJECTED,
    ),
    ({"test": REVERSE, "entry_point": "reverse"}, "def reverse(s):\n    return s[::-1\n", pb.SYNTAX_ERROR),
]
PROMPT = "<|im_start|>user\nComplete the function so that all the tests pass.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def service() -> Iterator[EmbeddedServer]:
    server = start_server("bwrap")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def target(service: EmbeddedServer) -> str:
    """The one place the tests say where the service is."""
    return service.target


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    need("transformers")
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="module")
def service_scores(target: str) -> list[float]:
    """What the service itself gives each sample, asked directly: the figures verl must carry."""
    core = RewardCore(TaskSpec("python"), ClientOptions(targets=(target,), timeout=120))
    results = core.score([c for _, c, _ in SAMPLES], [row for row, _, _ in SAMPLES])
    assert [r.status for r in results] == [status for _, _, status in SAMPLES], results
    return [float(r.score) for r in results]


# ---------------------------------------------------------------- verl


def verl_config(model_dir: str, target: str, *overrides: str, name: str = "compute_score", timeout: int = 120) -> Any:
    """verl's own PPO config (Hydra, from its installed ppo_trainer.yaml) with our reward file."""
    verl = need("verl")
    from hydra import compose, initialize_config_dir

    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(
            config_name="ppo_trainer",
            overrides=[
                f"actor_rollout_ref.model.path={model_dir}",
                f"reward.custom_reward_function.path={VERL_ADAPTER}",
                f"reward.custom_reward_function.name={name}",
                f"+reward.custom_reward_function.reward_kwargs.targets='{target}'",
                "+reward.custom_reward_function.reward_kwargs.language=python",
                f"+reward.custom_reward_function.reward_kwargs.timeout={timeout}",
                *overrides,
            ],
        )


def rollout_batch(tokenizer: Any, samples: list[tuple[dict[str, str], str]]) -> Any:
    """A DataProto as verl's rollout leaves it: left-padded prompts, right-padded responses
    ending in EOS, one attention mask over both, and the dataset's non-tensor columns."""
    import numpy as np
    import torch
    from verl import DataProto

    prompt_ids = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    responses = [
        tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for _, text in samples
    ]
    width = max(map(len, responses)) + 3  # every row has some padding after its last token
    pad = tokenizer.pad_token_id
    prompts = torch.tensor([prompt_ids] * len(samples))
    response_tensor = torch.tensor([ids + [pad] * (width - len(ids)) for ids in responses])
    response_mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in responses])
    attention_mask = torch.cat([torch.ones_like(prompts), response_mask], dim=1)
    return DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": response_tensor,
            "input_ids": torch.cat([prompts, response_tensor], dim=1),
            "attention_mask": attention_mask,
            "position_ids": torch.cumsum(attention_mask, dim=1) - 1,
        },
        non_tensors={
            "data_source": np.array(["rft-sandbox/python"] * len(samples), dtype=object),
            "reward_model": np.array([{"ground_truth": json.dumps(row), "style": "rule"} for row, _ in samples]),
            "extra_info": np.array([{"index": n, "split": "train"} for n in range(len(samples))]),
        },
    )


def last_token_positions(batch: Any) -> list[int]:
    prompt_length = batch.batch["prompts"].size(1)
    return (batch.batch["attention_mask"][:, prompt_length:].sum(dim=1) - 1).tolist()


def run_reward_loop(config: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
    """What `RewardLoopManager.compute_rm_score` does, with its one worker in this process:
    each sample through the worker, the scores placed by the resolved manager class, and the
    extra infos stacked by the first sample's keys; then `extract_reward` as the trainer calls it."""
    import numpy as np
    from tensordict import TensorDict
    from verl import DataProto
    from verl.experimental.reward_loop import RewardLoopWorker
    from verl.trainer.ppo.reward import extract_reward, resolve_reward_manager_cls

    worker = RewardLoopWorker(config)
    outputs = worker.loop.run_until_complete(worker.compute_score_batch(batch))
    rm_scores = resolve_reward_manager_cls(config).assemble_rm_scores(batch, [o["reward_score"] for o in outputs])
    infos = [o.get("reward_extra_info", {}) for o in outputs]
    keys = list(infos[0])
    scored = DataProto(
        batch=TensorDict({"rm_scores": rm_scores}, batch_size=len(batch)),
        non_tensor_batch={key: np.array([info[key] for info in infos]) for key in keys},
        meta_info={"reward_extra_keys": keys},
    )
    return extract_reward(scored)


def assert_scores_at_last_token(reward: Any, batch: Any, expected: list[float]) -> None:
    import torch

    positions = last_token_positions(batch)
    assert len(set(positions)) > 2  # the samples really end at different tokens
    want = torch.zeros_like(reward)
    for row, (position, score) in enumerate(zip(positions, expected, strict=True)):
        want[row, position] = score
    assert torch.equal(reward, want), (reward.nonzero().tolist(), positions, expected)


@pytest.mark.parametrize(
    ("manager", "function"),
    [("naive", "compute_score"), ("naive", "compute_score_async"), ("dapo", "compute_score_async")],
)
def test_verl_reward_loop_puts_each_service_score_at_the_last_response_token(
    model_dir: str, target: str, service_scores: list[float], manager: str, function: str
) -> None:
    config = verl_config(model_dir, target, f"reward.reward_manager.name={manager}", name=function)
    tokenizer = load_tokenizer(model_dir)
    batch = rollout_batch(tokenizer, [(row, text) for row, text, _ in SAMPLES])
    reward, extra = run_reward_loop(config, batch)
    assert_scores_at_last_token(reward, batch, service_scores)
    assert service_scores[0] == 1.0 and service_scores[4] == 0.0  # honest paid, the cheat not
    assert extra["passed"].tolist() == [float(s == pb.PASSED) for _, _, s in SAMPLES]
    assert extra["rejected"].tolist() == [float(s == pb.REJECTED) for _, _, s in SAMPLES]
    assert extra["infra_error"].tolist() == [0.0] * len(SAMPLES)


def test_verl_legacy_batch_manager_with_compute_score_batch(
    model_dir: str, target: str, service_scores: list[float]
) -> None:
    config = verl_config(model_dir, target, name="compute_score_batch")
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager.batch import BatchRewardManager

    batch = rollout_batch(load_tokenizer(model_dir), [(row, text) for row, text, _ in SAMPLES])
    manager = BatchRewardManager(load_tokenizer(model_dir), num_examine=0, compute_score=get_custom_reward_fn(config))
    answer = manager(batch, return_dict=True)
    assert_scores_at_last_token(answer["reward_tensor"], batch, service_scores)
    assert answer["reward_extra_info"]["infra_error"] == [0.0] * len(SAMPLES)


def test_verl_down_service_is_a_flagged_zero(model_dir: str) -> None:
    """verl cannot drop a sample: an unreachable service gives 0 at the last token (the
    trainer does train on it) with `infra_error` 1 in the batch's extra infos, per sample."""
    config = verl_config(model_dir, f"127.0.0.1:{free_port()}", name="compute_score_async", timeout=3)
    batch = rollout_batch(load_tokenizer(model_dir), [(row, text) for row, text, _ in SAMPLES[:2]])
    reward, extra = run_reward_loop(config, batch)
    assert not reward.any()
    assert extra["infra_error"].tolist() == [1.0, 1.0]
    assert extra["score"].tolist() == [0.0, 0.0] and extra["passed"].tolist() == [0.0, 0.0]


def test_verl_down_service_stops_the_step_with_on_infra_error_raise(model_dir: str) -> None:
    """Opted in, no 0 reaches the reward tensor: verl's own loop raises for the sample."""
    config = verl_config(
        model_dir,
        f"127.0.0.1:{free_port()}",
        "+reward.custom_reward_function.reward_kwargs.on_infra_error=raise",
        name="compute_score_async",
        timeout=3,
    )
    batch = rollout_batch(load_tokenizer(model_dir), [(row, text) for row, text, _ in SAMPLES[:2]])
    with pytest.raises(SandboxUnavailableError, match="could not score 1 of 1 samples"):
        run_reward_loop(config, batch)


def test_verl_row_without_its_test_column_stops_the_step(model_dir: str, target: str) -> None:
    """A dataset that cannot make tasks is a configuration mistake: loud, not a reward of 0."""
    config = verl_config(model_dir, target, name="compute_score_async")
    batch = rollout_batch(load_tokenizer(model_dir), [({"entry_point": "add"}, SAMPLES[0][1])])
    with pytest.raises(TaskBuildError, match="no column 'test'"):
        run_reward_loop(config, batch)


def ray_reward_loop_case() -> None:
    """Run as a script inside a fresh network namespace: a one-node Ray cluster, the service
    deployed on it as a fleet (`ray up`'s code), and verl's `RewardLoopManager` with two
    `RewardLoopWorker` actors that find the fleet by `ray://NAME`, scoring the samples as the
    PPO trainer does (`compute_rm_score`); prints what came out as JSON."""
    import tempfile

    import ray
    from verl.experimental.reward_loop import RewardLoopManager
    from verl.trainer.ppo.reward import extract_reward

    from sandbox.config import ServiceConfig
    from sandbox.fleet import commands
    from sandbox.fleet.controller import POLL_SECONDS
    from sandbox.fleet.spec import ReplicaSpec

    work = Path(tempfile.mkdtemp(prefix="verl-ray-"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=str(work / "ray"))
    fleet = "verl-fleet"
    try:
        spec = ReplicaSpec(ServiceConfig(workers=1, audit_log=str(work / "audit.jsonl")), backend="bwrap")
        commands.up(fleet, spec, 1, wait=120)
        target = f"ray://{fleet}"
        model = build_tiny_model_dir(work / "model")
        config = verl_config(model, target, "reward.num_workers=2", name="compute_score_async")
        batch = rollout_batch(load_tokenizer(model), [(row, text) for row, text, _ in SAMPLES])
        reward, extra = extract_reward(RewardLoopManager(config).compute_rm_score(batch))
        core = RewardCore(TaskSpec("python"), ClientOptions(targets=(target,), timeout=120))
        direct = core.score([c for _, c, _ in SAMPLES], [row for row, _, _ in SAMPLES])
        report = {
            "reward": reward.tolist(),
            "positions": last_token_positions(batch),
            "service": [float(r.score) for r in direct],
            "infra_error": extra["infra_error"].tolist(),
        }
        time.sleep(2 * POLL_SECONDS)  # the controller's figures are its last poll's
        report["fleet_jobs"] = sum(r.get("jobs", 0) for r in commands.status(fleet)["replicas"])
        print("RESULT " + json.dumps(report), flush=True)
    finally:
        with contextlib.suppress(SystemExit):
            commands.down(fleet, grace=10)
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def test_verl_ray_reward_loop_manager() -> None:
    """The trainer's own entry, Ray actors included, against a `ray://` fleet (loopback only:
    its own network namespace)."""
    need("verl")
    need("ray")
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.fail("this test needs unshare and ip (util-linux, iproute2)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    command = f"ip link set lo up && exec {sys.executable} {Path(__file__).resolve()}"
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", command], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    report = json.loads(lines[-1].removeprefix("RESULT "))
    assert report["service"][0] == 1.0 and report["service"][4] == 0.0
    for row, position, score in zip(report["reward"], report["positions"], report["service"], strict=True):
        assert row[position] == score and sum(map(abs, row)) == abs(score), (row, position, score)
    assert report["infra_error"] == [0.0] * len(SAMPLES)
    assert report["fleet_jobs"] > 0  # the fleet's replica did the scoring


# ---------------------------------------------------------------- OpenRLHF


class ReplayEngine:
    """Stands in for OpenRLHF's vLLM engine: answers `generate` with a fixed completion's
    token ids (and EOS), in vLLM's `RequestOutput` shape."""

    def __init__(self, tokenizer: Any, completion: str) -> None:
        self.token_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]

    async def generate(self, prompt_token_ids: list[int], params: Any, multi_modal_data: Any = None) -> Any:
        output = SimpleNamespace(token_ids=list(self.token_ids), finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[output])


def openrlhf_rollouts(remote_url: str | list[str], model_dir: str) -> list[dict[str, Any]]:
    """Each sample through OpenRLHF's own executor, as its vLLM actor runs it."""
    need("openrlhf")
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    executor = SingleTurnAgentExecutor(remote_rm_url=remote_url)
    tokenizer = load_tokenizer(model_dir)
    params = SimpleNamespace(max_tokens=256, logprobs=None)

    async def all_samples() -> list[dict[str, Any]]:
        calls = [
            executor.execute(PROMPT, json.dumps(row), params, 1024, tokenizer, ReplayEngine(tokenizer, text))
            for row, text, _ in SAMPLES
        ]
        return await asyncio.gather(*calls)

    return asyncio.run(all_samples())


def reward_of(output: dict[str, Any]) -> float:
    value = output["reward"]
    assert value is not None, output  # None: OpenRLHF swallowed a failed reward call
    return float(value[0]) if hasattr(value, "__len__") else float(value)


def to_experience() -> Any:
    """OpenRLHF's `SamplesGenerator._process_response_into_experience`, the step that turns an
    executor's output into the `Experience` the trainer learns from. Its module imports vLLM
    at the top, so the method's source is taken from the installed file and compiled alone,
    with the two names it uses (torch and OpenRLHF's own `Experience`)."""
    import ast
    import importlib.util

    import torch
    from openrlhf.trainer.ppo_utils.experience import Experience

    spec = importlib.util.find_spec("openrlhf.trainer.ppo_utils.samples_generator")
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    (method,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "_process_response_into_experience"
    ]
    namespace: dict[str, Any] = {"torch": torch, "Experience": Experience}
    exec(compile(ast.Module(body=[method], type_ignores=[]), spec.origin, "exec"), namespace)
    return lambda response: namespace["_process_response_into_experience"](None, response, max_len=1024)


def test_openrlhf_executor_with_the_reward_file(
    model_dir: str, target: str, service_scores: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RFT_SANDBOX_TARGETS", target)
    monkeypatch.setenv("RFT_SANDBOX_LANGUAGE", "python")
    outputs = openrlhf_rollouts(str(OPENRLHF_ADAPTER), model_dir)
    assert [reward_of(o) for o in outputs] == service_scores
    assert [float(o["scores"][0]) for o in outputs] == service_scores
    experiences = [to_experience()(o) for o in outputs]
    assert [e.rewards.tolist() for e in experiences] == [[s] for s in service_scores]
    assert [e.info["reward"].tolist() for e in experiences] == [[s] for s in service_scores]
    assert [e.info["sandbox_error"].tolist() for e in experiences] == [[0.0]] * len(SAMPLES)
    assert [e.info["passed"].item() for e in experiences] == [float(s == pb.PASSED) for _, _, s in SAMPLES]


def serve(core: RewardCore) -> tuple[Any, str]:
    server = openrlhf_adapter.make_reward_server(core, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/get_reward"


def test_openrlhf_executor_with_the_http_endpoint(model_dir: str, target: str, service_scores: list[float]) -> None:
    server, url = serve(RewardCore(TaskSpec("python"), ClientOptions(targets=(target,), timeout=120)))
    try:
        outputs = openrlhf_rollouts([url], model_dir)  # train_ppo_ray splits --reward.remote_url on commas
    finally:
        server.shutdown()
        server.server_close()
    assert [reward_of(o) for o in outputs] == service_scores
    assert [o["extra_logs"]["passed"] for o in outputs] == [float(s == pb.PASSED) for _, _, s in SAMPLES]


def test_openrlhf_down_service_is_a_flagged_zero(model_dir: str) -> None:
    """The endpoint answers (OpenRLHF would otherwise retry, then log and leave no reward):
    0 for each sample, with `sandbox_error` 1 in its extra logs."""
    options = ClientOptions(targets=(f"127.0.0.1:{free_port()}",), timeout=3)
    server, url = serve(RewardCore(TaskSpec("python"), options))
    try:
        outputs = openrlhf_rollouts(url, model_dir)
    finally:
        server.shutdown()
        server.server_close()
    assert [reward_of(o) for o in outputs] == [0.0] * len(SAMPLES)
    assert [o["extra_logs"]["sandbox_error"] for o in outputs] == [1.0] * len(SAMPLES)
    experiences = [to_experience()(o) for o in outputs]
    assert [e.info["sandbox_error"].item() for e in experiences] == [1.0] * len(SAMPLES)


if __name__ == "__main__":
    ray_reward_loop_case()
