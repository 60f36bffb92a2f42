"""Static checks on Triton candidates: honest solutions stay clean, each cheat is caught by its rule.

Pure AST analysis: nothing here needs torch or triton installed, and no candidate runs. The
tests with the `client` fixture send candidates the checks reject through real gRPC (both
backends): nothing reaches a sandbox, but the whole request path answers for them.
"""

from __future__ import annotations

import random
import textwrap

import pytest

from rewards.model import Finding, Severity
from sandbox.api import pb
from sandbox.api.completions import extract_code
from sandbox.triton.samples import PROBLEMS
from sandbox.triton.static_checks import CandidateSyntaxError, check_triton
from tests.helpers import finding_codes, status_name
from tests.triton_data import DYNAMIC_CHEATS, HONEST_SHAPES, HOSTILE, STATIC_CHEATS
from trainer_plugin.client import SandboxClient


def critical(code: str, **kwargs: str) -> list[Finding]:
    return [f for f in check_triton(textwrap.dedent(code), **kwargs) if f.severity is Severity.CRITICAL]


def codes(code: str, **kwargs: str) -> set[str]:
    return {f.code for f in critical(code, **kwargs)}


# ---- honest candidates ------------------------------------------------------------------

ADD_RELU = """
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def add_relu_kernel(x_ptr, y_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, tl.maximum(x + y, 0.0), mask=mask)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        y = y.contiguous()
        out = torch.empty_like(x)
        n_elements = out.numel()
        grid = lambda meta: (triton.cdiv(n_elements, meta["BLOCK_SIZE"]),)
        add_relu_kernel[grid](x, y, out, n_elements, BLOCK_SIZE=1024)
        return out
"""

SOFTMAX = """
import torch
import torch.nn as nn
import triton
import triton.language as tl


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
        BLOCK_SIZE = triton.next_power_of_2(n_cols)
        num_warps = 4
        if BLOCK_SIZE >= 2048:
            num_warps = 8
        if BLOCK_SIZE >= 4096:
            num_warps = 16
        y = torch.empty_like(x)
        softmax_kernel[(n_rows,)](
            y, x, x.stride(0), y.stride(0), n_cols, BLOCK_SIZE=BLOCK_SIZE, num_warps=num_warps
        )
        return y
"""

ROW_SUM = """
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def row_sum_kernel(x_ptr, out_ptr, n_cols, stride, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        acc += tl.load(x_ptr + row * stride + cols, mask=cols < n_cols, other=0.0)
    tl.store(out_ptr + row, tl.sum(acc, axis=0))


class ModelNew(nn.Module):
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).contiguous()
        n_rows, n_cols = x2.shape
        out = torch.empty(n_rows, device=x.device, dtype=torch.float32)
        block = min(1024, triton.next_power_of_2(n_cols))
        row_sum_kernel[(n_rows,)](x2, out, n_cols, x2.stride(0), BLOCK=block)
        return out.view(*shape[:-1]).to(x.dtype)
"""

MATMUL_BIAS_RELU = """
import math

import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.autotune(
    configs=[
        triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32}, num_warps=8, num_stages=3),
        triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=4, num_stages=4),
    ],
    key=["M", "N", "K"],
)
@triton.jit
def matmul_bias_relu_kernel(
    a_ptr, b_ptr, bias_ptr, c_ptr, M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        a = tl.load(a_ptrs, mask=offs_k[None, :] < K - k * BLOCK_K, other=0.0)
        b = tl.load(b_ptrs, mask=offs_k[:, None] < K - k * BLOCK_K, other=0.0)
        acc = tl.dot(a, b, acc)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    bias = tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0)
    acc = tl.maximum(acc + bias[None, :], 0.0)
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, acc, mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


def matmul_bias_relu(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    M, K = a.shape
    N = w.shape[0]
    c = torch.empty((M, N), device=a.device, dtype=a.dtype)
    grid = lambda META: (triton.cdiv(M, META["BLOCK_M"]), triton.cdiv(N, META["BLOCK_N"]))
    matmul_bias_relu_kernel[grid](
        a, w, bias, c, M, N, K,
        a.stride(0), a.stride(1), w.stride(1), w.stride(0), c.stride(0), c.stride(1),
    )
    return c


class ModelNew(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x):
        if x.dim() != 2:
            x = x.reshape(-1, x.shape[-1])
        assert x.shape[1] == self.weight.shape[1]
        return matmul_bias_relu(x.contiguous(), self.linear.weight, self.linear.bias)
"""

