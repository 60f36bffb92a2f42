"""Calling a function of the candidate: binding its arguments' kinds and analysing its body.

Analysis is per call shape (function, context, argument kinds), so a helper called with
a tensor is judged with a tensor, and one called only with ints is judged with ints.
Functions nobody reaches are never analysed: nothing can run them (no dynamic lookup is
allowed), so they may hold anything, e.g. a copy of `get_inputs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.triton.allowlist.args import Args
from sandbox.triton.allowlist.guard import Unanalyzable
from sandbox.triton.allowlist.scope import Scope
from sandbox.triton.allowlist.tables import Context
from sandbox.triton.allowlist.values import REJECTED, SCALAR, Kind, Value, join, sequence

if TYPE_CHECKING:
    from sandbox.triton.allowlist.module import ClassModel, FuncNode
    from sandbox.triton.allowlist.walker import Walker

MAX_CALL_DEPTH = 24


def call_function(
    an: Walker,
    func: FuncNode,
    args: Args,
    context: Context,
    *,
    owner: ClassModel | None = None,
    bound: Value | None = None,
) -> Value:
    env = _bind(func, args, bound)
    key = (id(func), context, owner.name if owner else "", tuple(env.items()))
    if key in an.memo:
        return an.memo[key]
    if key in an.active:
        return an.reject(func, f"{func.name} calls itself: recursion is not followed")
    if len(an.active) >= MAX_CALL_DEPTH:
        raise Unanalyzable(f"calls nest over {MAX_CALL_DEPTH} deep")
    an.active.append(key)
    scope = Scope(context, dict(env), owner, bound)
    an.run_block(scope, func.body)
    an.active.pop()
    result = scope.returned if scope.returned is not None else SCALAR
    an.memo[key] = result
    return result


def _bind(func: FuncNode, args: Args, bound: Value | None) -> dict[str, Value]:
    spec = func.args
    params = [*spec.posonlyargs, *spec.args]
    positional = list(args.positional)
    if bound is not None:
        positional.insert(0, bound)
    keywords = dict(args.keywords)
    env: dict[str, Value] = {}
    defaults = [None] * (len(params) - len(spec.defaults)) + list(spec.defaults)
    for index, (param, default) in enumerate(zip(params, defaults, strict=True)):
        if index < len(positional):
            env[param.arg] = positional[index]
        elif param.arg in keywords:
            env[param.arg] = keywords.pop(param.arg)
        elif args.star is not None:
            env[param.arg] = args.star
        elif default is not None:
            env[param.arg] = SCALAR  # defaults are constants (checked at import time)
        else:
            env[param.arg] = REJECTED  # a TypeError when called: nothing to judge
    for param, default in zip(spec.kwonlyargs, spec.kw_defaults, strict=True):
        env[param.arg] = keywords.pop(param.arg, SCALAR if default is not None else REJECTED)
    if spec.vararg is not None:
        extra = positional[len(params) :]
        star = [args.star] if args.star is not None else []
        env[spec.vararg.arg] = sequence([*extra, *star]) if extra or star else Value(Kind.SEQ, item=SCALAR)
    if spec.kwarg is not None:
        rest = [*keywords.values(), *([args.double_star] if args.double_star else [])]
        item = rest[0] if rest else SCALAR
        for value in rest[1:]:
            item = join(item, value)
        env[spec.kwarg.arg] = Value(Kind.DICT, item=item)
    return env


def forward_args(func: FuncNode, bound: bool = True) -> Args:
    """What the harness passes forward, `model(*inputs)`: anything positional may be a tensor.

    A positional parameter annotated `int` or defaulted to 1.0 still receives whatever the
    reference's get_inputs() put there, so it is judged as a tensor; only keyword-only
    parameters, which the harness never passes, keep their (constant) defaults.
    """
    spec = func.args
    params = [*spec.posonlyargs, *spec.args][1 if bound else 0 :]
    keywords = [(p.arg, Value(Kind.TENSOR)) for p in params]
    keywords += [
        (p.arg, SCALAR if d is not None else REJECTED) for p, d in zip(spec.kwonlyargs, spec.kw_defaults, strict=True)
    ]
    star = Value(Kind.TENSOR) if spec.vararg is not None else None
    return Args(keywords=tuple(keywords), star=star)


def init_args() -> Args:
    """What the harness passes __init__: get_init_inputs() (numbers, shapes, flags)."""
    return Args(star=SCALAR)
