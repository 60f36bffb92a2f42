"""Triton candidates the tests need beyond the sample problems (`sandbox/triton/samples.py`).

HONEST_SHAPES are more honest solutions (each checked against its reference in Triton's
interpreter when written) that the static allow-list must accept; HOSTILE are cheats it
must reject, with the finding code expected.
"""

from __future__ import annotations

from sandbox.triton.samples import HEADER, SOFTMAX_REF

# ---- cheating candidates for the elementwise problem (relu(x + y)) -------------------------

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
"""


def _elementwise(forward: str, extra: str = "") -> str:
    return HEADER + extra + _KERNEL + "\n\nclass ModelNew(nn.Module):\n" + forward


# Caught before running, by the static checks (finding code -> candidate).
STATIC_CHEATS = {
    "torch_compute_in_forward": _elementwise(
        """
    def forward(self, x, y):
        scratch = torch.empty_like(x)
        launch(x, y, scratch)  # a decoy launch
        return torch.relu(x + y)
"""
    ),
    "no_triton_kernel": HEADER
    + """

class ModelNew(nn.Module):
    def forward(self, x, y):
        return torch.relu(x + y)
""",
    "kernel_not_launched": _elementwise(
        """
    def forward(self, x, y):
        return (x + y).clamp(min=0)
"""
    ),
    "fallback_path": _elementwise(
        """
    def forward(self, x, y):
        out = torch.empty_like(x)
        try:
            launch(x, y, out)
        except Exception:
            out = torch.relu(x + y)
        return out
"""
    ),
    "module_level_cache": _elementwise(
        """
    def forward(self, x, y):
        key = (x.data_ptr(), y.data_ptr())
        if key not in CACHE:
            out = torch.empty_like(x)
            launch(x, y, out)
            CACHE[key] = out
        return CACHE[key]
""",
        extra="\nCACHE = {}\n",
    ),
    "reference_access": _elementwise(
        """
    def __init__(self):
        super().__init__()
        self.ref = Model()

    def forward(self, x, y):
        out = torch.empty_like(x)
        launch(x, y, out)
        return self.ref(x, y)
""",
        extra="\nfrom reference import Model\n",
    ),
    "forbidden_construct": _elementwise(
        """
    def forward(self, x, y):
        out = torch.empty_like(x)
        launch(x, y, out)
        return out
""",
        extra="\nimport time\ntime.perf_counter = lambda: 0.0\n",
    ),
}

# Pass the static checks; caught while running (finding code -> candidate).
DYNAMIC_CHEATS = {
    # torch compute reached through a name the AST cannot resolve; the kernel only applies relu
    "torch_compute_at_runtime": _elementwise(
        """
    def forward(self, x, y):
        total = functools.reduce(operator.add, (x, y))
        out = torch.empty_like(x)
        launch(total, torch.zeros_like(x), out)
        return out
""",
        extra="\nimport functools\nimport operator\n",
    ),
    # a decoy kernel, and the answer computed in plain Python, where no aten op shows
    "fallback_output": _elementwise(
        """
    def forward(self, x, y):
        scratch = torch.empty_like(x)
        launch(x, y, scratch)
        values = [max(a + b, 0.0) for a, b in zip(x.tolist(), y.tolist())]
        return x.new_tensor(values)
"""
    ),
    # the result written over an input and that input returned
    "output_aliases_input": _elementwise(
        """
    def forward(self, x, y):
        launch(x, y, x)
        return x
"""
    ),
    # a correct output, and an input zeroed behind the caller's back
    "input_mutated": _elementwise(
        """
    def forward(self, x, y):
        out = torch.empty_like(x)
        launch(x, y, out)
        launch(y, y, y)
        return out
"""
    ),
    # right for the first calls, then stale (state carried between calls)
    "nondeterministic_output": _elementwise(
        """
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x, y):
        self.calls += 1
        out = torch.empty_like(x)
        launch(x, y if self.calls <= 3 else x, out)
        return out
"""
    ),
    # a tensor subclass that could lie about its contents
    "output_not_plain_tensor": _elementwise(
        """
    def forward(self, x, y):
        out = torch.empty_like(x)
        launch(x, y, out)
        return out.as_subclass(Shady)
