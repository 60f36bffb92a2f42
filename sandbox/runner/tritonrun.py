"""Triton jobs inside the sandbox: the reference run and the candidate run, never together.

A *reference* job imports the task's PyTorch module, makes the inputs of every trial
(seeded) and runs `Model` on them; the service keeps what it returns and relays only the
inputs to *candidate* jobs, which import the candidate's module, build `ModelNew` with the
same seed (identical weights), run it on those inputs and return its outputs. Whether they
are right is decided on the trusted side: no expected value ever reaches this process.

While the candidate runs, this harness gathers evidence for the anti-cheat rules:
  - launches of the candidate's own `@triton.jit` kernels (a wrapper around the kernel
    launcher: the interpreter's grid executor on CPU, the JIT launcher on a GPU), with
    the argument types and compile-time constants of each, which also lets the kernels be
    compiled ahead of time for a real GPU when only the interpreter ran them;
  - every aten op executed by `forward` (a dispatch mode): outside the kernels, and apart
    from them the ops run while a launch is on the stack (where only the launcher's own
    copies belong), so torch compute that hides from the static checks still shows; a grid
    callable counts as outside (it is the candidate's code), and an in-kernel state found
    raised where no launch is running is reported as tampering;
  - a *ghost replay*: `forward` again with the kernels turned into no-ops and every
    uninitialised allocation poisoned; if its output still matches, the kernels did
    not produce it;
  - inputs unchanged by the call, outputs plain, materialised, not aliasing an input;
  - that the hooks are still in place after `forward` (tampering is reported).
The evidence comes from the candidate's own process and is treated as untrusted
(defence in depth behind the static checks; it can only lower a reward, and a report in
another shape than this harness writes is a finding of its own, `rewards/triton_report.py`);
correctness never depends on it.

In the interpreter, `@triton.autotune` takes its first config (after the kernel's own
pruning): there is no device to time the configs on.

On a GPU, both jobs also time their model (see `_time_model`).
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import tensors
import torch
from messages import Role, Tag
from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode_stack

CANDIDATE_MODULE = "model_new"
REFERENCE_MODULE = "reference"
_MAX_ERROR = 2000
_MAX_OPS = 200
_MAX_NAME = 200
_MAX_PROBLEM = 500

_UNINITIALISED = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"})


def _error(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[-_MAX_ERROR:]


def _trace(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-_MAX_ERROR:]


def _import(path: str, name: str, source: str) -> Any:
    """Import source from a file (Triton reads kernel source back with `inspect`)."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _build(cls: Any, init: Any, seed: int, device: str) -> Any:
    torch.manual_seed(seed)
    model = cls(*init)
    if isinstance(model, torch.nn.Module):
        model = model.to(device).eval()
    return model


def _outputs(value: Any) -> list[Any]:
    return list(value) if type(value) in (tuple, list) else [value]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---- the reference ----------------------------------------------------------------------


