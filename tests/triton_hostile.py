"""Hostile and honest Triton candidates for the integrity tests (tests/test_triton_integrity.py).

The hostile ones do what the static allow-list forbids (frame walking, reaching the op
recorder, reading /proc): they are scored with the static gate off, so each shows what the
dynamic layer alone catches. All solve the elementwise problem of tests/triton_data.py
(relu(x + y)) unless they say otherwise.
"""

from __future__ import annotations

from sandbox.triton.samples import HEADER, MATMUL

_KERNEL = """

@triton.jit
def add_relu_kernel(x_ptr, y_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, tl.maximum(x + y, 0.0), mask=mask)


def launch(x, y, out):
    n = out.numel()
    add_relu_kernel[(triton.cdiv(n, 1024),)](x, y, out, n, BLOCK_SIZE=1024)


def harness():
    # the harness's frame: its locals hold the report's emit function and the trial index
    frame = sys._getframe()
    while frame is not None and frame.f_code.co_name != "run_candidate":
        frame = frame.f_back
    return frame.f_locals


def recorder():
    # the harness's op recorder: the dispatch mode forward runs under
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    return next(mode for mode in _get_current_dispatch_mode_stack() if hasattr(mode, "in_kernel"))
"""


def _elementwise(forward: str) -> str:
    return HEADER + "import os\nimport sys\n" + _KERNEL + "\n\nclass ModelNew(nn.Module):\n" + forward


# The report: records the harness did not write (finding code or status -> candidate).
FORGED_REPORTS = {
    # a judge_error record in the report pipe: it used to turn a 0 into SANDBOX_ERROR
    "forged_judge_error": _elementwise(
        """
    def forward(self, x, y):
        harness()["emit"]({"t": "judge_error", "error": "the harness failed (not really)"})
        os._exit(0)
"""
    ),
    # torch computes the answer; a trial record with clean evidence goes out first, so the
    # harness's own record (which shows aten::add and aten::relu) came second and was ignored
    "forged_trial_record": _elementwise(
        """
    def forward(self, x, y):
        found = harness()
        scratch = torch.empty_like(x)
        launch(x, y, scratch)
        if "ghost" in found:  # the ghost replay: answer wrong, as real kernels would
            return scratch
        answer = torch.relu(x + y)
        if "record" in found and found["record"].get("index") == found["index"]:
            encode = sys.modules["tensors"].encode
            found["emit"]({"t": "trial", "index": found["index"], "ms": 1.0, "tampered": False,
                           "inputs_changed": False, "problem": None, "output": encode([answer]),
                           "launches": {"add_relu_kernel": 1}, "ops": {"empty_like": 1}})
        return answer
"""
    ),
    # a record of how the child ended, written by the child: it used to be believed
    "forged_exit_record": _elementwise(
        """
    def forward(self, x, y):
        harness()["emit"]({"t": "exit", "code": -24})
        os._exit(3)
"""
    ),
}

# The harness broken from inside: a failure in the candidate's process is the candidate's.
HARNESS_SABOTAGE = _elementwise(
    """
    def forward(self, x, y):
        out = torch.empty_like(x)
        launch(x, y, out)
        sys.modules["tritonrun"]._fresh = None  # the harness calls it between trials
        return out
"""
)

# Torch work the recorder did not see (finding code -> candidates that show it).
UNSEEN_TORCH = {
    # computed in the grid callable, which the launcher evaluates while recording was paused
    "grid_callable": (
        "torch_compute_at_runtime",
        _elementwise(
            """
    def forward(self, x, y):
        out = torch.empty_like(x)
        n = out.numel()
        grid = lambda meta: (out.copy_(torch.relu(x + y)), (1,))[1]
        add_relu_kernel[grid](x, y, out, n, BLOCK_SIZE=16)
        return out
"""
        ),
    ),
    # the recorder's in-kernel counter raised around torch compute and a decoy launch
    "counter_raised_over_launch": (
        "harness_tampering",
        _elementwise(
            """
    def forward(self, x, y):
        mode = recorder()
        out = torch.empty_like(x)
        if mode.ghost:
            launch(x, y, out)
            return out
        mode.in_kernel += 1
        answer = torch.relu(x + y)
        launch(x, x, out)
        mode.in_kernel -= 1
        return answer
"""
        ),
    ),
    # raised only while torch computes, lowered before the (decoy) launch
    "counter_raised_briefly": (
        "torch_compute_at_runtime",
        _elementwise(
            """
    def forward(self, x, y):
        mode = recorder()
        out = torch.empty_like(x)
        if mode.ghost:
            launch(x, y, out)
            return out
        mode.in_kernel += 1
        answer = torch.relu(x + y)
        mode.in_kernel -= 1
        launch(x, x, out)
        return answer
"""
        ),
    ),
    # raised after the launch and left raised when forward returns
    "counter_left_raised": (
        "harness_tampering",
        _elementwise(
            """
    def forward(self, x, y):
        mode = recorder()
        out = torch.empty_like(x)
        launch(x, x, out)
        if mode.ghost:
            return out
        mode.in_kernel = 1
        return torch.relu(x + y)
"""
        ),
    ),
}