# A common variant: kernels launched from an autograd Function, a method helper, `from triton import jit`.
AUTOGRAD_FUNCTION = """
import torch
from torch import nn
import triton as tr
import triton.language as tl
from triton import jit


@jit
def scale_kernel(x_ptr, out_ptr, n, scale, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=m) * scale, mask=m)


@tr.jit
def unused_helper(x):
    return x * 2


_BLOCKS = [256, 512, 1024]


class _Scale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        out = torch.empty_like(x)
        n = x.numel()
        block = _BLOCKS[-1] if n > 1 << 20 else _BLOCKS[0]
        scale_kernel[(tr.cdiv(n, block),)](x, out, n, scale, BLOCK=block)
        return out


class ModelNew(nn.Module):
    def __init__(self, scale: float = 2.0):
        super().__init__()
        self.scale = scale

    def _run(self, x):
        return _Scale.apply(x.contiguous(), self.scale)

    def forward(self, x, *, scale: float = 1.0):
        y = self._run(x)
        return y.view(x.shape)
"""

HONEST = {
    "add_relu": ADD_RELU,
    "softmax": SOFTMAX,
    "row_sum": ROW_SUM,
    "matmul_bias_relu": MATMUL_BIAS_RELU,
    "autograd_function": AUTOGRAD_FUNCTION,
}


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_candidates_have_no_critical_finding(name: str) -> None:
    assert critical(HONEST[name]) == []


def test_honest_candidate_inside_a_markdown_answer() -> None:
    completion = f"Here is my solution.\n\n```python\n{MATMUL_BIAS_RELU}```\n\nIt fuses the bias and ReLU."
    code = extract_code(completion)
    assert "class ModelNew" in code
    assert critical(code) == []


# ---- cheats: one per rule -------------------------------------------------------------

KERNEL = """
import torch
import torch.nn as nn
import torch.nn.functional as F
import triton
import triton.language as tl


@triton.jit
def copy_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)
"""


def with_kernel(model: str) -> str:
    return KERNEL + textwrap.dedent(model)


