"""Where the harness enters the candidate: `ModelNew(*get_init_inputs())`, then `forward`.

Everything the checker analyses is reached from these two calls; `__init__` runs in the
SETUP context (it may build parameters), `forward` in FORWARD (it may only launch
kernels, allocate, view and move data). A kernel launch must be reachable from forward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.triton.allowlist.functions import forward_args, init_args
from sandbox.triton.allowlist.module import is_static
from sandbox.triton.allowlist.report import Code
from sandbox.triton.allowlist.tables import Context
from sandbox.triton.allowlist.values import Kind, Value

if TYPE_CHECKING:
    from sandbox.triton.allowlist.analysis import Analysis


def check_model(an: Analysis) -> None:
    module = an.module
    cls = module.classes.get("ModelNew")
    if cls is None:
        names = ", ".join(module.classes) or "none"
        an.reject(None, f"defines no class ModelNew (classes: {names})", Code.NOT_LAUNCHED)
        return
    if cls.kind != "module":
        an.reject(cls.node, "ModelNew does not derive from nn.Module (alone): the checker cannot follow it")
        return
    found = module.method(cls, "forward")
    if found is None:
        an.reject(cls.node, "ModelNew has no forward method", Code.NOT_LAUNCHED)
        return
    instance = Value(Kind.INSTANCE, cls.name)
    init = module.method(cls, "__init__")
    if init is not None:
        an.run_function(init[1], init_args(), Context.SETUP, owner=init[0], bound=instance)
    owner, forward = found
    bound = None if is_static(forward) else instance
    an.run_function(forward, forward_args(forward, bound is not None), Context.FORWARD, owner=owner, bound=bound)
    if module.kernels and not an.launched:
        names = ", ".join(module.kernels)
        an.reject(forward, f"ModelNew.forward never launches a kernel ({names})", Code.NOT_LAUNCHED)
