"""What a candidate module may name, as data: every table here is an allow-list or a classification.

The checker accepts a name only if a table below says what it is and where it may run
(`IMPORT`: module level, default values and decorator arguments; `SETUP`: `__init__` and
what it calls; `FORWARD`: `forward` and what it calls). Names not listed are rejected;
the classification tables only choose which finding code a rejection gets.
"""

from __future__ import annotations

from enum import Enum


class Context(Enum):
    IMPORT = "import time"
    SETUP = "__init__"
    FORWARD = "forward"


IMPORT = frozenset({Context.IMPORT})
SETUP = frozenset({Context.SETUP})
RUNTIME = frozenset({Context.SETUP, Context.FORWARD})
ANYWHERE = frozenset(Context)


def _names(text: str, prefix: str = "") -> frozenset[str]:
    return frozenset(prefix + name for name in text.split())


# ---- modules ------------------------------------------------------------------------------

ALLOWED_MODULES = _names(
    "torch torch.nn torch.nn.functional torch.nn.init torch.cuda triton triton.language "
    "triton.language.math triton.language.extra triton.language.extra.cuda triton.language.extra.libdevice "
    "triton.language.extra.cuda.libdevice math typing __future__"
)
# Modules (and names) whose only use here is to look behind the harness's back.
INTROSPECTION_MODULES = _names(
    "sys inspect traceback types builtins weakref copyreg code dis linecache site marshal pickle"
)
# Names that compute instead of writing kernels, anywhere (prefix match): the finding names why.
FORBIDDEN = {
    "torch.compile": "compiles torch code instead of writing kernels",
    "torch._dynamo": "compiles torch code instead of writing kernels",
    "torch._inductor": "compiles torch code instead of writing kernels",
    "torch.compiler": "compiles torch code instead of writing kernels",
    "torch.jit.script": "compiles torch code instead of writing kernels",
    "torch.jit.trace": "compiles torch code instead of writing kernels",
    "torch.utils.cpp_extension": "builds native extensions instead of Triton kernels",
    "torch.cuda.Stream": "side streams hide work from the timer",
    "torch.cuda.stream": "side streams hide work from the timer",
    "torch.cuda.streams": "side streams hide work from the timer",
    "torch.cuda.ExternalStream": "side streams hide work from the timer",
    "torch.cuda.StreamContext": "side streams hide work from the timer",
    "torch.cuda.set_stream": "side streams hide work from the timer",
    "torch.Stream": "side streams hide work from the timer",
    "torch.cuda.graph": "CUDA graphs replay captured work instead of computing",
    "torch.cuda.graphs": "CUDA graphs replay captured work instead of computing",
    "torch.cuda.CUDAGraph": "CUDA graphs replay captured work instead of computing",
    "torch.cuda.make_graphed_callables": "CUDA graphs replay captured work instead of computing",
    "torch.multiprocessing": "background work escapes the timer",
    "threading": "background work escapes the timer",
    "_thread": "background work escapes the timer",
    "multiprocessing": "background work escapes the timer",
    "concurrent": "background work escapes the timer",
    "asyncio": "background work escapes the timer",
    "gc": "walks the heap (a way to find the reference outputs)",
    "ctypes": "raw memory and native calls",
    "importlib": "dynamic imports hide what runs",
    "subprocess": "runs other programs",
    "os.system": "runs other programs",
    "os.popen": "runs other programs",
    "os.fork": "runs other programs",
    "os.exec": "runs other programs",
    "os.spawn": "runs other programs",
    "os.posix_spawn": "runs other programs",
    "sys.modules": "reaches into other modules (the reference, the harness)",
    "builtins.exec": "runs code hidden from these checks",
    "builtins.eval": "runs code hidden from these checks",
    "builtins.compile": "runs code hidden from these checks",
    "builtins.__import__": "dynamic imports hide what runs",
}
CACHE_DECORATORS = _names("functools.lru_cache functools.cache functools.cached_property cachetools")
# Libraries that compute on arrays: calling them is computing the answer outside a kernel.
ARRAY_LIBRARIES = _names("numpy cupy cupyx scipy jax tensorflow")