CHEATS = {
    "decoy_launch_then_torch_matmul": (
        "torch_compute_in_forward",
        "torch.matmul(a, b)",
        with_kernel("""
        class ModelNew(nn.Module):
            def forward(self, a, b):
                out = torch.empty_like(a)
                copy_kernel[(1,)](a, out, a.numel(), BLOCK=1024)
                return torch.matmul(a, b)
        """),
    ),
    "functional_relu": (
        "torch_compute_in_forward",
        "F.relu(out)",
        with_kernel("""
        class ModelNew(nn.Module):
            def forward(self, x):
                out = torch.empty_like(x)
                copy_kernel[(triton.cdiv(x.numel(), 1024),)](x, out, x.numel(), BLOCK=1024)
                return F.relu(out)
        """),
    ),
    "matmul_operator": (
        "torch_compute_in_forward",
        "x @ self.weight.t()",
        with_kernel("""
        class ModelNew(nn.Module):
            def __init__(self, n):
                super().__init__()
                self.weight = nn.Parameter(torch.randn(n, n))

            def forward(self, x):
                copy_kernel[(1,)](x, x, 0, BLOCK=16)
                return x @ self.weight.t()
        """),
    ),
    "tensor_method_in_helper": (
        "torch_compute_in_forward",
        "y.softmax(dim=-1)",
        with_kernel("""
        def _finish(y):
            return y.softmax(dim=-1)

        class ModelNew(nn.Module):
            def forward(self, x):
                out = torch.empty_like(x)
                copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
                return _finish(out)
        """),
    ),
    "tensor_arithmetic": (
        "torch_compute_in_forward",
        "out + self.bias",
        with_kernel("""
        class ModelNew(nn.Module):
            def __init__(self, n):
                super().__init__()
                self.bias = nn.Parameter(torch.zeros(n))

            def forward(self, x):
                out = torch.empty_like(x)
                copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
                return out + self.bias
        """),
    ),
    "calls_nn_module": (
        "torch_compute_in_forward",
        "self.linear(x)",
        with_kernel("""
        class ModelNew(nn.Module):
            def __init__(self, n):
                super().__init__()
                self.linear = nn.Linear(n, n)

            def forward(self, x):
                y = self.linear(x)
                out = torch.empty_like(y)
                copy_kernel[(1,)](y, out, y.numel(), BLOCK=1024)
                return out
        """),
    ),
    "cpu_branch_fallback": (
        "torch_compute_in_forward",
        "torch.relu(x)",
        with_kernel("""
        class ModelNew(nn.Module):
            def forward(self, x):
                if not x.is_cuda:
                    return torch.relu(x)
                out = torch.empty_like(x)
                copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
                return out
        """),
    ),
    "torch_compile": (
        "forbidden_construct",
        "torch.compile(self.forward)",
        with_kernel("""
        class ModelNew(nn.Module):
            def __init__(self):
                super().__init__()
                self.fast = torch.compile(self.forward)

            def forward(self, x):
                out = torch.empty_like(x)
                copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
                return out
        """),
    ),
    "patches_timer": (
        "forbidden_construct",
        "time.perf_counter = lambda: 0",
        with_kernel("""
        import time
        time.perf_counter = lambda: 0

        class ModelNew(nn.Module):
            def forward(self, x):
                out = torch.empty_like(x)
                copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
                return out
        """),
    ),
    "patches_allclose": (
        "forbidden_construct",
        'setattr(torch, "allclose", lambda *a, **k: True)',
        with_kernel("""
        setattr(torch, "allclose", lambda *a, **k: True)

        class ModelNew(nn.Module):
            def forward(self, x):
                out = torch.empty_like(x)
                copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
                return out
        """),
    ),
    "side_stream": (
        "forbidden_construct",
        "torch.cuda.Stream()",
        with_kernel("""
        class ModelNew(nn.Module):
            def forward(self, x):
                out = torch.empty_like(x)
                with torch.cuda.stream(torch.cuda.Stream()):
                    copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
                return out
        """),
    ),
    "thread_import": (
        "forbidden_construct",
        "from concurrent.futures import ThreadPoolExecutor",
        with_kernel("""
        from concurrent.futures import ThreadPoolExecutor

        class ModelNew(nn.Module):
            def forward(self, x):
                out = torch.empty_like(x)
                copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
                return out
        """),
    ),
    "eval_hides_code": (
        "forbidden_construct",
        'eval("torch.tanh")',
        with_kernel("""
        class ModelNew(nn.Module):
            def forward(self, x):
                out = torch.empty_like(x)
                copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
                return eval("torch.tanh")(out)
        """),
    ),
    "try_except_fallback": (
        "fallback_path",
        "try:",
        with_kernel("""
        class ModelNew(nn.Module):
            def forward(self, x):
                out = torch.empty_like(x)
                try:
                    copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
                except Exception:
                    return torch.softmax(x, dim=-1)
                return out
        """),
    ),
    "module_level_dict_cache": (
        "module_level_cache",
        "_cache",
        with_kernel("""
        _cache = {}

        class ModelNew(nn.Module):
            def forward(self, x):
                key = x.data_ptr()
                if key in _cache:
                    return _cache[key]
                out = torch.empty_like(x)
                copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
                _cache[key] = out
                return out
        """),
    ),
    "lru_cache": (
        "module_level_cache",
        "functools.lru_cache",
        with_kernel("""
        import functools

        @functools.lru_cache(maxsize=None)
        def _launch(x):
            out = torch.empty_like(x)
            copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
            return out

        class ModelNew(nn.Module):
            def forward(self, x):
                return _launch(x)
        """),
    ),
    "subclasses_model": (
        "reference_access",
        "Model",
        with_kernel("""
        from reference import Model

        class ModelNew(Model):
            def forward(self, x):
                out = torch.empty_like(x)
                copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
                return super().forward(x)
        """),
    ),
    "reads_get_inputs": (
        "reference_access",
        "get_inputs()",
        with_kernel("""
        class ModelNew(nn.Module):
            def forward(self, x):
                inputs = get_inputs()
                out = torch.empty_like(x)
                copy_kernel[(1,)](inputs[0], out, x.numel(), BLOCK=1024)
                return out
        """),
    ),
    "kernel_never_launched": (
        "kernel_not_launched",
        "def forward",
        with_kernel("""
        class ModelNew(nn.Module):
            def forward(self, x):
                return torch.clone(x)
        """),
    ),
    "no_model_new": (
        "kernel_not_launched",
        "",
        with_kernel("""
        class Model(nn.Module):
            def forward(self, x):
                out = torch.empty_like(x)
                copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
                return out
        """),
    ),
    "no_triton_at_all": (
        "no_triton_kernel",
        "",
        """
        import torch
        import torch.nn as nn

        class ModelNew(nn.Module):
            def forward(self, x):
                return torch.relu(x)
        """,
    ),
}


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_each_cheat_is_caught_by_its_rule(name: str) -> None:
    code, evidence, candidate = CHEATS[name]
    findings = critical(candidate)
    assert code in {f.code for f in findings}, findings
    assert any(f.code == code and evidence in f.evidence for f in findings), findings


# ---- finer points of each rule ----------------------------------------------------------


def test_kernel_recognised_through_aliases_and_autotune() -> None:
    for header in (
        "import triton\n@triton.jit",
        "import triton as tr\n@tr.jit",
        "from triton import jit\n@jit",
        "import triton\n@triton.autotune(configs=[], key=['n'])\n@triton.jit",
        "import triton\n@triton.jit(do_not_specialize=['n'])",
    ):
        code = header + "\ndef k(x_ptr, n):\n    pass\n"
        assert "no_triton_kernel" not in codes(code), header
    assert "no_triton_kernel" in codes("import triton\ndef k(x_ptr, n):\n    pass\n")
    assert "no_triton_kernel" in codes("import numba\n@numba.jit\ndef k(x):\n    pass\n")


