"""A tiny, fully local model for running real trainer steps on the CPU (offline demos, tests).

Nothing here touches the network: the tokenizer is a byte-level BPE trained on a small
built-in corpus, and the model is a randomly initialised two-layer `Qwen2ForCausalLM`.
Everything is seeded, so the same directory contents come out on every run.

Typical use::

    model_dir = build_tiny_model_dir(tmp_path / "tiny")
    trainer = GRPOTrainer(
        model=model_dir,
        reward_funcs=[my_reward],
        args=grpo_config(tmp_path / "out"),
        train_dataset=dataset,
        processing_class=load_tokenizer(model_dir),
        peft_config=lora_config(),
    )
    trainer.train()

The heavy libraries (torch, transformers, tokenizers, trl, peft) are imported inside the
functions (the `trl` extra), so importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

# The tokenizers library forks a thread pool; quiet its "fork after parallelism" warning
# (the trainer's dataloader may fork) and keep everything on the CPU.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SEED = 1234

PAD_TOKEN = "<|endoftext|>"  # noqa: S105 - a token of the vocabulary, not a secret
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, IM_START, IM_END]

# ChatML, like Qwen2's: a conversational prompt renders as
# "<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n" with add_generation_prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

_CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "def sub(a, b):\n    return a - b\n",
    "def mul(x, y):\n    return x * y\n",
    "def is_even(n):\n    return n % 2 == 0\n",
    "def reverse(s):\n    return s[::-1]\n",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "def total(xs):\n    result = 0\n    for x in xs:\n        result += x\n    return result\n",
    "def max_of(xs):\n    best = xs[0]\n    for x in xs[1:]:\n"
    "        if x > best:\n            best = x\n    return best\n",
    "assert add(1, 2) == 3\nassert sub(5, 3) == 2\nassert reverse('abc') == 'cba'\n",
    "import math\nprint(math.sqrt(16))\nprint([i * i for i in range(10)])\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n"
    "    def push(self, item):\n        self.items.append(item)\n",
    "SELECT id, name FROM users WHERE age > 30 ORDER BY name;\n",
    "SELECT COUNT(*) FROM orders GROUP BY customer_id HAVING COUNT(*) > 2;\n",
    "SELECT u.name, o.total FROM users u JOIN orders o ON o.user_id = u.id;\n",
    "INSERT INTO users (id, name, age) VALUES (1, 'ada', 36);\n",
    "UPDATE orders SET total = total + 1 WHERE id = 7;\n",
    "CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT NOT NULL);\n",
    "Write a Python function that returns the sum of a list of numbers.\n",
    "Write a SQL query that lists every user older than thirty.\n",
    "Complete the function so that all the tests pass.\n",
    "The answer is 42. True False None 0 1 2 3 4 5 6 7 8 9\n",
]


def build_tokenizer(vocab_size: int = 400) -> Any:
    """A byte-level BPE `PreTrainedTokenizerFast` trained on the built-in corpus (ChatML template)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    # The same normalizer and pre-tokenizer as transformers' Qwen2Tokenizer, which is what
    # AutoTokenizer rebuilds from the saved vocab/merges (config.json says model_type "qwen2"):
    # the in-memory tokenizer and the reloaded one then encode identically.
    raw.normalizer = normalizers.NFC()
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Chat-formatted copies teach the merges around the template's own text too.
    chat = [f"{IM_START}user\n{text}{IM_END}\n{IM_START}assistant\n{text}{IM_END}\n" for text in _CORPUS]
    raw.train_from_iterator(_CORPUS + chat, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=None,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        unk_token=None,
        additional_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        truncation_side="left",
        model_max_length=512,
    )


def build_tiny_model_dir(
    path: str | os.PathLike[str],
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 400,
) -> str:
    """Train the tokenizer, build a random tiny Qwen2 causal LM, save both into `path`; return it as a str."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM, set_seed

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_size)

    set_seed(SEED)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    model = Qwen2ForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def load_tokenizer(model_dir: str | os.PathLike[str]) -> Any:
    """The saved tokenizer, as `GRPOTrainer` would load it (`AutoTokenizer`, left padding)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), padding_side="left", truncation_side="left")


def grpo_config(output_dir: str | os.PathLike[str], **overrides: Any) -> Any:
    """The smallest fast CPU `trl.GRPOConfig`: 2 steps, 2 prompts x 2 generations of <= 8 tokens each."""
    from trl import GRPOConfig

    settings: dict[str, Any] = {
        "output_dir": str(output_dir),
        "use_cpu": True,
        "bf16": False,  # GRPOConfig defaults bf16 to True
        "fp16": False,
        "report_to": "none",
        "max_steps": 2,
        "logging_steps": 1,
        "save_strategy": "no",
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "num_generations": 2,
        "max_completion_length": 8,
        "learning_rate": 1e-3,
        "seed": SEED,
        "data_seed": SEED,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "remove_unused_columns": False,
    }
    # GRPOConfig defaults gradient checkpointing to on. transformers >= 5.11 renamed it
    # activation_checkpointing (the old name a deprecated alias, with a FutureWarning); verl 0.9.1
    # pins transformers < 5.11, which knows only the old name: set whichever this one has.
    names = {field.name for field in dataclasses.fields(GRPOConfig)}
    settings["activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"] = False
    settings.update(overrides)
    return GRPOConfig(**settings)


def lora_config(**overrides: Any) -> Any:
    """A small `peft.LoraConfig` over the tiny Qwen2's attention and MLP projections."""
    from peft import LoraConfig

    settings: dict[str, Any] = {
        "r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
        "bias": "none",
        "task_type": "CAUSAL_LM",
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    }
    settings.update(overrides)
    return LoraConfig(**settings)