# ---- torch on the host --------------------------------------------------------------------

# Library calls the host may make: dotted name -> (what it returns, where it may run).
# Result codes: "tensor", "tensors" (a tuple of tensors), "scalar", "shape", "props", "nn",
# "container" (nn.ModuleList and friends), "context" (a `with` context manager).
LIBRARY_CALLS: dict[str, tuple[str, frozenset[Context]]] = {
    **{
        name: ("tensor", RUNTIME)
        for name in _names(
            "empty empty_like empty_strided zeros zeros_like ones ones_like full full_like arange "
            "cat concat concatenate stack reshape flatten unsqueeze squeeze permute transpose t narrow "
            "broadcast_to",
            "torch.",
        )
    },
    **{name: ("tensors", RUNTIME) for name in _names("split chunk unbind", "torch.")},
    **{
        name: ("tensor", SETUP)
        for name in _names(
            "randn rand randint randn_like rand_like randint_like randperm normal tensor as_tensor linspace eye",
            "torch.",
        )
    },
    "torch.nn.Parameter": ("tensor", SETUP),
    "torch.nn.parameter.Parameter": ("tensor", SETUP),
    "torch.nn.Buffer": ("tensor", SETUP),
    **{name: ("scalar", ANYWHERE) for name in _names("device is_tensor is_floating_point get_default_dtype", "torch.")},
    "torch.numel": ("scalar", RUNTIME),
    "torch.Size": ("shape", ANYWHERE),
    "torch.finfo": ("props", ANYWHERE),
    "torch.iinfo": ("props", ANYWHERE),
    **{
        name: ("scalar", ANYWHERE)
        for name in _names("is_available current_device device_count get_device_name synchronize", "torch.cuda.")
    },
    "torch.cuda.get_device_capability": ("shape", ANYWHERE),
    "torch.cuda.get_device_properties": ("props", ANYWHERE),
    **{name: ("context", RUNTIME) for name in _names("torch.no_grad torch.inference_mode torch.cuda.device")},
    "triton.cdiv": ("scalar", ANYWHERE),
    "triton.next_power_of_2": ("scalar", ANYWHERE),
    "triton.Config": ("scalar", IMPORT),
    "triton.language.constexpr": ("scalar", IMPORT),
    **{
        name: ("scalar", ANYWHERE)
        for name in _names(
            "sqrt isqrt log log2 log10 exp ceil floor pow prod gcd lcm fabs trunc comb factorial", "math."
        )
    },
    **{name: ("container", SETUP) for name in _names("ModuleList ModuleDict Sequential ParameterList", "torch.nn.")},
}
# torch.nn.init.* fills parameters in __init__; torch.nn.<Layer>(...) builds a weight holder there.
NN_INIT_PREFIX = "torch.nn.init."
NN_PREFIX = "torch.nn."
# Values (not calls) a module may name: dtypes and numeric constants.
LIBRARY_CONSTANTS = frozenset(
    {
        *_names(
            "float16 float32 float64 bfloat16 half float double int8 int16 int32 int64 uint8 bool long int "
            "short complex64 complex128 float8_e4m3fn float8_e5m2 contiguous_format channels_last",
            "torch.",
        ),
        *_names("pi e inf nan tau", "math."),
        *_names(
            "float16 float32 float64 bfloat16 int1 int8 int16 int32 int64 uint8 uint16 uint32 uint64 "
            "float8e4nv float8e5 constexpr",
            "triton.language.",
        ),
    }
)
# Types a candidate may name in isinstance() and annotations.
TYPE_NAMES = _names("torch.Tensor torch.nn.Module torch.nn.Parameter torch.dtype torch.device torch.Size")
TORCH_COMPUTE_ROOTS = _names("torch.nn.functional. torch.linalg. torch.fft. torch.special. torch.Tensor. triton.ops.")