def test_launch_found_through_methods_and_helpers_but_not_init() -> None:
    launched_in_method = with_kernel("""
    class ModelNew(nn.Module):
        def _go(self, x, out):
            copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)

        def forward(self, x):
            out = torch.empty_like(x)
            self._go(x, out)
            return out
    """)
    assert critical(launched_in_method) == []
    launched_in_init_only = with_kernel("""
    class ModelNew(nn.Module):
        def __init__(self):
            super().__init__()
            x = torch.zeros(4)
            copy_kernel[(1,)](x, x, 4, BLOCK=4)

        def forward(self, x):
            return x.view(-1)
    """)
    assert "kernel_not_launched" in codes(launched_in_init_only)
    called_without_grid = with_kernel("""
    class ModelNew(nn.Module):
        def forward(self, x):
            out = torch.empty_like(x)
            copy_kernel(x, out, x.numel(), BLOCK=1024)
            return out
    """)
    assert "kernel_not_launched" in codes(called_without_grid)


def test_python_int_arithmetic_is_not_tensor_compute() -> None:
    candidate = with_kernel("""
    class ModelNew(nn.Module):
        def forward(self, x, dim: int = -1):
            n = x.numel()
            rows = x.shape[0] * 2 // 2
            cols = x.size(-1) + 0
            block = max(16, triton.next_power_of_2(cols)) * 1
            grid = ((n + block - 1) // block,)
            if n % block == 0 and rows > 0 and x.shape[-1] == cols:
                grid = (-(-n // block),)
            out = torch.empty(rows, cols, device=x.device, dtype=x.dtype)
            seen = set()
            seen.add(n)
            copy_kernel[grid](x, out, n, BLOCK=block)
            return out
    """)
    assert critical(candidate) == []


@pytest.mark.parametrize(
    "expr",
    [
        "torch.sum(out, dim=-1)",
        "out.sum(-1)",
        "out.mean()",
        "out.exp()",
        "torch.bmm(out, out)",
        "torch.addmm(out, out, out)",
        "F.softmax(out, dim=-1)",
        "F.conv2d(out, out)",
        "torch.nn.functional.gelu(out)",
        "out * 2",
        "-out",
        "(out > 0)",
        "torch.where(out > 0, out, 0)",
        "nn.ReLU()(out)",
        "sum([out, out])",
        "out.__matmul__(out)",
        "getattr(torch, 'matmul')(out, out)",
    ],
)
def test_torch_compute_forms_are_flagged(expr: str) -> None:
    candidate = with_kernel(f"""
    class ModelNew(nn.Module):
        def forward(self, x):
            out = torch.empty_like(x)
            copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
            return {expr}
    """)
    assert "torch_compute_in_forward" in codes(candidate), expr


def test_torch_compute_outside_forward_is_allowed() -> None:
    candidate = with_kernel("""
    def reference_check(x):
        return torch.relu(x)

    class ModelNew(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(n, n) * 0.02)

        def forward(self, x):
            out = torch.empty_like(x)
            copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
            return out
    """)
    assert critical(candidate) == []


def test_aliased_torch_op_and_helper_module_are_followed() -> None:
    aliased = with_kernel("""
    _mm = torch.matmul

    class ModelNew(nn.Module):
        def forward(self, a, b):
            out = torch.empty_like(a)
            copy_kernel[(1,)](a, out, a.numel(), BLOCK=1024)
            return _mm(out, b)
    """)
    assert "torch_compute_in_forward" in codes(aliased)
    helper_module = with_kernel("""
    class Inner(nn.Module):
        def forward(self, x):
            out = torch.empty_like(x)
            copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
            return torch.tanh(out)

    class ModelNew(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Inner()

        def forward(self, x):
            return self.inner(x)
    """)
    found = critical(helper_module)
    assert {f.code for f in found} == {"torch_compute_in_forward"}
    assert any("torch.tanh" in f.evidence for f in found)


def test_forbidden_constructs() -> None:
    for snippet in (
        "import torch._dynamo",
        "from torch._inductor import config",
        "import threading",
        "import multiprocessing as mp",
        "import gc",
        "import ctypes",
        "import importlib",
        "import subprocess",
        "import os\nos.system('nvidia-smi')",
        "triton.testing.do_bench = lambda *a, **k: 0.001",
        "torch.allclose = lambda *a, **k: True",
        "import triton.testing as tt\ntt.do_bench = None",
        "g = torch.cuda.CUDAGraph()",
        "__import__('os')",
        "exec('x = 1')",
        "compile('1', 'f', 'eval')",
        "f = getattr(torch, 'compile')",
    ):
        assert "forbidden_construct" in codes(KERNEL + snippet + "\n"), snippet


