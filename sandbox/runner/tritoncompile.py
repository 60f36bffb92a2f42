"""Compile the candidate's kernels ahead of time for a real GPU, in a process of its own.

The CPU interpreter accepts Python that `triton.compile` rejects, and a kernel that does
not compile would never run where the reward is meant to pay. So every kernel the
interpreter launched is also compiled for a GPU target (no GPU needed: the PTX assembler
ships with triton), with the argument types of its first launch.

Why a separate job, on a runner of its own: triton decides at import time whether it is
the interpreter or the compiler (its standard-library kernels are built one way or the
other), and a process that imported it as one cannot become the other. The service sends
the launches the interpreting job reported (untrusted data, checked there and here).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from messages import Tag

_MAX_ERROR = 2000


def _jit_function(module: Any, name: str) -> Any:
    from triton.runtime.jit import JITFunction

    kernel = getattr(module, name, None)
    for _ in range(8):  # autotune / heuristics wrappers hold the JIT function in .fn
        if isinstance(kernel, JITFunction) or kernel is None:
            break
        kernel = getattr(kernel, "fn", None)
    if not isinstance(kernel, JITFunction):
        raise LookupError(f"no module-level @triton.jit kernel named {name!r}")
    return kernel


def compile_kernels(
    source_path: str, module_name: str, launches: list[dict[str, Any]], target: dict[str, Any]
) -> list[dict[str, Any]]:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    try:
        spec = importlib.util.spec_from_file_location(module_name, source_path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except BaseException as exc:  # noqa: BLE001 - it loaded under the interpreter; report why not here
        error = "".join(traceback.format_exception_only(type(exc), exc))[-_MAX_ERROR:]
        return [{"t": Tag.COMPILE, "kernel": str(item.get("kernel")), "ok": False, "error": error} for item in launches]
    gpu = GPUTarget(target["backend"], target["arch"], target["warp_size"])
    records = []
    for launch in launches:
        name = str(launch.get("kernel"))
        try:
            source = ASTSource(
                fn=_jit_function(module, name), signature=launch["signature"], constexprs=launch["constants"]
            )
            compiled = triton.compile(source, target=gpu, options=launch.get("options") or {})
            records.append({"t": Tag.COMPILE, "kernel": name, "ok": True, "stages": sorted(compiled.asm)})
        except BaseException as exc:  # noqa: BLE001 - a compile error is the candidate's
            error = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-_MAX_ERROR:]
            records.append({"t": Tag.COMPILE, "kernel": name, "ok": False, "error": error})
    return records


def run(job: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> None:
    os.mkdir("aot", 0o700)
    path = os.path.abspath(os.path.join("aot", "model_new.py"))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(job["code"])
    for record in compile_kernels(path, "model_new", job["launches"], job["aot_target"]):
        emit(record)
    emit({"t": Tag.COMPILED})
