"""Static anti-cheat checks on a PyTorch-to-Triton candidate, run on the trusted side.

A candidate defines `class ModelNew(nn.Module)` whose `forward` must compute with the
candidate's own `@triton.jit` kernels. Models trained against this reward learn to
launch a decoy kernel and compute the answer with torch, to fall back to torch when a
kernel fails, to memoise outputs, to borrow the reference `Model`, or to patch the
timer. Everything here is AST analysis: the candidate is never imported or executed,
and neither torch nor triton is needed. CRITICAL findings make the result REJECTED,
so each rule fires only on patterns with no honest use in such a module.

What "reachable from forward" means: `ModelNew.forward`, and transitively every
function of this module it calls or names (module-level functions, methods through
`self.`/`Cls.`/`super()`, `Fn.apply` of an autograd Function defined here, and the
`forward`/`__call__` of helper modules defined here and held in `self.<attr>`).
Kernels themselves are not entered: their bodies are Triton, not host code.

Which values are tensors (for arithmetic and comparison operators, and for method
names that are also Python methods, such as `set.add`): forward's parameters (except
those annotated or defaulted as plain Python scalars), parameters annotated
`Tensor`, helper parameters that receive a tensor at some call site, results of
`torch.*` calls, `self.<attr>` assigned a Parameter, buffer or torch tensor, the
`weight`/`bias` of an nn module held in `self`, and anything derived from those by
indexing, tensor methods, operators or helpers that return one. Python int
arithmetic on shapes, strides and block sizes is therefore never flagged.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator

from rewards.model import Finding, Severity, dedupe

_EVIDENCE = 200
_FuncNode = ast.FunctionDef | ast.AsyncFunctionDef
_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)

# torch.* calls allowed in forward: allocation and views (these return tensors) ...
_TORCH_ALLOCATE_VIEW = {
    f"torch.{name}"
    for name in (
        "empty empty_like empty_strided zeros zeros_like ones ones_like full full_like arange "
        "reshape flatten unsqueeze squeeze permute transpose t narrow split chunk unbind as_strided broadcast_to"
    ).split()
}
# ... and device, dtype and shape helpers (these do not, so arithmetic on their results is Python's).
_TORCH_HELPERS = {
    *(
        f"torch.{name}"
        for name in (
            "device Size is_tensor is_floating_point numel finfo iinfo broadcast_shapes get_default_dtype "
            "promote_types no_grad inference_mode enable_grad set_grad_enabled is_grad_enabled"
        ).split()
    ),
    *(
        f"torch.cuda.{name}"
        for name in (
            "device current_device set_device device_count is_available synchronize get_device_properties "
            "get_device_capability get_device_name current_stream default_stream"
        ).split()
    ),
    "torch.library.wrap_triton",
    "torch.jit.is_scripting",
    "torch.compiler.is_compiling",
    "torch.compiler.is_dynamo_compiling",
}
_TORCH_ALLOWED = _TORCH_ALLOCATE_VIEW | _TORCH_HELPERS
# Tensor methods (and their function forms) that compute a result rather than allocate or view.
_COMPUTE_METHODS = set(
    (
        "abs absolute acos acosh add add_ addbmm addcdiv addcmul addmm addmv addr all amax amin aminmax any "
        "argmax argmin argsort asin asinh atan atan2 atanh baddbmm bincount bitwise_and bitwise_not bitwise_or "
        "bitwise_xor bmm ceil clamp clamp_ clamp_max clamp_min clip clip_ conv1d conv2d conv3d cos cosh cross "
        "cummax cummin cumprod cumsum diff digamma div div_ divide dot eq erf erfc erfinv exp exp_ exp2 expm1 "
        "floor floor_divide fmod frac gather ge gelu gt hardtanh histc hypot index_add index_add_ index_select "
        "inner kthvalue le lerp lgamma log log10 log1p log2 log_softmax logaddexp logcumsumexp logical_and "
        "logical_not logical_or logical_xor logit logsumexp lt masked_fill masked_fill_ masked_scatter "
        "masked_select matmul max maximum mean median min minimum mm mode mul mul_ multiply mv nan_to_num "
        "nanmean nansum ne neg neg_ negative norm numpy outer pow pow_ prod reciprocal relu relu_ remainder "
        "renorm round rsqrt scatter scatter_add scatter_reduce sgn sigmoid sigmoid_ sign silu sin sinh softmax "
        "sort sqrt sqrt_ square std sub sub_ subtract sum take take_along_dim tanh tanh_ tensordot topk trace "
        "tril triu true_divide trunc var where xlogy einsum cat concat concatenate stack hstack vstack "
        "__matmul__ __rmatmul__ __add__ __radd__ __iadd__ __sub__ __rsub__ __isub__ __mul__ __rmul__ __imul__ "
        "__truediv__ __rtruediv__ __itruediv__ __floordiv__ __pow__ __rpow__ __neg__ __and__ __or__ __xor__ "
        "__lt__ __le__ __gt__ __ge__ __eq__ __ne__"
    ).split()
)
_AMBIGUOUS_METHODS = {"add", "sort"}  # also methods of set/list: flagged only on a tensor receiver
_NON_TENSOR_METHODS = set(
    "size numel dim ndimension nelement stride storage_offset item tolist data_ptr element_size is_contiguous "
    "is_floating_point is_complex get_device __len__ type".split()
)
_TENSOR_ATTRS = {"T", "mT", "H", "mH", "data", "real", "imag", "grad"}
_MODULE_TENSOR_ATTRS = {"weight", "bias", "running_mean", "running_var"}
_TENSOR_BUILTINS = {"sum", "max", "min", "abs", "pow", "round", "divmod"}
_LIBRARY_ROOTS = {"numpy", "cupy", "scipy", "jax", "tensorflow", "cupyx"}
_LIBRARY_ALLOWED = {"numpy.prod", "numpy.ceil", "numpy.floor", "numpy.log2", "numpy.sqrt", "numpy.dtype"}
_ARITH_OPS = (
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Pow,
    ast.LShift,
    ast.RShift,
    ast.BitAnd,
    ast.BitOr,
    ast.BitXor,
)
_VALUE_COMPARES = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)

# Anywhere in the module, as an import, a call or a reference: (prefix, why).
_FORBIDDEN = {
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
    "sys.modules": "reaches into other modules (the reference, the harness)",
    "builtins.exec": "runs code hidden from these checks",
    "builtins.eval": "runs code hidden from these checks",
    "builtins.compile": "runs code hidden from these checks",
    "builtins.__import__": "dynamic imports hide what runs",
}
_FORBIDDEN_RAW_PREFIXES = ("os.exec", "os.spawn", "os.posix_spawn")
_COMPILE_ALLOWED = {"torch.compiler.is_compiling", "torch.compiler.is_dynamo_compiling"}
_PATCHED_ROOTS = {"torch", "triton", "time"}
_CACHE_DECORATORS = {"functools.lru_cache", "functools.cache", "cachetools"}
_CONTAINER_CALLS = {
    "dict",
    "list",
    "set",
    "collections.OrderedDict",
    "collections.defaultdict",
    "collections.deque",
    "collections.Counter",
    "weakref.WeakKeyDictionary",
    "weakref.WeakValueDictionary",
}
_MUTATORS = {"append", "extend", "insert", "update", "setdefault", "add", "pop", "popitem", "clear", "__setitem__"}
_NON_TENSOR_PARAM_TYPES = {"int", "float", "bool", "str"}
_NN_CONTAINERS = {"ModuleList", "ModuleDict"}
_NN_NOT_MODULES = {"Parameter", "Buffer", "ParameterList", "ParameterDict"}


class CandidateSyntaxError(ValueError):
    pass


def _walk_body(node: ast.AST) -> Iterator[ast.AST]:
    """Every node of a function's body (nested defs included), not its decorators or defaults."""
    if isinstance(node, ast.Lambda):
        yield from ast.walk(node.body)
        return
    for stmt in getattr(node, "body", []):
        yield from ast.walk(stmt)