def test_patch_check_follows_only_the_target_spine() -> None:
    candidate = with_kernel("""
    import time

    class ModelNew(nn.Module):
        def forward(self, x):
            out = torch.empty_like(x)
            out[torch.arange(0, 1)] = 0
            self.last = time.time()
            copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
            return out
    """)
    assert "forbidden_construct" not in codes(candidate)


def test_fallback_rule_spares_reraise_and_setup() -> None:
    reraise = with_kernel("""
    class ModelNew(nn.Module):
        def __init__(self):
            super().__init__()
            try:
                self.sms = torch.cuda.get_device_properties(0).multi_processor_count
            except Exception:
                self.sms = 108

        def forward(self, x):
            out = torch.empty_like(x)
            try:
                copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
            except RuntimeError as exc:
                raise RuntimeError("kernel failed") from exc
            return out
    """)
    assert critical(reraise) == []
    swallow = with_kernel("""
    import contextlib

    class ModelNew(nn.Module):
        def forward(self, x):
            out = torch.empty_like(x)
            with contextlib.suppress(Exception):
                copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
            return out
    """)
    assert "fallback_path" in codes(swallow)


def test_cache_rules() -> None:
    global_stmt = with_kernel("""
    _last = None

    class ModelNew(nn.Module):
        def forward(self, x):
            global _last
            if _last is None:
                _last = torch.empty_like(x)
                copy_kernel[(1,)](x, _last, x.numel(), BLOCK=1024)
            return _last
    """)
    assert "module_level_cache" in codes(global_stmt)
    instance_cache = with_kernel("""
    class ModelNew(nn.Module):
        def __init__(self):
            super().__init__()
            self._memo = {}

        def forward(self, x):
            out = torch.empty_like(x)
            copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
            self._memo[x.data_ptr()] = out
            return out
    """)
    assert "module_level_cache" in codes(instance_cache)
    read_only_config = with_kernel("""
    _BLOCKS = {"small": 256, "large": 1024}

    class ModelNew(nn.Module):
        def forward(self, x):
            out = torch.empty_like(x)
            block = _BLOCKS["large"] if x.numel() > 4096 else _BLOCKS["small"]
            copy_kernel[(triton.cdiv(x.numel(), block),)](x, out, x.numel(), BLOCK=block)
            return out
    """)
    assert critical(read_only_config) == []


def test_reference_rules() -> None:
    uses_model = with_kernel("""
    class ModelNew(nn.Module):
        def __init__(self):
            super().__init__()
            self.ref = Model()

        def forward(self, x):
            out = torch.empty_like(x)
            copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
            return out
    """)
    assert "reference_access" in codes(uses_model)
    named_module = with_kernel("""
    import task_42_ref as r

    class ModelNew(nn.Module):
        def forward(self, x):
            out = torch.empty_like(x)
            copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
            return out
    """)
    assert "reference_access" in codes(named_module, reference_module="task_42_ref")
    assert "reference_access" not in codes(named_module)
    main_module = KERNEL + "import __main__\n"
    assert "reference_access" in codes(main_module)


def test_module_level_get_inputs_copy_is_fine() -> None:
    candidate = ADD_RELU + textwrap.dedent("""

        def get_inputs():
            return [torch.randn(8), torch.randn(8)]


        def get_init_inputs():
            return []
    """)
    assert critical(candidate) == []


def test_findings_carry_evidence_and_messages() -> None:
    _, _, candidate = CHEATS["decoy_launch_then_torch_matmul"]
    (finding,) = critical(candidate)
    assert finding.code == "torch_compute_in_forward"
    assert finding.evidence == "line 18: torch.matmul(a, b)"
    assert "torch.matmul" in finding.message


def test_syntax_error() -> None:
    with pytest.raises(CandidateSyntaxError):
        check_triton("class ModelNew(:\n")


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("```python\na = 1\n```\ntext\n```python\nb = 2\n```", "b = 2\n"),
        ("```py\na = 1\n```", "a = 1\n"),
        ("```\na = 1\n```", "a = 1\n"),
        ("```python\na = 1\n```\n```bash\npip install triton\n```", "a = 1\n"),
        ("no fences at all", "no fences at all"),
        ("```python\na = 1\nb = 2", "a = 1\nb = 2\n"),  # cut off by the token limit
    ],
)
def test_extract_code(completion: str, expected: str) -> None:
    assert extract_code(completion) == expected


