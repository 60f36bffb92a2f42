"""GRPO + LoRA on a small Python task, rewarded by the sandbox service: the mean reward rises.

    python examples/grpo_python.py [--steps 100] [--out docs/grpo_python]

Everything is local and runs on a 2-core CPU in about a minute:
1. a tiny Qwen2 and a BPE tokenizer are built from scratch (trainer_plugin/tiny_model.py);
2. a few seconds of supervised warm-up teach it to write the three functions asked for,
   half the time right (`a + b`) and half the time wrong (`a - b`, `a * b`...), so it
   starts as a policy with a reward near 0.5;
3. an embedded sandbox service starts (bubblewrap), or RFT_SANDBOX_TARGETS names one;
4. TRL's GRPOTrainer fine-tunes LoRA adapters with `SandboxReward` (the functions' asserts
   run in the sandbox) and the mean reward per step is written to OUT.csv and, when
   matplotlib is installed, plotted to OUT.png.

For a real model, swap `build_tiny_model_dir` for a model id and the dataset for yours;
the reward part stays the same. A Triton variant (GPU) is the same with
`TaskSpec("triton")` and a dataset holding KernelBench reference modules.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer_plugin.tiny_model import build_tiny_model_dir, grpo_config, load_tokenizer, lora_config  # noqa: E402

PROBLEMS = {
    "add": ("a + b", ["a - b", "a * b", "b - a"], ["assert add(1, 2) == 3", "assert add(-4, 9) == 5"]),
    "sub": ("a - b", ["a + b", "b - a", "a * b"], ["assert sub(5, 3) == 2", "assert sub(1, 7) == -6"]),
    "mul": ("a * b", ["a + b", "a - b", "a ** b"], ["assert mul(3, 4) == 12", "assert mul(2, 5) == 10"]),
}


def prompt(name: str) -> str:
    return f"Write {name}:\n"


def answer(name: str, body: str) -> str:
    return f"def {name}(a, b):\n    return {body}\n"


def warm_up(model_dir: str, steps: int = 300, seed: int = 0) -> None:
    """Supervised warm-up: right and wrong answers, one each (a policy at reward ~0.5)."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    rng = random.Random(seed)  # noqa: S311 - sampling training data
    texts = []
    for name, (right, wrongs, _) in PROBLEMS.items():
        for wrong in wrongs:
            texts += [prompt(name) + answer(name, right), prompt(name) + answer(name, wrong)]
    eos = tokenizer.eos_token
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = rng.sample(texts, 8)
        encoded = tokenizer([t + eos for t in batch], return_tensors="pt", padding=True)
        labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
        loss = model(**encoded, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(model_dir)
    print(f"warm-up done: final loss {loss.item():.3f}", flush=True)


def dataset(copies: int = 32):
    from datasets import Dataset

    rows = [
        {"prompt": prompt(name), "entry_point": name, "tests": tests}
        for _ in range(copies)
        for name, (_, _, tests) in PROBLEMS.items()
    ]
    return Dataset.from_list(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", default=str(ROOT / "docs" / "grpo_python"))
    args = parser.parse_args()

    from trl import GRPOTrainer

    from trainer_plugin.client import ClientOptions
    from trainer_plugin.tasks import TaskSpec
    from trainer_plugin.trl import SandboxReward

    work = Path(tempfile.mkdtemp(prefix="grpo-python-"))
    model_dir = build_tiny_model_dir(work / "model", hidden_size=64, num_heads=4)
    warm_up(model_dir)

    server = None
    targets = os.environ.get("RFT_SANDBOX_TARGETS")
    if not targets:
        from sandbox.backends.bwrap import BwrapBackend
        from sandbox.config import ServiceConfig
        from sandbox.embedded import EmbeddedServer

        server = EmbeddedServer(ServiceConfig(port=0, workers=2, audit_log=str(work / "audit.jsonl")), BwrapBackend())
        server.start()
        targets = server.target
    reward = SandboxReward(TaskSpec("python", columns={"assert_code": "tests"}), ClientOptions(targets=(targets,)))
    try:
        trainer = GRPOTrainer(
            model=model_dir,
            reward_funcs=[reward],
            args=grpo_config(
                work / "out",
                max_steps=args.steps,
                per_device_train_batch_size=16,
                num_generations=8,
                max_completion_length=24,
                learning_rate=5e-3,
                temperature=1.0,
            ),
            train_dataset=dataset(),
            processing_class=load_tokenizer(model_dir),
            peft_config=lora_config(r=8, lora_alpha=16),
        )
        trainer.train()
    finally:
        if server is not None:
            server.stop()
    curve = [
        (int(e["step"]), e["rewards/sandbox/mean"]) for e in trainer.state.log_history if "rewards/sandbox/mean" in e
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "mean_reward"])
        writer.writerows(curve)
    first, last = curve[: max(len(curve) // 5, 1)], curve[-max(len(curve) // 5, 1) :]
    mean = lambda rows: sum(r for _, r in rows) / len(rows)  # noqa: E731
    print(f"mean reward: first fifth {mean(first):.3f} -> last fifth {mean(last):.3f} ({len(curve)} steps)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    figure, axes = plt.subplots(figsize=(6, 3.5))
    steps, values = [s for s, _ in curve], [r for _, r in curve]
    window = 10
    smooth = [
        sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
        for i in range(len(values))
    ]
    axes.plot(steps, values, marker=".", alpha=0.4, label="per step (16 completions)")
    axes.plot(steps, smooth, linewidth=2, label=f"mean of the last {window} steps")
    axes.legend(loc="lower right")
    axes.set_xlabel("GRPO step")
    axes.set_ylabel("mean reward (sandbox)")
    axes.set_title("Tiny Qwen2 + LoRA, GRPO, rewards from rft-sandbox")
    axes.set_ylim(0, 1.05)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out.with_suffix(".png"), dpi=100)
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
