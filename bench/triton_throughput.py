"""Triton kernels scored per minute on the CPU interpreter, next to a naive baseline.

    python bench/triton_throughput.py [--copies 6] [--trials 3] [--workers 1]

Scores the four honest test problems (elementwise, reduction, matmul+bias+ReLU, softmax)
`--copies` times each through a real server subprocess (ScoreBatch; references computed
once per problem in a warm-up call, as a trainer's repeated prompts would have them
cached). Every candidate gets the full treatment: its trials in the interpreter, the op
recorder, the determinism rerun, the ghost replay and the ahead-of-time GPU compile.

Baseline, same run: a fresh `python3` per candidate that imports torch and triton, runs
the reference and the candidate on the same number of seeded trials and compares them
with torch.allclose: no isolation, no anti-cheat checks, no GPU compile. `--workers` of
each at a time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.humaneval_throughput import served  # noqa: E402
from sandbox.api import pb  # noqa: E402
from sandbox.triton.samples import PROBLEMS  # noqa: E402

BASELINE = """
import sys, torch
reference, candidate, trials = open(sys.argv[1]).read(), open(sys.argv[2]).read(), int(sys.argv[3])
ref, cand = {}, {}
exec(compile(reference, "reference.py", "exec"), ref)
import importlib.util
spec = importlib.util.spec_from_file_location("model_new", sys.argv[2])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
torch.manual_seed(42)
init = ref["get_init_inputs"]()
torch.manual_seed(42)
model = ref["Model"](*init)
torch.manual_seed(42)
new = module.ModelNew(*init)
ok = True
with torch.no_grad():
    for n in range(trials):
        torch.manual_seed(43 + n)
        inputs = ref["get_inputs"]()
        ok &= torch.allclose(model(*inputs), new(*inputs), atol=1e-4, rtol=1e-4)
sys.exit(0 if ok else 1)
"""


def tasks(copies: int, trials: int) -> list[pb.Task]:
    out = []
    for copy in range(copies):
        for name, (reference, code) in sorted(PROBLEMS.items()):
            spec = pb.TritonSpec(reference=reference, trials=trials)
            out.append(pb.Task(id=f"{name}-{copy}", language=pb.TRITON, code=code, triton=spec))
    return out


def bench_service(batch: list[pb.Task], workers: int, backend: str) -> tuple[float, dict[str, int]]:
    with served("--workers", "1", "--triton-workers", str(workers), "--backend", backend) as (_, client):
        warm = {t.id.rsplit("-", 1)[0]: t for t in batch}  # one per problem: starts the lane, caches references
        list(client.score_batch(list(warm.values())))
        started = time.monotonic()
        results = list(client.score_batch(batch))
        elapsed = time.monotonic() - started
    statuses: dict[str, int] = {}
    for result in results:
        name = pb.Status.Name(result.status)
        statuses[name] = statuses.get(name, 0) + 1
    return len(results) / elapsed * 60, statuses


def bench_baseline(batch: list[pb.Task], workers: int, trials: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp, "baseline.py")
        script.write_text(BASELINE)
        jobs = []
        for task in batch:
            ref, cand = Path(tmp, f"{task.id}-ref.py"), Path(tmp, f"{task.id}-new.py")
            ref.write_text(task.triton.reference)
            cand.write_text(task.code)
            jobs.append([sys.executable, str(script), str(ref), str(cand), str(trials)])
        env = {**os.environ, "TRITON_INTERPRET": "1", "TRITON_DEFAULT_FP_FUSION": "1", "OMP_NUM_THREADS": "1"}
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            codes = list(pool.map(lambda argv: subprocess.run(argv, env=env, capture_output=True).returncode, jobs))
        elapsed = time.monotonic() - started
    return len(batch) / elapsed * 60, sum(code == 0 for code in codes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--backend", default="bwrap")
    args = parser.parse_args()
    batch = tasks(args.copies, args.trials)
    print(f"{len(batch)} candidates ({len(PROBLEMS)} problems x {args.copies}), {args.trials} trials each")
    service, statuses = bench_service(batch, args.workers, args.backend)
    print(
        f"service ({args.backend}, {args.workers} interpreter + {args.workers} compiler runner(s)): "
        f"{service:.1f} kernels/min  statuses={statuses}"
    )
    baseline, passed = bench_baseline(batch, args.workers, args.trials)
    print(
        f"baseline (fresh python per candidate, {args.workers} at a time): {baseline:.1f} kernels/min "
        f"({passed}/{len(batch)} passed)"
    )
    print(f"speedup: {service / baseline:.2f}x")


if __name__ == "__main__":
    main()