def test_kernel_held_in_self_counts_as_launched() -> None:
    candidate = with_kernel("""
    class ModelNew(nn.Module):
        def __init__(self):
            super().__init__()
            self.kernel = copy_kernel

        def forward(self, x):
            out = torch.empty_like(x)
            self.kernel[(1,)](x, out, x.numel(), BLOCK=1024)
            return out
    """)
    assert critical(candidate) == []


@pytest.mark.parametrize(
    ("setup", "use"),
    [
        ("self.act = F.gelu", "self.act(out)"),
        ("self.layers = nn.ModuleList([nn.Linear(4, 4)])", "[layer(out) for layer in self.layers][0]"),
        ("self.layers = nn.ModuleList([nn.Linear(4, 4)])", "self.layers[0](out)"),
        ("self.n = 1", "functools.partial(torch.matmul, out)(out)"),
        ("self.n = 1", "_launch(out) * 0.5"),
    ],
)
def test_torch_ops_reached_indirectly_are_flagged(setup: str, use: str) -> None:
    candidate = with_kernel(f"""
    import functools

    def _launch(x):
        out = torch.empty_like(x)
        copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
        return out

    class ModelNew(nn.Module):
        def __init__(self):
            super().__init__()
            {setup}

        def forward(self, x):
            out = _launch(x)
            return {use}
    """)
    assert "torch_compute_in_forward" in codes(candidate), use


# ---- robustness: a candidate the checker cannot analyse is that candidate's REJECTED -----

DEEP_FORWARD = with_kernel("""
class ModelNew(nn.Module):
    def forward(self, x):
        out = torch.empty_like(x)
        copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
        y = {expr}
        return out
""")

DEEP_CANDIDATES = {
    "sum_600_at_module_level": KERNEL + "x = " + " + ".join(["1"] * 600) + "\n",
    "sum_600_in_forward": DEEP_FORWARD.replace("{expr}", " + ".join(["out"] * 600)),
    "attribute_chain_600": DEEP_FORWARD.replace("{expr}", "x" + ".T" * 600),
    "call_chain_600": DEEP_FORWARD.replace("{expr}", "x" + ".contiguous()" * 600),
    "nested_lists_150": DEEP_FORWARD.replace("{expr}", "[" * 150 + "]" * 150),
    "unary_chain_3000": DEEP_FORWARD.replace("{expr}", "-" * 3000 + "out"),
}


DEEP_REFERENCE = """
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return x


def get_inputs():
    return [torch.randn(8)]


def get_init_inputs():
    return []
"""


def triton_task(task_id: str, reference: str, code: str) -> pb.Task:
    return pb.Task(id=task_id, language=pb.TRITON, code=code, triton=pb.TritonSpec(reference=reference, trials=1))


def test_deep_candidates_are_rejected_as_unanalyzable_one_by_one(client: SandboxClient) -> None:
    """A batch of candidates that overflow a recursive checker: each is REJECTED, the batch answers."""
    tasks = [triton_task(name, DEEP_REFERENCE, code) for name, code in DEEP_CANDIDATES.items()]
    tasks.append(
        triton_task("too_many_parentheses", DEEP_REFERENCE, DEEP_FORWARD.replace("{expr}", "(" * 300 + "x" + ")" * 300))
    )
    results = {r.id: r for r in client.score_batch(tasks)}
    for name in DEEP_CANDIDATES:
        assert status_name(results[name]) == "REJECTED", (name, results[name].message)
        assert "unanalyzable" in finding_codes(results[name]), name
        assert results[name].score == 0
    # Python itself refuses 300 nested parentheses: the candidate could not be imported either
    assert status_name(results["too_many_parentheses"]) == "SYNTAX_ERROR"


@pytest.mark.parametrize("name", sorted(DEEP_CANDIDATES))
def test_deep_candidates_never_raise(name: str) -> None:
    findings = critical(DEEP_CANDIDATES[name])
    assert "unanalyzable" in {f.code for f in findings}, findings


# ---- the allow-list: more honest shapes, and what it rejects ---------------------------------


@pytest.mark.parametrize("name", sorted(HONEST_SHAPES))
def test_more_honest_shapes_have_no_critical_finding(name: str) -> None:
    assert critical(HONEST_SHAPES[name][1]) == []


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_end_to_end_solutions_have_no_critical_finding(name: str) -> None:
    assert critical(PROBLEMS[name][1]) == []


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_shapes_are_rejected_with_their_code(name: str) -> None:
    """Each computes relu(x + y), or keeps state, where the deny-list before the allow-list never looked."""
    code, candidate = HOSTILE[name]
    findings = critical(candidate)
    assert code in {f.code for f in findings}, findings
    assert all(f.evidence.startswith("line ") for f in findings if f.code == code), findings