""",
        extra="\n\nclass Shady(torch.Tensor):\n    pass\n",
    ),
}


# ---- more honest shapes (static checks must accept each; each is correct for its reference) ----

ROW_LOOP_SOFTMAX = (
    HEADER
    + """

@triton.jit
def softmax_loop_kernel(x_ptr, out_ptr, n_cols, stride, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    m = tl.full([BLOCK], -float("inf"), dtype=tl.float32)
    s = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * stride + cols, mask=cols < n_cols, other=-float("inf"))
        m_new = tl.maximum(m, x)
        s = s * tl.exp(m - m_new) + tl.where(cols < n_cols, tl.exp(x - m_new), 0.0)
        m = m_new
    row_max = tl.max(m, axis=0)
    total = tl.sum(s * tl.exp(m - row_max), axis=0)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * stride + cols, mask=cols < n_cols, other=-float("inf"))
        tl.store(out_ptr + row * stride + cols, tl.exp(x - row_max) / total, mask=cols < n_cols)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        n_rows, n_cols = x.shape
        out = torch.empty_like(x)
        softmax_loop_kernel[(n_rows,)](x, out, n_cols, x.stride(0), BLOCK=32)
        return out
"""
)

LINEAR_REF = """
import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)

    def forward(self, x):
        return self.linear(x)


def get_inputs():
    return [torch.randn(20, 40)]


def get_init_inputs():
    return [40, 24]
"""

AUTOTUNED_MATMUL = (
    HEADER
    + """