# Tensor methods: name -> (result, where). Anything else on a tensor is computing or unknown.
TENSOR_METHODS: dict[str, tuple[str, frozenset[Context]]] = {
    **{
        name: ("tensor", RUNTIME)
        for name in _names(
            "view reshape contiguous t transpose permute flatten unflatten unsqueeze squeeze expand expand_as "
            "view_as reshape_as narrow detach clone to float half bfloat16 double int long bool cuda cpu copy_ "
            "zero_ fill_ new_empty new_zeros new_ones new_full"
        )
    },
    **{name: ("tensors", RUNTIME) for name in _names("split chunk unbind")},
    **{
        name: ("scalar", RUNTIME)
        for name in _names(
            "numel dim ndimension nelement element_size is_contiguous data_ptr storage_offset get_device "
            "is_floating_point is_complex"
        )
    },
    **{name: ("shape", RUNTIME) for name in _names("size stride")},
    **{name: ("tensor", SETUP) for name in _names("normal_ uniform_ mul_ div_ add_ sub_ requires_grad_")},
}
# ... and their attributes.
TENSOR_ATTRIBUTES = {
    **{name: "tensor" for name in _names("T mT data")},
    **{name: "scalar" for name in _names("dtype device ndim is_cuda requires_grad layout is_leaf")},
    "shape": "shape",
}
# Method names that read a tensor's values into Python: computing outside a kernel.
VALUE_READS = _names("item tolist numpy __array__ __float__ __int__ __bool__ __index__")
# Operator dunders: calling one is tensor arithmetic.
OPERATOR_DUNDERS = _names(
    "__add__ __radd__ __iadd__ __sub__ __rsub__ __isub__ __mul__ __rmul__ __imul__ __truediv__ __rtruediv__ "
    "__itruediv__ __floordiv__ __rfloordiv__ __mod__ __pow__ __rpow__ __matmul__ __rmatmul__ __neg__ __abs__ "
    "__and__ __or__ __xor__ __invert__ __lt__ __le__ __gt__ __ge__ __eq__ __ne__ __getitem__ __setitem__"
)

# torch.nn module instances held in `self`: what a candidate may read from them.
NN_TENSOR_ATTRIBUTES = _names("weight bias running_mean running_var num_batches_tracked in_proj_weight in_proj_bias")
NN_CONFIG_ATTRIBUTES = _names(
    "in_features out_features in_channels out_channels kernel_size stride padding dilation groups eps momentum "
    "normalized_shape num_features negative_slope p dim output_padding num_embeddings embedding_dim "
    "padding_idx elementwise_affine affine training inplace num_groups num_heads embed_dim batch_first "
    "track_running_stats beta threshold min_val max_val lambd upscale_factor scale_factor"
)
# nn.Module's own API: a class here may not override these (the harness and torch call them).
NN_MODULE_API = _names(
    "to cuda cpu eval train float half double bfloat16 type apply _apply modules children named_modules "
    "named_children parameters named_parameters buffers named_buffers state_dict load_state_dict "
    "register_buffer register_parameter register_module add_module zero_grad requires_grad_ extra_repr "
    "get_submodule get_parameter get_buffer share_memory _call_impl _wrapped_call_impl _load_from_state_dict "
    "_save_to_state_dict register_forward_hook register_forward_pre_hook register_full_backward_hook "
    "_get_name _named_members"
)
MODULE_BUILTIN_ATTRIBUTES = {"training": "scalar"}

# ---- builtins -----------------------------------------------------------------------------