def test_hostile_battery_is_rejected_before_running(client: SandboxClient) -> None:
    tasks = [triton_task(f"hostile-{name}", DEEP_REFERENCE, code) for name, (_, code) in HOSTILE.items()]
    results = {r.id: r for r in client.score_batch(tasks)}
    for name, (code, _) in HOSTILE.items():
        result = results[f"hostile-{name}"]
        assert status_name(result) == "REJECTED", (name, result.message)
        assert code in finding_codes(result), name
        assert result.score == 0 and list(result.tests) == []


def test_torch_cat_and_stack_of_kernel_outputs_are_allowed_glue() -> None:
    """Decided for issue 11: cat and stack move data; an answer made by glue alone fails the ghost replay."""
    for glue in ("torch.cat([out, out], dim=0)", "torch.stack((out, out))", "torch.cat([out.view(-1), x.view(-1)])"):
        candidate = with_kernel(f"""
        class ModelNew(nn.Module):
            def forward(self, x):
                out = torch.empty_like(x)
                copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
                return {glue}
        """)
        assert critical(candidate) == [], glue


@pytest.mark.parametrize(
    "statement",
    [
        "self.calls += 1",
        "self.last = out",
        "self.buffer.copy_(out)",
        "self.buffer[0] = 1.0",
        "self.history.append(out)",
        "self.buffer.zero_()",
    ],
)
def test_state_written_from_forward_is_a_cache(statement: str) -> None:
    candidate = with_kernel(f"""
    class ModelNew(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0
            self.last = None
            self.history = []
            self.register_buffer("buffer", torch.zeros(4))

        def forward(self, x):
            out = torch.empty_like(x)
            copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
            {statement}
            return out
    """)
    assert "module_level_cache" in codes(candidate), statement


@pytest.mark.parametrize(
    ("where", "statement"),
    [
        ("forward", "w = torch.randn(4)"),
        ("forward", "w = nn.Linear(4, 4)"),
        ("forward", "w = nn.Parameter(out)"),
        ("forward", "w = out.normal_()"),
        ("module", "W = torch.randn(4)"),
        ("module", "W = torch.empty(4)"),
        ("module", "torch.manual_seed(0)"),
    ],
)
def test_parameters_are_built_in_init_only(where: str, statement: str) -> None:
    forward = f"\n            {statement}" if where == "forward" else ""
    candidate = with_kernel(f"""
    {statement if where == "module" else ""}

    class ModelNew(nn.Module):
        def forward(self, x):
            out = torch.empty_like(x)
            copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024){forward}
            return out
    """)
    assert codes(candidate) & {"not_allowlisted", "torch_compute_in_forward"}, statement


@pytest.mark.parametrize(
    "expr",
    [
        "x.__class__",
        "x.__dict__",
        "self.forward.__globals__",
        "copy_kernel.__code__",
        "type.__subclasses__(type)",
        "__builtins__",
        "vars(self)",
        "globals()",
        "locals()",
        "dir(torch)",
    ],
)
def test_introspection_is_rejected(expr: str) -> None:
    candidate = with_kernel(f"""
    class ModelNew(nn.Module):
        def forward(self, x):
            out = torch.empty_like(x)
            copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
            probe = {expr}
            return out
    """)
    assert "introspection" in codes(candidate), expr


@pytest.mark.parametrize(
    "header",
    [
        "import numpy as np",
        "import functools",
        "import operator",
        "import os",
        "import torch.utils.data",
        "from torch import *",
        "from . import helpers",
    ],
)
def test_imports_outside_the_allow_list_are_rejected(header: str) -> None:
    assert "not_allowlisted" in codes(KERNEL + header + "\n")


def test_allowed_imports_and_names_are_accepted() -> None:
    candidate = """
    from __future__ import annotations

    import math
    from typing import Optional

    import torch
    import torch.nn.functional as F
    from torch import Tensor, nn
    import triton
    from triton import cdiv
    import triton.language as tl
    from triton.language.extra import libdevice


    @triton.jit
    def tanh_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < n
        tl.store(out_ptr + offsets, libdevice.tanh(tl.load(x_ptr + offsets, mask=mask)), mask=mask)


    class ModelNew(nn.Module):
        def forward(self, x: Tensor, scale: Optional[float] = None) -> Tensor:
            out = torch.empty_like(x, dtype=torch.float32)
            block = max(128, 2 ** math.ceil(math.log2(64)))
            tanh_kernel[(cdiv(x.numel(), block),)](x, out, x.numel(), BLOCK=block)
            return out.to(x.dtype)


    if __name__ == "__main__":
        print(ModelNew()(torch.randn(8)))
    """
    assert critical(candidate) == []


