"""Real TRL `GRPOTrainer` steps on the CPU with the sandbox service as the reward.

A tiny Qwen2 and a BPE tokenizer are built locally (trainer_plugin/tiny_model.py), LoRA via peft,
rewards from a real service over loopback gRPC. The model is random, so its completions
are junk that fails to compile: the point is the plumbing (finite rewards, named
components and findings in the logs, an outage as NaN without a crash, the async path).
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.embedded import EmbeddedServer
from tests.conftest import start_server
from trainer_plugin.client import ClientOptions
from trainer_plugin.tasks import TaskSpec
from trainer_plugin.tiny_model import build_tiny_model_dir, grpo_config, load_tokenizer, lora_config
from trainer_plugin.trl import SandboxReward, SandboxRewards

if os.environ.get("RFT_REQUIRE_TRL") == "1":  # scripts/test (CI) installs them: missing is a failure
    import trl
else:
    trl = pytest.importorskip("trl")
    pytest.importorskip("peft")
from tests.trl_support import tiny_dataset

SPEC = TaskSpec("python", columns={"assert_code": "tests"})
GOOD = "```python\ndef add(a, b):\n    return a + b\n```"
CHEAT = (
    "```python\nclass Yes:\n    def __eq__(self, other):\n        return True\n\ndef add(a, b):\n    return Yes()\n```"
)


@pytest.fixture(scope="module")
def service() -> Iterator[EmbeddedServer]:
    server = start_server("bwrap")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny-qwen2"))


def options(service: EmbeddedServer, **overrides: object) -> ClientOptions:
    return ClientOptions(targets=(service.target,), **overrides)  # type: ignore[arg-type]


def train(model_dir: str, out: Path, reward_funcs: list, **config: object) -> list[dict]:
    trainer = trl.GRPOTrainer(
        model=model_dir,
        reward_funcs=reward_funcs,
        args=grpo_config(out, **config),
        train_dataset=tiny_dataset(8),
        processing_class=load_tokenizer(model_dir),
        peft_config=lora_config(),
    )
    trainer.train()
    return [entry for entry in trainer.state.log_history if "loss" in entry]


def test_grpo_steps_with_sandbox_rewards(service: EmbeddedServer, model_dir: str, tmp_path: Path) -> None:
    rewards = SandboxRewards(SPEC, options(service), components={"tests": None, "compiles": "compiles"})
    steps = train(model_dir, tmp_path, rewards.functions)
    assert len(steps) == 2
    for step in steps:
        assert math.isfinite(step["rewards/tests/mean"]) and math.isfinite(step["rewards/compiles/mean"])
        assert math.isfinite(step["sandbox/score"])  # component means through log_metric
        assert "sandbox/compiles" in step and "sandbox/sandbox_error_rate" in step
        assert step["sandbox/sandbox_error_rate"] == 0  # every completion got the service's verdict


def test_outage_mid_training_gives_nan_not_a_crash(service: EmbeddedServer, model_dir: str, tmp_path: Path) -> None:
    spare = start_server("bwrap")
    reward = SandboxReward(SPEC, ClientOptions(targets=(spare.target,), retries=1, backoff=0.05, timeout=5))

    from transformers import TrainerCallback

    class Outage(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                spare.stop()

    trainer = trl.GRPOTrainer(
        model=model_dir,
        reward_funcs=[reward],
        args=grpo_config(tmp_path, max_steps=3),
        train_dataset=tiny_dataset(8),
        processing_class=load_tokenizer(model_dir),
        peft_config=lora_config(),
        callbacks=[Outage()],
    )
    trainer.train()
    steps = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(steps) == 3
    assert math.isfinite(steps[0]["rewards/sandbox/mean"])
    for step in steps[1:]:  # every reward of these steps was None: TRL logs no mean at all
        value = step["rewards/sandbox/mean"]
        assert value is None or math.isnan(value)
        assert step["sandbox/sandbox_error_rate"] == 1.0


def test_async_rewards_under_trls_event_loop(service: EmbeddedServer, model_dir: str, tmp_path: Path) -> None:
    rewards = SandboxRewards(
        SPEC, options(service), components={"tests": None, "compiles": "compiles"}, asynchronous=True
    )
    assert all(trl.trainer.utils.is_async_callable(f) for f in rewards.functions)
    steps = train(model_dir, tmp_path, rewards.functions, max_steps=1)
    assert math.isfinite(steps[0]["rewards/tests/mean"]) and math.isfinite(steps[0]["rewards/compiles/mean"])


def test_called_as_trl_calls_it_logs_findings_and_statuses(service: EmbeddedServer) -> None:
    metrics: dict[str, float] = {}
    extra: dict[str, list] = {}
    reward = SandboxReward(SPEC, options(service), name="tests")
    rows = {"tests": [["assert add(1, 2) == 3"]] * 3, "entry_point": ["add"] * 3, "task_id": ["a", "b", "c"]}
    completions = [[{"role": "assistant", "content": text}] for text in (GOOD, CHEAT, "no code at all")]
    values = reward(
        prompts=["p"] * 3,
        completions=completions,
        completion_ids=[[1]] * 3,
        trainer_state=None,
        log_metric=metrics.__setitem__,
        log_extra=extra.__setitem__,
        **rows,
    )
    assert values == [1.0, 0.0, 0.0]
    assert extra["sandbox_status"] == ["PASSED", "REJECTED", "SYNTAX_ERROR"]
    assert "always_equal_object" in extra["sandbox_findings"][1]
    assert metrics["sandbox/finding/always_equal_object"] == pytest.approx(1 / 3)
    assert metrics["sandbox/rejected_rate"] == pytest.approx(1 / 3)
    assert reward.__name__ == "tests"
    assert pickle.loads(pickle.dumps(reward)).__name__ == "tests"  # travels to trainer workers


def test_example_grpo_run_raises_the_mean_reward(tmp_path: Path) -> None:
    """examples/grpo_python.py end to end (its own embedded service), shortened."""
    import csv
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "curve"
    subprocess.run(
        [sys.executable, "examples/grpo_python.py", "--steps", "30", "--out", str(out)], cwd=root, check=True
    )
    with open(out.with_suffix(".csv")) as handle:
        rewards = [float(row["mean_reward"]) for row in csv.DictReader(handle)]
    assert len(rewards) == 30
    assert sum(rewards[-10:]) / 10 > sum(rewards[:5]) / 5 + 0.1