def _names(target: ast.AST) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from _names(elt)
    elif isinstance(target, ast.Starred):
        yield from _names(target.value)


def _is_staticmethod(func: _FuncNode) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in func.decorator_list)


def _params(func: _FuncNode) -> list[ast.arg]:
    return [*func.args.posonlyargs, *func.args.args]


def _module_level(body: Iterable[ast.stmt]) -> Iterator[ast.stmt]:
    """Top-level statements, looking into module-level if/try/with blocks (`if HAS_TRITON:`)."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, (ast.If, ast.For, ast.While, ast.With)):
            yield from _module_level(stmt.body)
            yield from _module_level(getattr(stmt, "orelse", []))
        elif isinstance(stmt, ast.Try):
            for block in (stmt.body, stmt.orelse, stmt.finalbody, *(h.body for h in stmt.handlers)):
                yield from _module_level(block)


class _Checker:
    def __init__(self, code: str, tree: ast.Module, reference_module: str) -> None:
        self.code = code
        self.tree = tree
        self.reference_module = reference_module
        self.findings: list[Finding] = []
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self.aliases: dict[str, str] = {}
        self._collect_aliases()
        top = list(_module_level(tree.body))
        self.defined = {n.name for n in ast.walk(tree) if isinstance(n, (*_FUNCS, ast.ClassDef))}
        self.classes = {s.name: s for s in top if isinstance(s, ast.ClassDef)}
        self.kernels = self._find_kernels(top)
        self.funcs = {s.name: s for s in top if isinstance(s, _FUNCS) and s.name not in self.kernels}
        self.owner: dict[ast.AST, ast.ClassDef] = {}
        for cls in self.classes.values():
            for stmt in cls.body:
                if isinstance(stmt, _FUNCS):
                    self.owner[stmt] = cls
        self.attr_kinds = {name: self._attr_kinds(cls) for name, cls in self.classes.items()}
        self.module_nn = {
            name
            for s in top
            if isinstance(s, ast.Assign) and self._value_kind(s.value) in ("nn", "nn_container")
            for t in s.targets
            for name in _names(t)
        }
        self.containers = {
            name
            for s in top
            if isinstance(s, (ast.Assign, ast.AnnAssign)) and s.value is not None and self._is_container(s.value)
            for t in (s.targets if isinstance(s, ast.Assign) else [s.target])
            for name in _names(t)
        }
        self.tensor_params: dict[ast.AST, set[str]] = {}
        self.returns_tensor: set[ast.AST] = set()
        self.local_tensors: dict[ast.AST, set[str]] = {}

    # ---- names --------------------------------------------------------------------------

    def _collect_aliases(self) -> None:
        """Imported names (and `mm = torch.matmul` style rebindings) to dotted module paths."""
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.aliases[alias.asname] = alias.name
                    else:
                        root = alias.name.split(".")[0]
                        self.aliases[root] = root
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    if alias.name != "*":
                        self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for name in ("exec", "eval", "compile", "__import__", "getattr", "setattr", "vars"):
            self.aliases.setdefault(name, f"builtins.{name}")
        for _ in range(3):  # chains of rebindings
            for node in ast.walk(self.tree):
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    qual = self.qual(node.value) if isinstance(node.value, (ast.Name, ast.Attribute)) else None
                    if qual and node.targets[0].id not in self.aliases:
                        self.aliases[node.targets[0].id] = qual
        for name in self._locally_defined_builtins():
            self.aliases.pop(name, None)

    def _locally_defined_builtins(self) -> set[str]:
        builtins_ = {"exec", "eval", "compile", "__import__", "getattr", "setattr", "vars"}
        out = set()
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in builtins_:
                out.add(node.name)
            elif isinstance(node, ast.arg) and node.arg in builtins_:
                out.add(node.arg)
        return out

    def qual(self, node: ast.AST) -> str | None:
        """`F.relu` -> 'torch.nn.functional.relu'; None when the root is not an imported name."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.qual(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Call) and node.args:
            func = self.qual(node.func)
            if func == "builtins.getattr" and len(node.args) >= 2:
                base = self.qual(node.args[0])
                name = node.args[1]
                if base and isinstance(name, ast.Constant) and isinstance(name.value, str):
                    return f"{base}.{name.value}"
                return f"{base}.<dynamic>" if base else None
            if func == "builtins.vars":
                base = self.qual(node.args[0])
                return f"{base}.__dict__" if base else None
        return None

    def add(self, code: str, message: str, node: ast.AST | None, severity: Severity = Severity.CRITICAL) -> None:
        evidence = (ast.get_source_segment(self.code, node) or ast.unparse(node)) if node is not None else ""
        self.findings.append(Finding(code, severity, message, evidence[:_EVIDENCE]))

    # ---- structure ------------------------------------------------------------------------

    def _is_jit(self, decorator: ast.AST) -> bool:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        return self.qual(target) in ("triton.jit", "triton.runtime.jit.jit", "triton.runtime.jit")

    def _find_kernels(self, top: list[ast.stmt]) -> dict[str, ast.AST]:
        kernels: dict[str, ast.AST] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, _FUNCS) and any(self._is_jit(d) for d in node.decorator_list):
                kernels[node.name] = node
        for stmt in top:  # kernel = triton.jit(fn), possibly wrapped in triton.autotune(...)(...)
            if isinstance(stmt, ast.Assign) and any(
                isinstance(n, ast.Call) and self._is_jit(n.func) for n in ast.walk(stmt.value)
            ):
                for target in stmt.targets:
                    for name in _names(target):
                        kernels[name] = stmt
        return kernels

    def _is_container(self, value: ast.AST) -> bool:
        if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)):
            return True
        if isinstance(value, ast.Call):
            func = value.func
            name = func.id if isinstance(func, ast.Name) and func.id in ("dict", "list", "set") else self.qual(func)
            return name in _CONTAINER_CALLS
        return False

    def _value_kind(self, value: ast.AST) -> str:
        """What a `self.<attr> = value` holds: tensor, nn, nn_container, torch_fn, local:<Class>, container."""
        if isinstance(value, ast.Call):
            qual = self.qual(value.func) or ""
            last = qual.rsplit(".", 1)[-1]
            if qual.startswith("torch.nn.") and last[:1].isupper():
                if last in _NN_NOT_MODULES:
                    return "tensor"
                return "nn_container" if last in _NN_CONTAINERS else "nn"
            if qual.startswith("torch.") and qual not in _TORCH_HELPERS:
                return "tensor"
            if isinstance(value.func, ast.Name) and value.func.id in self.classes:
                return f"local:{value.func.id}"
        elif isinstance(value, (ast.Name, ast.Attribute)):
            if isinstance(value, ast.Name) and value.id in self.kernels:
                return "kernel"
            qual = self.qual(value) or ""
            if qual.startswith("torch.nn.functional.") or (
                qual.startswith("torch.") and qual.rsplit(".", 1)[-1] in _COMPUTE_METHODS
            ):
                return "torch_fn"
        if self._is_container(value):
            return "container"
        return "other"

    def _attr_kinds(self, cls: ast.ClassDef) -> dict[str, str]:
        kinds: dict[str, str] = {}
        for stmt in cls.body:
            if isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    for name in _names(target):
                        kinds[name] = self._value_kind(stmt.value)
        for func in (s for s in cls.body if isinstance(s, _FUNCS)):
            params = _params(func)
            if not params or _is_staticmethod(func):
                continue
            me = params[0].arg
            for node in _walk_body(func):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if (
                            isinstance(target, ast.Attribute)
                            and isinstance(target.value, ast.Name)
                            and target.value.id == me
                        ):
                            kind = self._value_kind(node.value)
                            if kind != "other" or target.attr not in kinds:
                                kinds[target.attr] = kind
                elif (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("register_buffer", "register_parameter")
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    kinds[node.args[0].value] = "tensor"
        return kinds

    def _method(self, cls: ast.ClassDef, name: str, seen: frozenset[str] = frozenset()) -> _FuncNode | None:
        """A method of a class defined here, looking through bases defined here."""
        for stmt in cls.body:
            if isinstance(stmt, _FUNCS) and stmt.name == name:
                return stmt
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Name) and stmt.value.id in self.funcs:
                if any(name in _names(t) for t in stmt.targets):  # forward = _forward_impl
                    return self.funcs[stmt.value.id]
        for base in cls.bases:
            if isinstance(base, ast.Name) and base.id in self.classes and base.id not in seen:
                found = self._method(self.classes[base.id], name, seen | {cls.name})
                if found:
                    return found
        return None

    def _class_kinds(self, cls: ast.ClassDef) -> dict[str, str]:
        kinds: dict[str, str] = {}
        for base in cls.bases:
            if isinstance(base, ast.Name) and base.id in self.classes and base.id != cls.name:
                kinds.update(self.attr_kinds[base.id])
        kinds.update(self.attr_kinds[cls.name])
        return kinds

    def _me(self, func: ast.AST) -> tuple[str | None, ast.ClassDef | None]:
        cls = self.owner.get(func)
        if cls is None or not isinstance(func, _FUNCS) or _is_staticmethod(func):
            return None, cls
        params = _params(func)
        return (params[0].arg if params else None), cls

    # ---- reachability and tensor values ------------------------------------------------

    def _callees(self, func: ast.AST, call: ast.Call) -> list[tuple[_FuncNode, bool]]:
        """Functions of this module a call runs, each with whether its first parameter is implicit."""
        me, cls = self._me(func)
        target = call.func
        found: list[tuple[_FuncNode | None, bool]] = []
        if isinstance(target, ast.Name):
            if target.id in self.funcs:
                found.append((self.funcs[target.id], False))
            elif target.id in self.classes:
                other = self.classes[target.id]
                found += [(self._method(other, m), True) for m in ("__init__", "forward", "__call__")]
        elif isinstance(target, ast.Attribute):
            base = target.value
            if isinstance(base, ast.Name) and base.id == me and cls is not None:
                method = self._method(cls, target.attr)
                if method is not None:
                    found.append((method, not _is_staticmethod(method)))
                kind = self._class_kinds(cls).get(target.attr, "")
                if kind.startswith("local:"):
                    other = self.classes[kind[6:]]
                    found += [(self._method(other, m), True) for m in ("forward", "__call__")]
            elif isinstance(base, ast.Name) and base.id in self.classes:
                other = self.classes[base.id]
                if target.attr == "apply":  # torch.autograd.Function defined here: forward(ctx, ...)
                    found.append((self._method(other, "forward"), True))
                else:
                    method = self._method(other, target.attr)
                    found.append((method, False))
            elif (
                isinstance(base, ast.Call)
                and isinstance(base.func, ast.Name)
                and base.func.id == "super"
                and cls is not None
            ):
                for b in cls.bases:
                    if isinstance(b, ast.Name) and b.id in self.classes:
                        found.append((self._method(self.classes[b.id], target.attr), True))
            elif (
                isinstance(base, ast.Attribute)
                and isinstance(base.value, ast.Name)
                and base.value.id == me
                and cls is not None
                and target.attr in ("forward", "__call__")
            ):
                kind = self._class_kinds(cls).get(base.attr, "")
                if kind.startswith("local:"):
                    found.append((self._method(self.classes[kind[6:]], target.attr), True))
        return [(f, bound) for f, bound in found if f is not None]

    def _tensor(self, node: ast.AST, func: ast.AST, local: set[str]) -> bool:
        """Whether an expression in `func` clearly holds a tensor (see the module docstring)."""
        me, cls = self._me(func)
        if isinstance(node, ast.Name):
            return node.id in local
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == me and cls is not None:
                return self._class_kinds(cls).get(node.attr) == "tensor"
            if (
                node.attr in _MODULE_TENSOR_ATTRS
                and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name)
                and node.value.value.id == me
                and cls is not None
            ):
                return self._class_kinds(cls).get(node.value.attr) == "nn"
            return node.attr in _TENSOR_ATTRS and self._tensor(node.value, func, local)
        if isinstance(node, ast.Subscript):
            return self._tensor(node.value, func, local)
        if isinstance(node, ast.Starred):
            return self._tensor(node.value, func, local)
        if isinstance(node, ast.BinOp):
            return isinstance(node.op, ast.MatMult) or any(
                self._tensor(side, func, local) for side in (node.left, node.right)
            )
        if isinstance(node, ast.UnaryOp):
            return not isinstance(node.op, ast.Not) and self._tensor(node.operand, func, local)
        if isinstance(node, ast.IfExp):
            return self._tensor(node.body, func, local) or self._tensor(node.orelse, func, local)
        if isinstance(node, ast.NamedExpr):
            return self._tensor(node.value, func, local)
        if isinstance(node, ast.Call):
            qual = self.qual(node.func)
            if qual is not None:
                return qual.startswith("torch.") and qual not in _TORCH_HELPERS
            if isinstance(node.func, ast.Attribute):
                method = node.func.attr
                if method in _COMPUTE_METHODS and method not in _AMBIGUOUS_METHODS:
                    return True
                if method not in _NON_TENSOR_METHODS and self._tensor(node.func.value, func, local):
                    return True
                if self._nn_call(node, func):
                    return True
            return any(callee in self.returns_tensor for callee, _ in self._callees(func, node))
        return False

    def _nn_call(self, call: ast.Call, func: ast.AST) -> bool:
        """`self.linear(x)`, `self.linear.forward(x)`, `self.layers[i](x)`, `_mod(x)`: running a torch nn module."""
        me, cls = self._me(func)
        target = call.func
        if isinstance(target, ast.Attribute) and target.attr in ("forward", "__call__"):
            target = target.value
        if isinstance(target, ast.Subscript):
            target = target.value
        if isinstance(target, ast.Name):
            return target.id in self.module_nn or target.id in self._nn_loop_names(func)
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == me and cls:
            if self._method(cls, target.attr) is not None:
                return False
            return self._class_kinds(cls).get(target.attr) in ("nn", "nn_container", "torch_fn")
        return False

    def _nn_loop_names(self, func: ast.AST) -> set[str]:
        """`for layer in self.layers:` (or `enumerate(self.layers)`) over torch nn modules held in self."""
        me, cls = self._me(func)
        if cls is None:
            return set()
        kinds = self._class_kinds(cls)
        names: set[str] = set()
        for node in _walk_body(func):
            if isinstance(node, (ast.For, ast.comprehension)) and any(
                isinstance(part, ast.Attribute)
                and isinstance(part.value, ast.Name)
                and part.value.id == me
                and kinds.get(part.attr) in ("nn", "nn_container")
                for part in ast.walk(node.iter)
            ):
                names.update(_names(node.target))
        return names

    def _local_tensors(self, func: ast.AST) -> set[str]:
        local = set(self.tensor_params.get(func, set()))
        changed = True
        while changed:
            changed = False
            for node in _walk_body(func):
                pairs: list[tuple[ast.AST, ast.AST]] = []
                if isinstance(node, ast.Assign):
                    pairs = [(t, node.value) for t in node.targets]
                elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)) and node.value is not None:
                    pairs = [(node.target, node.value)]
                elif isinstance(node, (ast.For, ast.comprehension)):
                    pairs = [(node.target, node.iter)]
                for target, value in pairs:
                    if (
                        isinstance(target, ast.Tuple)
                        and isinstance(value, ast.Tuple)
                        and len(target.elts) == len(value.elts)
                    ):
                        pairs += list(zip(target.elts, value.elts, strict=True))  # unpacked pairwise
                        continue
                    if self._tensor(value, func, local):
                        new = set(_names(target)) - local
                        if new:
                            local |= new
                            changed = True
        return local

    def _initial_params(self, func: _FuncNode) -> set[str]:
        """forward's parameters but `self` and those typed or defaulted as Python scalars (`dim: int = 1`)."""
        positional = _params(func)
        defaults = [None] * (len(positional) - len(func.args.defaults)) + list(func.args.defaults)
        pairs = [
            *list(zip(positional, defaults, strict=True))[1:],
            *zip(func.args.kwonlyargs, func.args.kw_defaults, strict=True),
        ]
        out = set()
        for param, default in pairs:
            annotation = ast.unparse(param.annotation) if param.annotation else ""
            if annotation.split(".")[-1] in _NON_TENSOR_PARAM_TYPES:
                continue
            if isinstance(default, ast.Constant) and default.value is not None:
                continue
            out.add(param.arg)
        if func.args.vararg:
            out.add(func.args.vararg.arg)
        return out

    def _annotated_tensors(self, func: _FuncNode) -> set[str]:
        every = [*_params(func), *func.args.kwonlyargs]
        return {a.arg for a in every if a.annotation is not None and "Tensor" in ast.unparse(a.annotation)}

    def reach(self, forward: _FuncNode) -> list[ast.AST]:
        """Functions reachable from forward, computing which of their names hold tensors."""
        order: list[ast.AST] = [forward]
        self.tensor_params[forward] = self._initial_params(forward) | self._annotated_tensors(forward)
        changed = True
        while changed:
            changed = False
            for func in list(order):
                local = self._local_tensors(func)
                self.local_tensors[func] = local
                returns = any(
                    isinstance(n, ast.Return) and n.value is not None and self._tensor(n.value, func, local)
                    for n in _walk_body(func)
                )
                if returns and func not in self.returns_tensor:
                    self.returns_tensor.add(func)
                    changed = True
                for node in _walk_body(func):
                    targets: list[tuple[_FuncNode, bool, ast.Call | None]] = []
                    if isinstance(node, ast.Call):
                        targets = [(f, bound, node) for f, bound in self._callees(func, node)]
                    elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in self.funcs:
                        targets = [(self.funcs[node.id], False, None)]
                    for callee, bound, call in targets:
                        if callee not in self.tensor_params:
                            self.tensor_params[callee] = self._annotated_tensors(callee)
                            order.append(callee)
                            changed = True
                        if call is None:
                            continue
                        params = [p.arg for p in _params(callee)][1 if bound else 0 :]
                        passed = [
                            p
                            for p, a in zip(params, call.args, strict=False)
                            if not isinstance(a, ast.Starred) and self._tensor(a, func, local)
                        ]
                        passed += [k.arg for k in call.keywords if k.arg and self._tensor(k.value, func, local)]
                        new = set(passed) - self.tensor_params[callee]
                        if new:
                            self.tensor_params[callee] |= new
                            changed = True
        return order

    # ---- rules ----------------------------------------------------------------------------

    def check_kernels_and_launches(self, model_new: ast.ClassDef | None, reach: list[ast.AST]) -> None:
        if not self.kernels:
            self.add("no_triton_kernel", "defines no @triton.jit kernel", None)
        if model_new is None:
            classes = ", ".join(self.classes) or "none"
            self.add("kernel_not_launched", f"defines no class ModelNew (classes: {classes})", None)
            return
        forward = self._method(model_new, "forward")
        if forward is None:
            self.add("kernel_not_launched", "ModelNew has no forward method", model_new)
            return
        if self.kernels and not any(self._launches(func) for func in reach):
            names = ", ".join(self.kernels)
            self.add("kernel_not_launched", f"ModelNew.forward never launches a kernel ({names})", forward)

    def _launches(self, func: ast.AST) -> bool:
        me, cls = self._me(func)
        aliases = set(self.kernels)
        for node in _walk_body(func):  # k = add_kernel; k = a_kernel if cond else b_kernel
            if isinstance(node, ast.Assign):
                value = node.value
                options = [value.body, value.orelse] if isinstance(value, ast.IfExp) else [value]
                if all(isinstance(o, ast.Name) and o.id in self.kernels for o in options):
                    for target in node.targets:
                        aliases.update(_names(target))
        for node in _walk_body(func):
            if not isinstance(node, ast.Call):
                continue
            target = node.func
            if isinstance(target, ast.Attribute) and target.attr == "run":  # kernel.run(..., grid=...)
                target = target.value
            elif isinstance(target, ast.Subscript):
                target = target.value
                if isinstance(target, ast.Call) and target.args:  # torch.library.wrap_triton(kernel)[grid]
                    target = target.args[0]
            else:
                continue
            if isinstance(target, ast.Name) and target.id in aliases:
                return True
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == me:
                if cls is not None and self._class_kinds(cls).get(target.attr) == "kernel":
                    return True
            if isinstance(target, ast.Attribute) and target.attr in self.kernels:
                return True
        return False

    def check_torch_compute(self, reach: list[ast.AST]) -> None:
        msg = "computes with torch instead of a Triton kernel"
        for func in reach:
            local = self.local_tensors.get(func, set())

            def tensor(node: ast.AST, func: ast.AST = func, local: set[str] = local) -> bool:
                return self._tensor(node, func, local)

            for node in _walk_body(func):
                if isinstance(node, ast.Call):
                    self._check_call(node, func, local, msg)
                elif isinstance(node, (ast.Name, ast.Attribute)) and self._torch_fn_value(node):
                    self.add("torch_compute_in_forward", f"{msg} (passes {self.qual(node)} around)", node)
                elif isinstance(node, ast.BinOp):
                    if isinstance(node.op, ast.MatMult):
                        self.add("torch_compute_in_forward", f"{msg} (@ operator)", node)
                    elif isinstance(node.op, _ARITH_OPS) and (tensor(node.left) or tensor(node.right)):
                        self.add("torch_compute_in_forward", f"{msg} (arithmetic on tensors)", node)
                elif isinstance(node, ast.AugAssign):
                    if isinstance(node.op, ast.MatMult) or tensor(node.target) or tensor(node.value):
                        self.add("torch_compute_in_forward", f"{msg} (in-place arithmetic on tensors)", node)
                elif isinstance(node, ast.UnaryOp):
                    if isinstance(node.op, (ast.USub, ast.UAdd, ast.Invert)) and tensor(node.operand):
                        self.add("torch_compute_in_forward", f"{msg} (unary operator on a tensor)", node)
                elif isinstance(node, ast.Compare):
                    if any(isinstance(op, _VALUE_COMPARES) for op in node.ops) and any(
                        tensor(side) for side in (node.left, *node.comparators)
                    ):
                        self.add("torch_compute_in_forward", f"{msg} (elementwise comparison on tensors)", node)

    def _torch_fn_value(self, node: ast.Name | ast.Attribute) -> bool:
        """`partial(torch.matmul, ...)`, `map(F.relu, xs)`: a torch op used as a value, not called here."""
        parent = self.parents.get(node)
        if not isinstance(node.ctx, ast.Load) or (isinstance(parent, ast.Call) and parent.func is node):
            return False
        if isinstance(parent, ast.Attribute) and self.qual(parent):
            return False
        return self._value_kind(node) == "torch_fn"

    def _check_call(self, node: ast.Call, func: ast.AST, local: set[str], msg: str) -> None:
        qual = self.qual(node.func)
        if qual is not None:
            root = qual.split(".")[0]
            if self._forbidden(qual):
                return  # reported as forbidden_construct
            if qual.startswith("torch.nn.functional.") or qual.startswith("torch.Tensor."):
                if not qual.startswith("torch.Tensor.") or qual.rsplit(".", 1)[-1] in _COMPUTE_METHODS:
                    self.add("torch_compute_in_forward", f"{msg} ({qual})", node)
            elif root == "torch" and qual not in _TORCH_ALLOWED:
                self.add("torch_compute_in_forward", f"calls {qual}, outside the allocation/view allow-list", node)
            elif qual.startswith("triton.ops"):
                self.add("torch_compute_in_forward", f"uses a library kernel ({qual}) instead of its own", node)
            elif root in _LIBRARY_ROOTS and qual not in _LIBRARY_ALLOWED:
                self.add("torch_compute_in_forward", f"computes with {root} instead of a Triton kernel", node)
            elif qual in ("operator.matmul", "operator.imatmul"):
                self.add("torch_compute_in_forward", f"{msg} ({qual})", node)
            elif qual == "builtins.getattr" and len(node.args) >= 2:
                name = node.args[1]
                if isinstance(name, ast.Constant) and name.value in _COMPUTE_METHODS:
                    if name.value not in _AMBIGUOUS_METHODS or self._tensor(node.args[0], func, local):
                        self.add("torch_compute_in_forward", f"{msg} (getattr {name.value!r})", node)
            return
        if self._nn_call(node, func):
            self.add("torch_compute_in_forward", f"{msg} (runs a torch nn module)", node)
            return
        target = node.func
        if isinstance(target, ast.Attribute):
            me, cls = self._me(func)
            if isinstance(target.value, ast.Name) and target.value.id == me and cls is not None:
                return  # own methods are followed, not judged by name
            if target.attr in _COMPUTE_METHODS and (
                target.attr not in _AMBIGUOUS_METHODS or self._tensor(target.value, func, local)
            ):
                self.add("torch_compute_in_forward", f"{msg} (tensor method .{target.attr})", node)
        elif isinstance(target, ast.Name) and target.id in _TENSOR_BUILTINS and target.id not in self.defined:
            items = [
                item
                for arg in node.args
                for item in (
                    arg.elts
                    if isinstance(arg, (ast.List, ast.Tuple, ast.Set))
                    else [arg.elt]
                    if isinstance(arg, (ast.GeneratorExp, ast.ListComp))
                    else [arg]
                )
            ]
            if any(self._tensor(item, func, local) for item in items):
                self.add("torch_compute_in_forward", f"{msg} (builtin {target.id} over tensors)", node)

    def _forbidden(self, qual: str) -> str | None:
        if qual in _COMPILE_ALLOWED:
            return None
        for prefix, why in _FORBIDDEN.items():
            if qual == prefix or qual.startswith(prefix + "."):
                return why
        if qual.startswith(_FORBIDDEN_RAW_PREFIXES):
            return "runs other programs"
        if "inductor" in qual:
            return "compiles torch code instead of writing kernels"
        return None

    def check_forbidden(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self._check_import(node)
            elif isinstance(node, (ast.Name, ast.Attribute, ast.Call)) and self._judged_chain(node):
                qual = self.qual(node)
                why = self._forbidden(qual) if qual else None
                if why:
                    parent = self.parents.get(node)
                    evidence = parent if isinstance(parent, ast.Call) and parent.func is node else node
                    self.add("forbidden_construct", f"uses {qual}: {why}", evidence)
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
                targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
                for target in targets:
                    patched = self._patched_module(target)
                    if patched:
                        self.add("forbidden_construct", f"patches {patched} for everyone (monkeypatching)", node)
            elif isinstance(node, ast.Call) and self.qual(node.func) == "builtins.setattr" and node.args:
                qual = self.qual(node.args[0])
                if qual and qual.split(".")[0] in _PATCHED_ROOTS:
                    self.add("forbidden_construct", f"patches {qual} for everyone (setattr)", node)

    def _judged_chain(self, node: ast.AST) -> bool:
        """Only the longest resolvable dotted chain is judged (`torch.cuda.Stream`, not `torch.cuda`)."""
        if not isinstance(getattr(node, "ctx", ast.Load()), ast.Load):
            return False
        if isinstance(node, ast.Call) and self.qual(node.func) not in ("builtins.getattr", "builtins.vars"):
            return False  # only getattr(torch, "compile") and vars(torch) resolve as calls
        parent = self.parents.get(node)
        return not (isinstance(parent, ast.Attribute) and self.qual(parent))

    def _check_import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            base = node.module or ""
            modules = [base, *(f"{base}.{a.name}" for a in node.names)]
            if base in ("torch", "torch.nn.functional") and any(a.name == "*" for a in node.names):
                self.add("star_import", "a star import from torch hides which ops run", node, Severity.WARNING)
        for module in modules:
            why = self._forbidden(module)
            if why:
                self.add("forbidden_construct", f"imports {module}: {why}", node)
                return

    def _patched_module(self, target: ast.AST) -> str | None:
        """The torch/triton/time module an assignment target writes into, following only its spine."""
        if isinstance(target, (ast.Tuple, ast.List)):
            return next((m for m in map(self._patched_module, target.elts) if m), None)
        if isinstance(target, ast.Starred):
            return self._patched_module(target.value)
        node = target
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            qual = self.qual(node.value)
            if qual and qual.split(".")[0] in _PATCHED_ROOTS:
                return qual
            node = node.value
        return None

    def check_fallback(self, model_new: ast.ClassDef | None, reach: list[ast.AST]) -> None:
        scope = list(reach)
        if model_new is not None:
            scope += [s for s in model_new.body if isinstance(s, _FUNCS) and s.name != "__init__"]
        seen: set[ast.AST] = set()
        for func in scope:
            for node in _walk_body(func):
                if node in seen:
                    continue
                seen.add(node)
                if isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
                    for handler in node.handlers:
                        if not all(isinstance(s, ast.Raise) for s in handler.body):
                            self.add("fallback_path", "catches a failure and carries on with something else", node)
                            break
                elif isinstance(node, ast.With):
                    for item in node.items:
                        ctx = item.context_expr
                        if isinstance(ctx, ast.Call) and self.qual(ctx.func) == "contextlib.suppress":
                            self.add("fallback_path", "suppresses kernel failures", node)

    def check_cache(self, model_new: ast.ClassDef | None, reach: list[ast.AST]) -> None:
        msg = "can memoise outputs across calls instead of computing them"
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.Name, ast.Attribute)) and not isinstance(self.parents.get(node), ast.Attribute):
                qual = self.qual(node)
                if qual and any(qual == c or qual.startswith(c + ".") for c in _CACHE_DECORATORS):
                    self.add("module_level_cache", f"uses {qual}: {msg}", node)
        mutated = set()
        for node in ast.walk(self.tree):
            name = self._mutated_name(node)
            if name is not None and self._enclosing_function(node) is not None:
                mutated.add(name)
        scope = list(reach)
        if model_new is not None:
            scope += [s for s in model_new.body if isinstance(s, _FUNCS) and s.name != "__init__"]
        seen: set[ast.AST] = set()
        for func in scope:
            local = self.local_tensors.get(func, set())
            me, cls = self._me(func)
            kinds = self._class_kinds(cls) if cls is not None else {}
            for node in _walk_body(func):
                if node in seen:
                    continue
                seen.add(node)
                if isinstance(node, ast.Global):
                    self.add("module_level_cache", f"declares global {', '.join(node.names)}: {msg}", node)
                elif isinstance(node, ast.Name) and node.id in self.containers:
                    if node.id in mutated and not self._shadowed(func, node.id):
                        parent = self.parents.get(node)
                        evidence = parent if isinstance(parent, (ast.Subscript, ast.Compare, ast.Attribute)) else node
                        self.add("module_level_cache", f"reads or writes module-level {node.id}: {msg}", evidence)
                stored = self._stored_value(node)
                if stored is not None:
                    container, value = stored
                    if (
                        isinstance(container, ast.Attribute)
                        and isinstance(container.value, ast.Name)
                        and container.value.id == me
                        and kinds.get(container.attr) == "container"
                        and value is not None
                        and self._tensor(value, func, local)
                    ):
                        self.add("module_level_cache", f"stores a tensor in self.{container.attr}: {msg}", node)

    def _mutated_name(self, node: ast.AST) -> str | None:
        if isinstance(node, (ast.Subscript,)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            base = node.value
            return base.id if isinstance(base, ast.Name) else None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _MUTATORS:
            base = node.func.value
            return base.id if isinstance(base, ast.Name) else None
        return None

    def _stored_value(self, node: ast.AST) -> tuple[ast.AST, ast.AST | None] | None:
        """(container, stored value) for `c[k] = v`, `c.setdefault(k, v)`, `c.append(v)`, `c.update(...)`."""
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Subscript):
                    return target.value, node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _MUTATORS:
            args = [*node.args, *(k.value for k in node.keywords)]
            return node.func.value, args[-1] if args else None
        return None

    def _enclosing_function(self, node: ast.AST) -> ast.AST | None:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, (*_FUNCS, ast.Lambda)):
                return node
        return None

    def _shadowed(self, func: ast.AST, name: str) -> bool:
        """A local of the same name (assigned in the function without `global`)."""
        if isinstance(func, _FUNCS) and name in {a.arg for a in _params(func)}:
            return True
        for node in _walk_body(func):
            if isinstance(node, ast.Global) and name in node.names:
                return False
        return any(
            isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Store)
            for node in _walk_body(func)
        )

    def check_reference(self, model_new: ast.ClassDef | None, reach: list[ast.AST]) -> None:
        ref = self.reference_module
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                else:
                    modules = [node.module or ""] + [a.name for a in node.names]
                for module in modules:
                    if (
                        "reference" in module.lower()
                        or module == ref
                        or module.startswith(ref + ".")
                        or module == "__main__"
                    ):
                        self.add("reference_access", f"imports the reference module ({module})", node)
                        break
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                parent = self.parents.get(node)
                if isinstance(parent, ast.Subscript) and self.qual(parent.value) == "sys.modules":
                    self.add("reference_access", "looks up a module by name in sys.modules", parent)
        if model_new is not None:
            for base in model_new.bases:
                if (isinstance(base, ast.Name) and base.id == "Model") or (
                    isinstance(base, ast.Attribute) and base.attr == "Model"
                ):
                    self.add("reference_access", "subclasses the reference Model", base)
        scope: list[ast.AST] = list(reach)
        if model_new is not None:
            scope.append(model_new)
        seen: set[ast.AST] = set()
        for func in scope:
            for node in _walk_body(func):  # a class's body: its bases were judged above
                if node in seen or not isinstance(node, ast.Name) or not isinstance(node.ctx, ast.Load):
                    continue
                seen.add(node)
                if node.id == "Model":
                    self.add("reference_access", "uses the reference Model", self.parents.get(node, node))
                elif node.id in ("get_inputs", "get_init_inputs") and func is not model_new:
                    self.add("reference_access", f"reads {node.id} from forward", self.parents.get(node, node))


def check_triton(code: str, *, reference_module: str = "reference") -> list[Finding]:
    """Findings for a Triton candidate; raises CandidateSyntaxError if it does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise CandidateSyntaxError(str(exc)[:300]) from None
    checker = _Checker(code, tree, reference_module)
    model_new = checker.classes.get("ModelNew")
    forward = checker._method(model_new, "forward") if model_new is not None else None
    reach = checker.reach(forward) if forward is not None else []
    checker.check_kernels_and_launches(model_new, reach)
    checker.check_torch_compute(reach)
    checker.check_forbidden()
    checker.check_fallback(model_new, reach)
    checker.check_cache(model_new, reach)
    checker.check_reference(model_new, reach)
    return dedupe(checker.findings)