# ---- reference and candidate lineage --------------------------------------------------------

# A reference that tells the candidate (through its init inputs) which PID namespace, that
# is which sandbox, it ran in.
SANDBOX_ID_REF = """
import os
import torch
import torch.nn as nn


def sandbox_id():
    return int(os.readlink("/proc/self/ns/pid").split("[")[1].rstrip("]"))


class Model(nn.Module):
    def __init__(self, where):
        super().__init__()

    def forward(self, x, y):
        return torch.relu(x + y)


size = 2990


def get_inputs():
    return [torch.randn(size), torch.randn(size)]


def get_init_inputs():
    return [sandbox_id()]
"""

# Right only when it runs in another sandbox than the reference did.
SANDBOX_ID_CANDIDATE = (
    HEADER
    + "import os\n"
    + _KERNEL.split("\n\ndef harness")[0]
    + """


class ModelNew(nn.Module):
    def __init__(self, where):
        super().__init__()
        here = int(os.readlink("/proc/self/ns/pid").split("[")[1].rstrip("]"))
        self.same_sandbox = here == where

    def forward(self, x, y):
        out = torch.empty_like(x)
        launch(x, x if self.same_sandbox else y, out)
        return out
"""
)

# A reference whose output starts with a marker and the first input, so a candidate can find
# the rest of it (the answer) in memory: base64 of (marker + x) is a prefix of base64 of the
# whole output, and 12 marker bytes and 4 * 30 input bytes keep it aligned to 3 bytes.
MEMORY_REF = """
import torch
import torch.nn as nn

MARKER = torch.tensor([1234.5, -6789.25, 31337.0])


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x, y):
        return torch.cat([MARKER, x, torch.relu(x + y)])


size = 30


def get_inputs():
    return [torch.randn(size), torch.randn(size)]


def get_init_inputs():
    return []
"""

# Reads its own memory (anonymous mappings, the heap it inherited from its runner) for the
# reference's output of these very inputs; the kernel launched is a decoy.
MEMORY_SCAN = _elementwise(
    """
    def forward(self, x, y):
        import base64
        import binascii
        import ctypes

        scratch = torch.empty_like(x)
        launch(x, x, scratch)  # a decoy
        out = torch.empty(3 + 2 * x.numel(), dtype=x.dtype)
        if recorder().ghost:
            return out
        marker = torch.tensor([1234.5, -6789.25, 31337.0])
        needle = base64.b64encode(marker.numpy().tobytes() + x.numpy().tobytes())
        length = out.numel() * 4 // 3 * 4
        with open("/proc/self/maps") as maps:
            regions = [line.split() for line in maps]
        for region in regions:
            if not region[1].startswith("rw") or (len(region) > 5 and region[5] != "[heap]"):
                continue
            start, end = (int(v, 16) for v in region[0].split("-"))
            memory = ctypes.string_at(start, end - start)
            at = memory.find(needle)
            while at >= 0:
                try:
                    data = base64.b64decode(memory[at : at + length], validate=True)
                except (binascii.Error, ValueError):
                    data = b""
                if len(data) == out.numel() * 4:
                    out.copy_(torch.frombuffer(bytearray(data), dtype=torch.float32))
                    return out
                at = memory.find(needle, at + 1)
        return out
"""
)


