"""GRPO on PyTorch-to-Triton translation, rewarded by the sandbox (for GPU users).

    # on the GPU host: the service times kernels on the GPUs (docker backend)
    python3 -m sandbox serve --backend docker --triton-device cuda --triton-workers 8
    # the trainer
    RFT_SANDBOX_TARGETS=gpu-host:50051 python examples/grpo_triton.py --model Qwen/Qwen2.5-Coder-7B-Instruct

Each prompt asks for a `ModelNew` with Triton kernels for a KernelBench-style reference
module (here: the four test problems; bring your own dataset with a "reference" column).
Two named rewards come from one scoring call and are weighted by TRL: correctness
(compiles + trials passed) and the speedup bonus; any cheat finding makes both 0. On a
CPU-only service the speedup term is absent (kernels run in Triton's interpreter), so the
same script runs there too, as a smoke test: `--model` defaults to the tiny local model
of the Python example, which will not write kernels.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INSTRUCTIONS = (
    "Rewrite this PyTorch module as `class ModelNew(nn.Module)` whose forward computes with your own "
    "@triton.jit kernels. Answer with one ```python block.\n\n```python\n{reference}```\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a model id or directory (default: a tiny local model)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--generations", type=int, default=2)
    args = parser.parse_args()

    from datasets import Dataset
    from trl import GRPOTrainer

    from sandbox.triton.samples import PROBLEMS
    from trainer_plugin.tasks import TaskSpec
    from trainer_plugin.tiny_model import build_tiny_model_dir, grpo_config, load_tokenizer, lora_config
    from trainer_plugin.trl import SandboxRewards

    work = Path(tempfile.mkdtemp(prefix="grpo-triton-"))
    model = args.model or build_tiny_model_dir(work / "model")
    rows = [{"prompt": INSTRUCTIONS.format(reference=ref), "reference": ref} for ref, _ in PROBLEMS.values()]
    rewards = SandboxRewards(  # options from RFT_SANDBOX_TARGETS / RFT_SANDBOX_TOKEN
        TaskSpec("triton", options={"trials": 3}),
        components={"kernel_correct": "correctness", "kernel_speedup": "speedup_bonus"},
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=rewards.functions,
        args=grpo_config(
            work / "out",
            max_steps=args.steps,
            num_generations=args.generations,
            per_device_train_batch_size=args.generations * 2,
            reward_weights=[1.0, 0.5],
            max_completion_length=1024 if args.model else 16,
            use_cpu=args.model is None,
        ),
        train_dataset=Dataset.from_list(rows * 4),
        processing_class=load_tokenizer(model) if args.model is None else None,
        peft_config=lora_config(),
    )
    trainer.train()
    for entry in trainer.state.log_history:
        if "rewards/kernel_correct/mean" in entry:
            print({k: v for k, v in entry.items() if k.startswith(("rewards/", "sandbox/"))})


if __name__ == "__main__":
    main()