@pytest.mark.parametrize(
    "body",
    [
        "out_ptr.copy_(x_ptr)",
        "tl.store(out_ptr, F.relu(tl.load(x_ptr)))",
        "tl.store(out_ptr, ModelNew)",
        "tl.store(out_ptr, [v for v in range(4)])",
        "tl.store(out_ptr, (lambda v: v)(x_ptr))",
        "tl.store(out_ptr, x_ptr.__class__)",
        "tl.store(out_ptr, open('/etc/passwd'))",
    ],
)
def test_kernel_bodies_may_use_only_triton(body: str) -> None:
    candidate = f"""
import torch
import torch.nn as nn
import torch.nn.functional as F
import triton
import triton.language as tl


@triton.jit
def k(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    {body}


class ModelNew(nn.Module):
    def forward(self, x):
        out = torch.empty_like(x)
        k[(1,)](x, out, x.numel(), BLOCK=16)
        return out
"""
    assert codes(candidate) & {"not_allowlisted", "introspection"}, body


@pytest.mark.parametrize(
    "grid",
    [
        "x",  # a tensor
        "lambda meta: x",
        "lambda meta: (x.sum(),)",
        "lambda: (1,)",
        "lambda meta, extra=x: (1,)",
        "(x.numel(), out)",
    ],
)
def test_grids_are_tuples_of_ints_or_lambdas_over_meta(grid: str) -> None:
    candidate = with_kernel(f"""
    class ModelNew(nn.Module):
        def forward(self, x):
            out = torch.empty_like(x)
            copy_kernel[{grid}](x, out, x.numel(), BLOCK=1024)
            return out
    """)
    assert critical(candidate), grid


def test_a_checker_failure_is_the_candidates_unanalyzable(monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox.triton import static_checks

    def broken(code: str, reference_module: str) -> list[Finding]:
        raise KeyError("a bug in the checker")

    monkeypatch.setattr(static_checks, "analyse", broken)
    (finding,) = check_triton(ADD_RELU)
    assert (finding.code, finding.severity) == ("unanalyzable", Severity.CRITICAL)


def test_call_chains_deeper_than_the_bound_are_unanalyzable() -> None:
    helpers = "".join(f"def step{i}(v):\n    return step{i + 1}(v)\n\n" for i in range(40))
    model = """
    def step40(v):
        return v

    class ModelNew(nn.Module):
        def forward(self, x):
            out = torch.empty_like(x)
            copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
            return step0(out)
    """
    assert "unanalyzable" in codes(KERNEL + helpers + textwrap.dedent(model))


def test_mutated_candidates_never_raise() -> None:
    """Lines spliced, dropped and renamed across every candidate here: findings or a syntax error, nothing else."""
    pool = [c for _, c in HONEST_SHAPES.values()] + [c for _, c in HOSTILE.values()]
    pool += [*HONEST.values(), *STATIC_CHEATS.values(), *DYNAMIC_CHEATS.values()]
    rng = random.Random(11)
    for _ in range(400):
        lines = rng.choice(pool).splitlines()
        other = rng.choice(pool).splitlines()
        at = rng.randrange(len(lines))
        choice = rng.randrange(3)
        if choice == 0:
            lines[at:at] = other[rng.randrange(len(other)) :][: rng.randrange(1, 6)]
        elif choice == 1:
            del lines[at : at + rng.randrange(1, 4)]
        else:
            old, new = rng.choice(["x", "out", "self", "torch", "tl"]), rng.choice(["y", "self", "torch.Tensor", "[]"])
            lines[at] = lines[at].replace(old, new)
        try:
            findings = check_triton("\n".join(lines) + "\n")
        except CandidateSyntaxError:
            continue
        assert not any(f.code == "unanalyzable" and "failed" in f.message for f in findings), lines


@pytest.mark.parametrize(
    "statement",
    [
        "_TABLE = _helper()",
        "_MODEL = ModelNew()",
        "copy_kernel[(1,)](None, None, 0, BLOCK=1)",
        "_HOOK = lambda meta: (1,)",
        "for _ in range(3):\n    pass",
        "with torch.no_grad():\n    pass",
        "del F",
        "if True:\n    _X = 1",
        "torch.backends.cuda.matmul.allow_tf32 = True",
    ],
)
def test_nothing_of_the_candidate_runs_at_import_time(statement: str) -> None:
    candidate = with_kernel("""
    def _helper():
        return [1, 2]

    class ModelNew(nn.Module):
        def forward(self, x):
            out = torch.empty_like(x)
            copy_kernel[(1,)](x, out, x.numel(), BLOCK=1024)
            return out
    """)
    assert codes(candidate + statement + "\n") & {"not_allowlisted", "forbidden_construct"}, statement
    assert critical(candidate) == []