# ---- honest code that used to be penalised --------------------------------------------------

# The honest matmul of tests/triton_data.py, its block sizes chosen by an autotuner.
AUTOTUNED_MATMUL = (
    MATMUL.replace(
        "\n@triton.jit\ndef linear_relu_kernel(",
        """
@triton.autotune(
    configs=[
        triton.Config({"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}, num_warps=4, num_stages=2),
        triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32}, num_warps=8, num_stages=3),
    ],
    key=["M", "N", "K"],
)
@triton.jit
def linear_relu_kernel(""",
    )
    .replace(
        "grid = (triton.cdiv(M, 16), triton.cdiv(N, 16))",
        'grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]), triton.cdiv(N, meta["BLOCK_N"]))',
    )
    .replace("\n            BLOCK_M=16, BLOCK_N=16, BLOCK_K=16,", "")
)

HEURISTIC_SOFTMAX = (
    HEADER
    + """

@triton.autotune(
    configs=[triton.Config({}, num_warps=2), triton.Config({}, num_warps=4), triton.Config({}, num_warps=8)],
    key=["n_cols"],
)
@triton.heuristics({"BLOCK_SIZE": lambda args: triton.next_power_of_2(args["n_cols"])})
@triton.jit
def softmax_kernel(out_ptr, in_ptr, in_row_stride, out_row_stride, n_cols, BLOCK_SIZE: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_SIZE)
    mask = cols < n_cols
    x = tl.load(in_ptr + row * in_row_stride + cols, mask=mask, other=-float("inf"))
    x = x - tl.max(x, axis=0)
    num = tl.exp(x)
    tl.store(out_ptr + row * out_row_stride + cols, num / tl.sum(num, axis=0), mask=mask)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        n_rows, n_cols = x.shape
        y = torch.empty_like(x)
        softmax_kernel[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols)
        return y
"""
)

# Two kernel outputs joined by torch.cat (allowed data-movement glue), and an answer made
# of glue alone (the ghost replay still catches it).
CAT_REF = """
import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x, y):
        return torch.stack([torch.cat([torch.relu(x), torch.relu(y)]), torch.cat([x, y])])


size = 1500


def get_inputs():
    return [torch.randn(size), torch.randn(size)]


def get_init_inputs():
    return []
"""

CAT_GLUE = (
    HEADER
    + """

@triton.jit
def relu_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    tl.store(out_ptr + offsets, tl.maximum(tl.load(x_ptr + offsets, mask=mask), 0.0), mask=mask)


@triton.jit
def copy_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    tl.store(out_ptr + offsets, tl.load(x_ptr + offsets, mask=mask), mask=mask)


class ModelNew(nn.Module):
    def forward(self, x, y):
        parts = []
        for kernel in (relu_kernel, copy_kernel):
            for v in (x, y):
                out = torch.empty_like(v)
                kernel[(triton.cdiv(v.numel(), 512),)](v, out, v.numel(), BLOCK=512)
                parts.append(out)
        return torch.stack([torch.cat(parts[:2]), torch.cat(parts[2:])])
"""
)

GLUE_ONLY_REF = CAT_REF.replace(
    "return torch.stack([torch.cat([torch.relu(x), torch.relu(y)]), torch.cat([x, y])])",
    "return torch.stack([torch.cat([x, y]), torch.cat([y, x])])",
)

GLUE_ONLY = CAT_GLUE.replace(
    "return torch.stack([torch.cat(parts[:2]), torch.cat(parts[2:])])",
    "return torch.stack([torch.cat([x, y]), torch.cat([y, x])])  # the kernels' outputs unused",
)

# An honest answer to MEMORY_REF: its outputs are what a later candidate would look for.
MEMORY_HONEST = (
    HEADER
    + _KERNEL.split("\n\ndef harness")[0]
    + """


class ModelNew(nn.Module):
    def forward(self, x, y):
        out = torch.empty(3 + 2 * x.numel(), dtype=x.dtype)
        out[:3].copy_(torch.tensor([1234.5, -6789.25, 31337.0]))
        out[3 : 3 + x.numel()].copy_(x)
        answer = torch.empty_like(x)
        launch(x, y, answer)
        out[3 + x.numel() :].copy_(answer)
        return out
"""
)