# Python builtins host code may call (their results are checked in calls.py).
HOST_BUILTINS = _names(
    "range len min max abs round divmod pow int float bool str tuple list set dict enumerate zip "
    "isinstance sum any all sorted reversed super"
)
EXCEPTIONS = _names(
    "Exception ValueError RuntimeError TypeError AssertionError NotImplementedError IndexError KeyError "
    "ArithmeticError ZeroDivisionError OverflowError"
)
# Builtins that look behind the program's back, or run code these checks never see.
INTROSPECTION_BUILTINS = _names("globals locals vars dir")
COMPUTED_NAME_BUILTINS = _names("getattr setattr delattr hasattr")
FORBIDDEN_BUILTINS = _names("eval exec compile __import__")
# In kernels: what Triton's compiler accepts besides triton.language.
KERNEL_BUILTINS = _names("range min max len int float bool abs print isinstance tuple")
# Attributes of triton.language tensors, dtypes and constexprs (what a kernel may read off a value).
KERNEL_ATTRIBUTES = _names(
    "dtype shape type numel element_ty primitive_bitwidth fp_mantissa_width int_bitwidth int_signedness value "
    "name address_space scalar T abs advance argmax argmin associative_scan atomic_add atomic_and atomic_cas "
    "atomic_max atomic_min atomic_or atomic_xchg atomic_xor broadcast_to cast cdiv ceil cos cumprod cumsum erf "
    "exp exp2 expand_dims flip floor gather histogram is_bf16 is_block is_bool is_floating is_fp16 is_fp32 "
    "is_fp64 is_fp8 is_int is_int_signed is_int_unsigned is_ptr is_standard_floating item log log2 logical_and "
    "logical_or max min permute ravel reduce reshape rsqrt sigmoid sin softmax sort split sqrt sqrt_rn store sum "
    "to trans view with_element_ty xor_sum"
)

# ---- frames and heap ----------------------------------------------------------------------

FRAME_ATTRIBUTES = _names(
    "f_back f_globals f_locals f_builtins f_code f_trace tb_frame tb_next gi_frame gi_code cr_frame cr_code "
    "ag_frame ag_code co_code co_consts co_names func_globals func_closure cell_contents"
)

# Methods of plain Python values and of an autograd context.
CONTAINER_MUTATORS = _names("append extend insert pop remove clear add update discard setdefault popitem sort reverse")
CONTAINER_READERS = _names("index count get keys values items copy")
SCALAR_METHODS = _names("format join upper lower strip startswith endswith replace bit_length is_integer")
SCALAR_ATTRIBUTES = _names("type index is_floating_point is_signed itemsize bits max min eps tiny real imag")
CTX_METHODS = _names("save_for_backward mark_non_differentiable set_materialize_grads mark_dirty")

# Tensor methods that compute (for the finding's code: anything else unknown is not_allowlisted).
TENSOR_COMPUTE_METHODS = _names(
    "abs absolute acos acosh add addbmm addcdiv addcmul addmm addmv addr all amax amin aminmax any argmax "
    "argmin argsort asin asinh atan atan2 atanh baddbmm bincount bitwise_and bitwise_not bitwise_or bitwise_xor "
    "bmm ceil clamp clamp_ clamp_max clamp_min clip clip_ cos cosh cross cummax cummin cumprod cumsum diff "
    "digamma div divide dot eq erf erfc erfinv exp exp_ exp2 expm1 floor floor_divide fmod frac gather ge gelu "
    "gt hardtanh histc hypot index_add index_add_ index_select inner kthvalue le lerp lgamma log log10 log1p "
    "log2 log_softmax logaddexp logcumsumexp logical_and logical_not logical_or logical_xor logit logsumexp lt "
    "masked_fill masked_fill_ masked_scatter masked_select matmul max maximum mean median min minimum mm mode "
    "mul multiply mv nan_to_num nanmean nansum ne neg neg_ negative norm outer pow pow_ prod reciprocal relu "
    "relu_ remainder renorm round rsqrt scatter scatter_ scatter_add scatter_reduce sgn sigmoid sigmoid_ sign "
    "silu sin sinh softmax sort sqrt sqrt_ square std sub subtract sum take take_along_dim tanh tanh_ "
    "tensordot topk trace tril triu true_divide trunc var where xlogy einsum index_put index_put_ index_fill "
    "index_fill_ index_copy index_copy_ put_ apply_ map_ repeat repeat_interleave tile roll flip fliplr flipud "
    "rot90 kron cov corrcoef count_nonzero nonzero unique isnan isinf isfinite any all conv1d conv2d"
)


def forbidden_reason(path: str) -> str | None:
    """Why a dotted name is forbidden anywhere in a candidate, or None."""
    for prefix, why in FORBIDDEN.items():
        if path == prefix or path.startswith(prefix + ".") or (prefix.startswith("os.") and path.startswith(prefix)):
            return why
    return "compiles torch code instead of writing kernels" if "inductor" in path else None
