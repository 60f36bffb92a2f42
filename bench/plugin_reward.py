"""Reward wall time per GRPO step through the trainer plugin, next to per-completion requests.

    python bench/plugin_reward.py [--prompts 64] [--generations 8] [--tests 10] [--steps 3]

A realistic step's batch: `--prompts` problems x `--generations` completions, each problem
with `--tests` call tests. Completions mix what a policy samples: right, wrong on some
tests, not compiling, raising, and repeats (sampling at low temperature repeats itself;
here one completion in four repeats an earlier one of its group). A real server subprocess
(bwrap, 2 workers) scores them:

  - plugin: `SandboxReward` called exactly as TRL calls it (one ScoreBatch for the step,
    duplicates scored once);
  - per completion: one `Score` request per completion, one at a time, as a per-sample
    reward function does (verl's `compute_score` is called per sample);
  - per completion, 8 threads: the same with 8 requests in flight;
  - per completion, new channel: one at a time, each on a new connection (what an HTTP
    client without a session does per sample).

Prints seconds per step for each (median of `--steps`) and the ratios.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.humaneval_throughput import served  # noqa: E402
from trainer_plugin.client import ClientOptions, SandboxClient  # noqa: E402
from trainer_plugin.tasks import TaskSpec  # noqa: E402
from trainer_plugin.trl import SandboxReward  # noqa: E402

VARIANTS = [
    "def f{n}(x, y):\n    return x * {n} + y\n",  # right
    "def f{n}(x, y):\n    return x * {n} + y if x < 5 else 0\n",  # wrong on some tests
    "def f{n}(x, y)\n    return x * {n} + y\n",  # does not compile
    "def f{n}(x, y):\n    return x * {n} + z\n",  # raises
    "def f{n}(x, y):\n    total = 0\n    for _ in range({n}):\n        total += x\n    return total + y\n",  # right
]


def batch(prompts: int, generations: int, tests: int, seed: int) -> tuple[list[str], dict[str, list]]:
    rng = random.Random(seed)
    completions, entry_points, call_tests = [], [], []
    for n in range(prompts):
        cases = [{"args": [x, 2 * x + 1], "expected": x * n + 2 * x + 1} for x in range(tests)]
        group: list[str] = []
        for _ in range(generations):
            if group and rng.random() < 0.25:
                group.append(rng.choice(group))
            else:
                code = rng.choice(VARIANTS).format(n=n)
                group.append(f"Here you go:\n```python\n{code}```\n# sample {rng.random():.6f}")
        completions += group
        entry_points += [f"f{n}"] * generations
        call_tests += [cases] * generations
    return completions, {"entry_point": entry_points, "call_tests": call_tests}


def _fresh_channel_score(target: str, task: object) -> float:
    """One request on a new connection, as an HTTP client without a session makes it."""
    client = SandboxClient(ClientOptions(target))
    try:
        return client.score(task).score  # type: ignore[arg-type]
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--tests", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    spec = TaskSpec("python")
    with served("--workers", str(args.workers), "--backend", "bwrap") as (_, client):
        reward = SandboxReward(spec, client.options)
        timings: dict[str, list[float]] = {
            "plugin": [],
            "per completion": [],
            "per completion, 8 threads": [],
            "per completion, new channel": [],
        }
        for step in range(args.steps):
            completions, columns = batch(args.prompts, args.generations, args.tests, seed=step)
            prompts = ["..."] * len(completions)
            started = time.monotonic()
            values = reward(prompts=prompts, completions=completions, **columns)
            timings["plugin"].append(time.monotonic() - started)
            tasks = [
                spec.build(str(i), completions[i], {name: column[i] for name, column in columns.items()})
                for i in range(len(completions))
            ]
            started = time.monotonic()
            single = [client.score(task).score for task in tasks]
            timings["per completion"].append(time.monotonic() - started)
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                threaded = list(pool.map(lambda task: client.score(task).score, tasks))
            timings["per completion, 8 threads"].append(time.monotonic() - started)
            started = time.monotonic()
            fresh = [_fresh_channel_score(client.options.targets[0], task) for task in tasks]
            timings["per completion, new channel"].append(time.monotonic() - started)
            assert values == single == threaded == fresh, "every way must agree"
        passed = sum(v == 1.0 for v in values)
        print(
            f"{len(completions)} completions per step ({args.prompts} prompts x {args.generations}, "
            f"{args.tests} tests each; last step: {passed} fully right, "
            f"{len(set(completions))} distinct); server: bwrap, {args.workers} workers"
        )
        plugin = statistics.median(timings["plugin"])
        for name, values_s in timings.items():
            median = statistics.median(values_s)
            print(f"{name:28s} {median:7.3f} s/step  ({plugin and median / plugin:5.1f}x the plugin's time)")


if __name__ == "__main__":
    main()