@triton.autotune(
    configs=[
        triton.Config({"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}, num_warps=4, num_stages=2),
        triton.Config({"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 16}, num_warps=4, num_stages=3),
    ],
    key=["M", "N", "K"],
)
@triton.jit
def matmul_kernel(a_ptr, w_ptr, c_ptr, M, N, K, stride_am, stride_ak, stride_wn, stride_wk, stride_cm, stride_cn,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        ks = k * BLOCK_K + offs_k
        a = tl.load(a_ptr + offs_m[:, None] * stride_am + ks[None, :] * stride_ak,
                    mask=(offs_m[:, None] < M) & (ks[None, :] < K), other=0.0)
        w = tl.load(w_ptr + offs_n[None, :] * stride_wn + ks[:, None] * stride_wk,
                    mask=(offs_n[None, :] < N) & (ks[:, None] < K), other=0.0)
        acc += tl.dot(a, w, input_precision="ieee")
    tl.store(c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn, acc,
             mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


class ModelNew(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.weight = nn.Linear(in_features, out_features, bias=False).weight

    def forward(self, x):
        M, K = x.shape
        N = self.weight.shape[0]
        out = torch.empty((M, N), device=x.device, dtype=torch.float32)
        grid = lambda META: (triton.cdiv(M, META["BLOCK_M"]), triton.cdiv(N, META["BLOCK_N"]))
        matmul_kernel[grid](x, self.weight, out, M, N, K, x.stride(0), x.stride(1),
                            self.weight.stride(0), self.weight.stride(1), out.stride(0), out.stride(1))
        return out
"""
)

LAYERNORM_REF = """
import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(x)


def get_inputs():
    return [torch.randn(6, 8, 50)]


def get_init_inputs():
    return [50]
"""

_LAYERNORM_KERNEL = """

@triton.jit
def layernorm_kernel(x_ptr, w_ptr, b_ptr, out_ptr, n_cols, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0)
    mean = tl.sum(x, axis=0) / n_cols
    diff = tl.where(mask, x - mean, 0.0)
    var = tl.sum(diff * diff, axis=0) / n_cols
    w = tl.load(w_ptr + cols, mask=mask, other=1.0)
    b = tl.load(b_ptr + cols, mask=mask, other=0.0)
    tl.store(out_ptr + row * n_cols + cols, diff / tl.sqrt(var + eps) * w + b, mask=mask)


def layernorm(x, weight, bias, eps):
    shape = x.shape
    rows = x.reshape(-1, shape[-1]).contiguous()
    out = torch.empty_like(rows)
    layernorm_kernel[(rows.shape[0],)](rows, weight, bias, out, shape[-1], eps,
                                       BLOCK=triton.next_power_of_2(shape[-1]))
    return out.view(shape)
"""

# weights from nn.Parameter (ones and zeros, as nn.LayerNorm's)
LAYERNORM_PARAMETERS = (
    HEADER
    + _LAYERNORM_KERNEL
    + """

class ModelNew(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x):
        return layernorm(x, self.weight, self.bias, self.eps)
"""
)

# weights held by an nn.LayerNorm that is never run
LAYERNORM_HOLDER = (
    HEADER
    + _LAYERNORM_KERNEL
    + """

class ModelNew(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return layernorm(x, self.norm.weight, self.norm.bias, self.norm.eps)
"""
)

SCALE_REF = """
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return x * 2.0 + 1.0


def get_inputs():
    return [torch.randn(1000)]


def get_init_inputs():
    return []
"""

HEURISTICS_KERNEL = (
    HEADER
    + """

@triton.heuristics({
    "BLOCK_SIZE": lambda args: min(256, triton.next_power_of_2(args["n_elements"])),
    "EVEN": lambda args: args["n_elements"] % args["BLOCK_SIZE"] == 0,
})
@triton.jit
def scale_kernel(x_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr, EVEN: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    if EVEN:
        x = tl.load(x_ptr + offsets)
        tl.store(out_ptr + offsets, x * 2.0 + 1.0)
    else:
        mask = offsets < n_elements
        x = tl.load(x_ptr + offsets, mask=mask)
        tl.store(out_ptr + offsets, x * 2.0 + 1.0, mask=mask)


class ModelNew(nn.Module):
    def forward(self, x):
        out = torch.empty_like(x)
        n = x.numel()
        scale_kernel[lambda meta: (triton.cdiv(n, meta["BLOCK_SIZE"]),)](x, out, n)
        return out
"""
)

# module constants Triton sees as constexpr, and a @triton.jit helper called from the kernel
CONSTEXPR_CONSTANTS = (
    HEADER
    + """
BLOCK_SIZE = 128
BLOCK = tl.constexpr(BLOCK_SIZE)
SCALE = tl.constexpr(2.0)


@triton.jit
def _affine(x):
    return x * SCALE + 1.0


@triton.jit
def affine_kernel(x_ptr, out_ptr, n):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    tl.store(out_ptr + offsets, _affine(tl.load(x_ptr + offsets, mask=mask)), mask=mask)


class ModelNew(nn.Module):
    def forward(self, x):
        out = torch.empty_like(x)
        affine_kernel[(triton.cdiv(x.numel(), BLOCK_SIZE),)](x, out, x.numel())
        return out
"""
)

PERMUTE_SUM_REF = """
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return torch.relu(x.permute(0, 2, 1)).sum(dim=-1)


def get_inputs():
    return [torch.randn(4, 50, 6)]


def get_init_inputs():
    return []
"""

# reshape and permute on the host, two kernels, the grid from a host helper
PERMUTE_TWO_KERNELS = (
    HEADER
    + """

@triton.jit
def relu_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    tl.store(out_ptr + offsets, tl.maximum(tl.load(x_ptr + offsets, mask=mask), 0.0), mask=mask)


@triton.jit
def row_sum_kernel(x_ptr, out_ptr, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + row * n_cols + cols, mask=cols < n_cols, other=0.0)
    tl.store(out_ptr + row, tl.sum(x, axis=0))


def blocks(n: int, block: int) -> tuple[int]:
    return (triton.cdiv(n, block),)


class ModelNew(nn.Module):
    def forward(self, x):
        batch, _, channels = x.shape
        xp = x.permute(0, 2, 1).contiguous()
        rows = xp.reshape(-1, xp.shape[-1])
        activated = torch.empty_like(rows)
        relu_kernel[blocks(rows.numel(), 256)](rows, activated, rows.numel(), BLOCK=256)
        out = torch.empty(rows.shape[0], device=x.device, dtype=x.dtype)
        row_sum_kernel[(rows.shape[0],)](activated, out, rows.shape[1], BLOCK=triton.next_power_of_2(rows.shape[1]))
        return out.view(batch, channels)
"""
)

CAT_REF = """
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return torch.cat([torch.relu(x), x * 2.0], dim=1)


def get_inputs():
    return [torch.randn(8, 40)]


def get_init_inputs():
    return []
"""

# two kernel outputs joined with torch.cat (allowed glue: it moves data, it computes nothing)
CAT_OF_OUTPUTS = (
    HEADER
    + """

@triton.jit
def relu_and_double_kernel(x_ptr, relu_ptr, double_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask)
    tl.store(relu_ptr + offsets, tl.maximum(x, 0.0), mask=mask)
    tl.store(double_ptr + offsets, x * 2.0, mask=mask)


class ModelNew(nn.Module):
    def forward(self, x):
        x = x.contiguous()
        relu = torch.empty_like(x)
        double = torch.empty_like(x)
        n = x.numel()
        relu_and_double_kernel[(triton.cdiv(n, 256),)](x, relu, double, n, BLOCK=256)
        parts = [relu, double]
        return torch.cat(parts, dim=1)
"""
)

HONEST_SHAPES = {
    "row_loop_softmax": (SOFTMAX_REF, ROW_LOOP_SOFTMAX),
    "autotuned_matmul": (LINEAR_REF, AUTOTUNED_MATMUL),
    "layernorm_parameters": (LAYERNORM_REF, LAYERNORM_PARAMETERS),
    "layernorm_weight_holder": (LAYERNORM_REF, LAYERNORM_HOLDER),
    "heuristics": (SCALE_REF, HEURISTICS_KERNEL),
    "constexpr_constants": (SCALE_REF, CONSTEXPR_CONSTANTS),
    "permute_two_kernels": (PERMUTE_SUM_REF, PERMUTE_TWO_KERNELS),
    "cat_of_outputs": (CAT_REF, CAT_OF_OUTPUTS),
}


# ---- hostile shapes the allow-list rejects statically (expected code -> candidate) ----------
# Each one computes relu(x + y) where the old deny-list checker did not look, or hides state.

_DECOY = """
        scratch = torch.empty_like(x)
        launch(x, y, scratch)
"""


def _hostile(forward_body: str, extra: str = "", methods: str = "") -> str:
    forward = "    def forward(self, x, y):\n" + _DECOY + forward_body
    return HEADER + extra + _KERNEL + "\n\nclass ModelNew(nn.Module):\n" + methods + forward


HOSTILE = {
    # a function built by a factory at import time: the checker cannot see what it runs
    "factory_built_function": (
        "not_allowlisted",
        _hostile(
            "        return _relu_add(x, y)\n",
            extra="""

def _factory(first, second):
    def impl(a, b):
        return getattr(getattr(a, first)(b), second)()
    return impl


_relu_add = _factory("add", "relu")
""",
        ),
    ),
    # frames: the harness's locals and globals are one f_back away
    "frame_walk_sys": (
        "introspection",
        _hostile(
            "        harness = sys._getframe(1).f_globals\n        return harness['expected'][0]\n",
            extra="\nimport sys\n",
        ),
    ),
    "frame_walk_inspect": (
        "introspection",
        _hostile(
            "        frame = inspect.currentframe().f_back\n        return frame.f_locals['expected']\n",
            extra="\nimport inspect\n",
        ),
    ),
    # every class in the process, from an empty tuple
    "subclasses_walk": (
        "introspection",
        _hostile("        classes = ().__class__.__base__.__subclasses__()\n        return scratch\n"),
    ),
    # getattr with a name computed at run time hides the op
    "computed_getattr": (
        "not_allowlisted",
        _hostile('        return getattr(getattr(x, "ad" + "d")(y), "re" + "lu")()\n'),
    ),
    "globals_lookup": (
        "introspection",
        _hostile('        return globals()["tor" + "ch"].relu(x.add(y))\n'),
    ),
    # torch reached through a lambda or a table of functions defined at module level
    "module_level_lambda": (
        "not_allowlisted",
        _hostile("        return _op(x, y)\n", extra="\n_op = lambda a, b: torch.relu(torch.add(a, b))\n"),
    ),
    "dispatch_table": (
        "torch_compute_in_forward",
        _hostile(
            '        return OPS["relu"](OPS["add"](x, y))\n', extra='\nOPS = {"add": torch.add, "relu": torch.relu}\n'
        ),
    ),
    # the grid callable runs during the launch, where the recorder is paused
    "grid_callable_computes": (
        "torch_compute_in_forward",
        _hostile(
            "        out = torch.empty_like(x)\n"
            "        grid = lambda meta: (out.copy_((x + y).clamp(min=0)).numel() // meta['BLOCK_SIZE'] + 1,)\n"
            "        add_relu_kernel[grid](x, y, scratch, x.numel(), BLOCK_SIZE=1024)\n"
            "        return out\n"
        ),
    ),
    "grid_callable_reduce": (
        "not_allowlisted",
        _hostile(
            "        out = torch.empty_like(x)\n"
            "        grid = lambda meta: (out.copy_(functools.reduce(operator.add, (x, y))).numel() * 0 + 1,)\n"
            "        add_relu_kernel[grid](out, torch.zeros_like(x), out, x.numel(), BLOCK_SIZE=4096)\n"
            "        return out\n",
            extra="\nimport functools\nimport operator\n",
        ),
    ),
    # a decorator replaces forward with torch code
    "decorator_replaces_forward": (
        "not_allowlisted",
        _hostile(
            "        return scratch\n",
            extra="""

def _replace(fn):
    def forward(self, x, y):
        return torch.relu(x + y)
    return forward
""",
            methods="    @_replace\n",
        ),
    ),
    # the harness calls model(x): __call__ never reaches forward
    "call_override": (
        "not_allowlisted",
        _hostile(
            "        return scratch\n", methods="    def __call__(self, x, y):\n        return torch.relu(x + y)\n\n"
        ),
    ),
    # a forward hook installed in __init__ rewrites the output after forward returns
    "forward_hook": (
        "not_allowlisted",
        _hostile(
            "        return scratch\n",
            methods="    def __init__(self):\n        super().__init__()\n"
            "        self.register_forward_hook(lambda module, inputs, output: torch.relu(inputs[0] + inputs[1]))\n\n",
        ),
    ),
    # autotune and heuristics hooks run host code during the launch
    "autotune_pre_hook": (
        "not_allowlisted",
        HEADER
        + """

@triton.autotune(
    configs=[triton.Config({"BLOCK_SIZE": 1024}, pre_hook=lambda nargs: nargs["out_ptr"].copy_(
        torch.relu(nargs["x_ptr"] + nargs["y_ptr"])))],
    key=["n_elements"],
)
@triton.jit
def noop_kernel(x_ptr, y_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    pass


class ModelNew(nn.Module):
    def forward(self, x, y):
        out = torch.empty_like(x)
        noop_kernel[(1,)](x, y, out, x.numel())
        return out
""",
    ),
    "heuristics_compute": (
        "not_allowlisted",
        HEADER
        + """

@triton.heuristics({"BLOCK_SIZE": lambda args: args["out_ptr"].copy_(
    torch.relu(args["x_ptr"] + args["y_ptr"])).numel() * 0 + 1024})
@triton.jit
def noop_kernel(x_ptr, y_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    pass


class ModelNew(nn.Module):
    def forward(self, x, y):
        out = torch.empty_like(x)
        noop_kernel[(1,)](x, y, out, x.numel())
        return out
""",
    ),
    # in Triton's interpreter a kernel body is plain Python: torch and numpy run there
    "kernel_calls_torch": (
        "not_allowlisted",
        HEADER
        + """

@triton.jit
def cheat_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    out_ptr.copy_(torch.relu(x_ptr + y_ptr))


class ModelNew(nn.Module):
    def forward(self, x, y):
        out = torch.empty_like(x)
        cheat_kernel[(1,)](x, y, out, x.numel(), BLOCK=16)
        return out
""",
    ),
    "kernel_calls_numpy": (
        "not_allowlisted",
        HEADER
        + """
import numpy as np


@triton.jit
def cheat_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offsets, mask=offsets < n)
    y = tl.load(y_ptr + offsets, mask=offsets < n)
    tl.store(out_ptr + offsets, np.maximum(x + y, 0.0), mask=offsets < n)


class ModelNew(nn.Module):
    def forward(self, x, y):
        out = torch.empty_like(x)
        cheat_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, out, x.numel(), BLOCK=1024)
        return out
""",
    ),
    # state across calls: a mutable default, a buffer written from forward
    "mutable_default_cache": (
        "module_level_cache",
        _hostile("        _memo.setdefault(x.data_ptr(), scratch)\n        return _memo[x.data_ptr()]\n").replace(
            "def forward(self, x, y):", "def forward(self, x, y, _memo={}):"
        ),
    ),
    "state_in_a_buffer": (
        "module_level_cache",
        _hostile(
            "        if self.ready:\n            return self.last\n"
            "        self.last.copy_(scratch)\n        return scratch\n",
            methods="    def __init__(self):\n        super().__init__()\n        self.ready = False\n"
            "        self.register_buffer('last', torch.zeros(3000))\n\n",
        ),
    ),
    # computing on tensors at import time, and a class built by type() to hide a torch op
    "import_time_tensor": (
        "not_allowlisted",
        _hostile("        return scratch + _BIAS\n", extra="\n_BIAS = torch.zeros(3000)\n"),
    ),
    "type_built_class": (
        "not_allowlisted",
        _hostile(
            "        return Ops.go(x, y)\n",
            extra='\nOps = type("Ops", (), {"go": staticmethod(lambda a, b: torch.relu(a + b))})\n',
        ),
    ),
    # a tensor subclass whose operators could compute anything
    "tensor_subclass": (
        "not_allowlisted",
        _hostile("        return scratch.as_subclass(Lazy)\n", extra="\n\nclass Lazy(torch.Tensor):\n    pass\n"),
    ),
    # parameters typed as Python scalars still receive the harness's tensors: abs(z) + z is relu in torch
    "scalar_typed_arguments": (
        "torch_compute_in_forward",
        _hostile("        z = x + y\n        return (abs(z) + z) * 0.5\n").replace(
            "def forward(self, x, y):", "def forward(self, x: float = 0.0, y: float = 0.0):"
        ),
    ),
    # tensor values read into Python through formatting, comparisons and sorting
    "format_reads_values": (
        "torch_compute_in_forward",
        _hostile('        text = "{}".format(x.view(-1))\n        return scratch\n'),
    ),
    "percent_format_reads_values": (
        "torch_compute_in_forward",
        _hostile('        text = "%s" % (x.view(-1),)\n        return scratch\n'),
    ),
    "list_comparison_reads_values": (
        "torch_compute_in_forward",
        _hostile("        if [x[0:1]] < [0.5]:\n            scratch[0:1] = 0.5\n        return scratch\n"),
    ),
    "size_of_values": (
        "torch_compute_in_forward",
        _hostile("        values = torch.Size(x.to(torch.int64))\n        return scratch\n"),
    ),
    "cdiv_of_a_tensor": (
        "torch_compute_in_forward",
        _hostile("        halves = triton.cdiv(x, 1)\n        return scratch\n"),
    ),
    "sorted_tensors": (
        "torch_compute_in_forward",
        _hostile("        ordered = sorted([x[0:1], y[0:1]])\n        return scratch\n"),
    ),
    # state shared by every call: a class-level dict, a list inside a module-level list
    "class_level_cache": (
        "module_level_cache",
        _hostile(
            "        if x.data_ptr() in self.cache:\n            return self.cache[x.data_ptr()]\n"
            "        self.cache[x.data_ptr()] = scratch\n        return scratch\n",
            methods="    cache = {}\n\n",
        ),
    ),
    "shared_inner_list": (
        "module_level_cache",
        _hostile("        _STATE[0].append(scratch)\n        return _STATE[0][0]\n", extra="\n_STATE = [[]]\n"),
    ),
    # the exception's traceback leads to the frames above
    "traceback_frames": (
        "introspection",
        _hostile(
            "        try:\n            raise ValueError('x')\n        except ValueError as exc:\n"
            "            raise RuntimeError(exc.__traceback__.tb_frame.f_back.f_locals) from exc\n"
        ),
    ),
}

# The allow-list rejects these dynamic cheats before they run (cheat -> the static finding's code);
# the others still reach the sandbox and are caught by the evidence gathered while running.
CAUGHT_STATICALLY = {
    "torch_compute_at_runtime": "not_allowlisted",  # functools/operator: not importable
    "fallback_output": "torch_compute_in_forward",  # .tolist() reads tensor values into Python
    "nondeterministic_output": "module_level_cache",  # self.calls += 1 in forward
    "output_not_plain_tensor": "not_allowlisted",  # a torch.Tensor subclass, .as_subclass
}