def run_reference(job: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> None:
    device = job["device"]
    try:
        module = _import(os.path.abspath("reference.py"), REFERENCE_MODULE, job["reference"])
        originals = dict(vars(module))
    except BaseException as exc:  # noqa: BLE001 - the task's reference is broken: reported, not ours
        emit({"t": Tag.ERROR, "where": "import", "error": _trace(exc)})
        return
    models: dict[int, Any] = {}
    inputs_by_trial: list[list[Any]] = []
    for index, trial in enumerate(job["trials"]):
        try:
            variant = job["variants"][trial["variant"]]
            vars(module).update(originals)
            vars(module).update(variant)
            torch.manual_seed(job["init_seed"])
            init = list(module.get_init_inputs())
            torch.manual_seed(trial["seed"])
            inputs = [x.to(device) if isinstance(x, torch.Tensor) else x for x in module.get_inputs()]
            if trial["variant"] not in models:
                models[trial["variant"]] = _build(module.Model, init, job["init_seed"], device)
            with torch.no_grad():
                output = models[trial["variant"]](*[x.clone() if isinstance(x, torch.Tensor) else x for x in inputs])
            _sync(device)
            emit(
                {
                    "t": Tag.TRIAL,
                    "index": index,
                    "init": tensors.encode(init),
                    "inputs": tensors.encode(inputs),
                    "output": tensors.encode(_outputs(output)),
                }
            )
            inputs_by_trial.append(inputs)
        except BaseException as exc:  # noqa: BLE001
            emit({"t": Tag.ERROR, "where": f"trial {index}", "error": _trace(exc)})
            return
    timing = job.get("timing")
    if timing:
        first = job["trials"][0]["variant"]
        same = [x for t, x in zip(job["trials"], inputs_by_trial, strict=True) if t["variant"] == first]
        median, spread, _ = _time_model(models[first], same, timing, device)
        emit({"t": Tag.TIMING, "median_ms": median, "spread": spread, "device_name": _device_name(device)})


# ---- evidence gathering -------------------------------------------------------------------


class Evidence(TorchDispatchMode):
    """Records aten ops, apart while a kernel launch runs; in ghost mode, poisons
    uninitialised allocations (then the kernels are no-ops, and nothing may pass for them)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()
        self.kernel_ops: collections.Counter[str] = collections.Counter()
        self.ghost = False
        self.in_kernel = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        result = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        (self.kernel_ops if self.in_kernel else self.ops)[name] += 1
        if self.ghost and name in _UNINITIALISED and isinstance(result, torch.Tensor):
            _poison(result)
        return result


def _poison(tensor: torch.Tensor) -> None:
    if tensor.is_floating_point():
        tensor.fill_(float("nan"))
    elif tensor.dtype is torch.bool:
        tensor.fill_(True)
    else:
        tensor.fill_(torch.iinfo(tensor.dtype).min)


class Launches:
    """Wraps the kernel launcher: counts launches of the candidate's kernels, notes their
    arguments (for ahead-of-time compilation), skips them in ghost mode, records the grid
    callable's ops as the candidate's, and notes an in-kernel state it did not set."""

    def __init__(self, evidence: Evidence) -> None:
        self.evidence = evidence
        self.counts: collections.Counter[str] = collections.Counter()
        self.calls: dict[str, tuple[Any, tuple[Any, ...], dict[str, Any]]] = {}
        self.ghost = False
        self.tampered = False
        self.launcher = _launcher_class()
        self.original = self.launcher.run
        harness = self

        def run(kernel: Any, *args: Any, grid: Any, warmup: bool, **kwargs: Any) -> Any:
            if evidence.in_kernel != 0:  # no launch runs inside another: it was raised by hand
                harness.tampered = True
            evidence.in_kernel = 0
            fn = getattr(kernel, "fn", None)
            own = getattr(fn, "__module__", None) == CANDIDATE_MODULE
            if own and not warmup:
                name = str(fn.__name__)[:_MAX_NAME]
                harness.counts[name] += 1
                harness.calls.setdefault(name, (kernel, args, kwargs))
                if harness.ghost:
                    return None
            evidence.in_kernel = 1
            try:
                return harness.original(kernel, *args, grid=harness.recorded(grid), warmup=warmup, **kwargs)
            finally:
                if evidence.in_kernel != 1:
                    harness.tampered = True
                evidence.in_kernel = 0

        self.wrapper = run
        self.launcher.run = run

    def recorded(self, grid: Any) -> Any:
        """The grid callable, evaluated by the launcher, runs as forward's own code: recorded."""
        if not callable(grid):
            return grid
        evidence = self.evidence

        def evaluate(meta: Any) -> Any:
            evidence.in_kernel = 0
            try:
                return grid(meta)
            finally:
                if evidence.in_kernel != 0:
                    self.tampered = True
                evidence.in_kernel = 1

        return evaluate

    def intact(self) -> bool:
        return self.launcher.__dict__.get("run") is self.wrapper


def _launcher_class() -> type:
    if os.environ.get("TRITON_INTERPRET") == "1":
        from triton.runtime.interpreter import InterpretedFunction

        return InterpretedFunction
    from triton.runtime.jit import JITFunction

    return JITFunction


def _hooks_intact(evidence: Evidence, launches: Launches) -> bool:
    return launches.intact() and any(mode is evidence for mode in _get_current_dispatch_mode_stack())


def _first_config_autotune() -> None:
    """The interpreter has no device to time `@triton.autotune` configs on (triton asks for a
    driver and finds none): each autotuner takes its first config after the kernel's own
    pruning, deterministically. The launch it makes carries that config's constants and
    options, which is what the ahead-of-time compile then gets."""
    from triton.runtime.autotuner import Autotuner

    prune = Autotuner.prune_configs

    def first(self: Any, kwargs: dict[str, Any]) -> list[Any]:
        return prune(self, kwargs)[:1]

    Autotuner.prune_configs = first  # type: ignore[method-assign]


@contextlib.contextmanager
def _quiet_errors() -> Iterator[None]:
    try:
        yield
    except BaseException:  # noqa: BLE001 - evidence gathering must not stop the report
        pass


# ---- the candidate ------------------------------------------------------------------------


def _storages(values: list[Any]) -> list[tuple[int, int]]:
    spans = []
    for value in values:
        if isinstance(value, torch.Tensor) and value.numel():
            storage = value.untyped_storage()
            spans.append((storage.data_ptr(), storage.data_ptr() + storage.nbytes()))
    return spans


def _check_outputs(outputs: list[Any], inputs: list[Any], device: str) -> list[str] | None:
    """[code, why] when these outputs are not plain results; None when they are."""
    spans = _storages(inputs)
    for number, out in enumerate(outputs):
        if type(out) is not torch.Tensor:
            kind = f"{type(out).__module__}.{type(out).__qualname__}"[:_MAX_NAME]
            code = "not_plain_tensor" if isinstance(out, torch.Tensor) else "not_tensor"
            return [code, f"output {number} is a {kind}, not a plain torch.Tensor"]
        if out.device.type != torch.device(device).type:
            return ["wrong_device", f"output {number} is on {out.device}, expected {device}"]
        if any(stride == 0 and size > 1 for stride, size in zip(out.stride(), out.shape, strict=True)):
            return ["not_materialised", f"output {number} is not materialised (an expanded view with stride 0)"]
        if out.numel():
            start = out.untyped_storage().data_ptr()
            end = start + out.untyped_storage().nbytes()
            if any(start < hi and lo < end for lo, hi in spans):
                return ["aliases_input", f"output {number} shares memory with an input"]
    return None


def _fresh(inputs: list[Any]) -> list[Any]:
    return [x.clone() if isinstance(x, torch.Tensor) else x for x in inputs]


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


def _unchanged(before: list[Any], after: list[Any]) -> bool:
    """Bit for bit (NaN inputs included); shape, dtype and strides too."""
    for a, b in zip(before, after, strict=True):
        if isinstance(a, torch.Tensor):
            if not isinstance(b, torch.Tensor) or (a.dtype, a.shape, a.stride()) != (b.dtype, b.shape, b.stride()):
                return False
            if not torch.equal(_bits(a), _bits(b)):
                return False
    return True


def run_candidate(job: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> None:
    device = job["device"]
    trials = [
        (tensors.decode(t["init"], device), tensors.decode(t["inputs"], device), t["variant"]) for t in job["trials"]
    ]
    if os.environ.get("TRITON_INTERPRET") == "1":
        _first_config_autotune()
    evidence = Evidence()
    launches = Launches(evidence)
    try:
        module = _import(os.path.abspath("model_new.py"), CANDIDATE_MODULE, job["code"])
        models = {}
        for init, _, variant in trials:
            if variant not in models:
                models[variant] = _build(module.ModelNew, list(init), job["init_seed"], device)
    except BaseException as exc:  # noqa: BLE001 - the candidate does not load
        emit({"t": Tag.LOAD, "ok": False, "error": _trace(exc)})
        return
    emit({"t": Tag.LOAD, "ok": True})

    def call(model: Any, inputs: list[Any]) -> tuple[Any, bool]:
        """forward's output, and whether it tampered with the harness's hooks or state."""
        evidence.in_kernel, launches.tampered = 0, False
        with torch.no_grad(), evidence:
            out = model(*inputs)
            intact = _hooks_intact(evidence, launches)
        tampered = not intact or launches.tampered or evidence.in_kernel != 0
        evidence.in_kernel, launches.tampered = 0, False
        _sync(device)
        return out, tampered

    first_outputs: list[Any] | None = None
    reported: set[str] = set()
    for index, (_, inputs, variant) in enumerate(trials):
        given = _fresh(inputs)
        evidence.ops.clear()
        evidence.kernel_ops.clear()
        launches.counts.clear()
        record: dict[str, Any] = {"t": Tag.TRIAL, "index": index}
        started = time.perf_counter()
        try:
            out, tampered = call(models[variant], given)
            ms = round((time.perf_counter() - started) * 1000, 3)
            outputs = _outputs(out)
            checks = {"ms": ms, "tampered": tampered, "inputs_changed": not _unchanged(inputs, given)}
            checks["problem"] = _check_outputs(outputs, given, device)
            if checks["problem"] is None:
                checks["output"] = tensors.encode(outputs)
            record.update(checks)  # all of them, or (the trial raised) none
            if index == 0 and "output" in checks:
                first_outputs = outputs
        except BaseException as exc:  # noqa: BLE001 - a failing trial is the candidate's
            record["error"] = _trace(exc)
        record["launches"] = dict(launches.counts.most_common(_MAX_OPS))
        record["ops"] = dict(evidence.ops.most_common(_MAX_OPS))
        record["kernel_ops"] = dict(evidence.kernel_ops.most_common(_MAX_OPS))
        emit(record)
        _report_launches(launches, reported, emit)
    if first_outputs is None:
        return
    _, inputs0, variant0 = trials[0]
    with _quiet_errors():  # determinism: the first trial again
        out, tampered = call(models[variant0], _fresh(inputs0))
        emit({"t": Tag.RERUN, "output": tensors.encode(_outputs(out)), "tampered": tampered})
    ghost: dict[str, Any] = {"t": Tag.GHOST}
    tampered = False
    evidence.ghost = launches.ghost = True
    try:
        out, tampered = call(models[variant0], _fresh(inputs0))
        ghost["output"] = tensors.encode(_outputs(out))
    except BaseException as exc:  # noqa: BLE001 - without its kernels the forward may well fail
        ghost["error"] = _error(exc)
    finally:
        evidence.ghost = launches.ghost = False
    ghost["tampered"] = tampered
    emit(ghost)
    timing = job.get("timing")
    if timing:
        same = [x for _, x, v in trials if v == variant0]
        median, spread, outs = _time_model(models[variant0], same, timing, device)
        emit(
            {
                "t": Tag.TIMING,
                "median_ms": median,
                "spread": spread,
                "device_name": _device_name(device),
                "outputs": [tensors.encode(_outputs(o)) for o in outs],
            }
        )


def _report_launches(launches: Launches, reported: set[str], emit: Callable[[dict[str, Any]], None]) -> None:
    """How each kernel was first launched, as soon as it was (a later crash loses nothing):
    for the ahead-of-time compile job, when the interpreter ran them (see tritoncompile)."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        return
    for name, (kernel, args, kwargs) in sorted(launches.calls.items()):
        if name not in reported:
            reported.add(name)
            with _quiet_errors():
                emit({"t": Tag.LAUNCH, **launch_signature(name, kernel, args, kwargs)})


# ---- timing (GPU) -----------------------------------------------------------------------------


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"


def _time_model(
    model: Any, inputs: list[list[Any]], timing: dict[str, Any], device: str
) -> tuple[float, float, list[Any]]:
    """Median wall time of one forward, in ms: warm-up calls first; before each timed call
    fresh copies of the inputs and an L2 flush; a device-wide synchronise on both sides of
    the clock, so work queued on any stream is inside the measurement. Returns the
    median, the spread ((p90 - p10) / median) and the last output for each input set."""
    flush = torch.empty(int(timing.get("flush_bytes", 256 << 20)) // 4, dtype=torch.int32, device=device)
    with torch.no_grad():
        for n in range(int(timing["warmup"])):
            model(*_fresh(inputs[n % len(inputs)]))
        samples, last = [], [None] * len(inputs)
        for n in range(int(timing["reps"])):
            given = _fresh(inputs[n % len(inputs)])
            flush.zero_()
            _sync(device)
            started = time.perf_counter()
            out = model(*given)
            _sync(device)
            samples.append((time.perf_counter() - started) * 1000)
            last[n % len(inputs)] = out
    samples.sort()
    median = statistics.median(samples)
    p10, p90 = samples[len(samples) // 10], samples[(len(samples) * 9) // 10 - (1 if len(samples) >= 10 else 0)]
    return median, (p90 - p10) / median if median else 0.0, [o for o in last if o is not None]


def run(job: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> None:
    torch.set_num_threads(1)
    if job["role"] == Role.REFERENCE:
        run_reference(job, emit)
    else:
        run_candidate(job, emit)
    emit({"t": Tag.DONE})


_LAUNCH_OPTIONS = ("num_warps", "num_stages", "num_ctas", "maxnreg")
_SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64", "bool": "i1"}


def _arg_type(value: Any) -> str | None:
    """Triton's name for a launch argument's type; None for compile-time constants."""
    if isinstance(value, torch.Tensor):
        name = tensors.NAMES.get(value.dtype, "")
        return "*" + _SHORT.get(name, name.replace("uint", "u").replace("int", "i"))
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -(2**31) <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    return None


def launch_signature(name: str, kernel: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """How a kernel was first launched: each parameter's type, or its value if constexpr."""
    import inspect

    params = list(inspect.signature(kernel.fn).parameters.values())
    bound = dict(zip([p.name for p in params], args, strict=False))
    bound.update({k: v for k, v in kwargs.items() if k not in _LAUNCH_OPTIONS})
    annotations = {p.name: str(p.annotation) for p in params}
    types, constants = {}, {}
    for p in params:
        value = bound.get(p.name, None if p.default is inspect.Parameter.empty else p.default)
        kind = None if "constexpr" in annotations[p.name] else _arg_type(value)
        if kind is None:
            plain = isinstance(value, (int, float, bool, str, type(None)))
            constants[p.name] = value if plain else repr(value)[:_MAX_PROBLEM]
            types[p.name] = "constexpr"
        else:
            types[p.name] = kind
    options = {k: v for k, v in kwargs.items() if k in _LAUNCH_OPTIONS and isinstance(v, int)}
    return {"kernel": name, "signature": types, "constants": constants, "options": options}


def warm_up() -> None:
    """Enter the op recorder once in the runner, before any job: its first use costs about a
    second of lazy imports (measured here), which every forked job would otherwise pay."""
    with torch.no_grad(), Evidence():
        torch.empty(1) + 1
