"""Whether a Triton job's report is one its harness could have written (trusted, pure).

The harness of a candidate or compile job runs in the same process as the candidate's code,
so that code can reach the report pipe and write records of its own. Such a report is
refused whole here, before anything in it is read: every record must have a known tag,
exactly its fields with their types and sizes, and come in the one order the harness writes
them (sandbox/runner/tritonrun.py, tritoncompile.py):

    candidate: load, then trial 0 .. n-1 (each once, in order) with the launches each first
               made right after it, then, when trial 0 returned outputs, rerun (optional:
               the harness skips it when the second call fails), ghost and, when timed,
               timing; then done
    compile:   one compile record per kernel sent, in the order sent, then compiled

A report may stop anywhere (a deadline, a crash: the runner says which, in its meta), and
may end with the harness's own error (`harness_error`, the candidate's failure). Nothing
may follow `done`, `compiled` or an error. What the trusted runner knows about the job
(how it ended, its exit code) is never in the records: a child's `exit` or `judge_error`
(`Tag.INTERNAL_ERROR`) record is an unknown tag here. This is the service-side check of
Triton records (`sandbox.wire.messages.FORGEABLE`): an unknown record rejects the candidate.
"""

from __future__ import annotations

from typing import Any

from sandbox.wire.messages import Tag

MAX_TEXT = 2000  # the harness keeps the last 2000 characters of an error
MAX_NAME = 200  # a kernel's or an aten op's name
MAX_ENTRIES = 256  # ops per trial (the harness reports the 200 most common), kernels, parameters
LAUNCH_OPTIONS = frozenset({"num_warps", "num_stages", "num_ctas", "maxnreg"})


class Forged(Exception):
    """A record the harness did not write: why, with the record's position."""


def _text(value: Any, cap: int = MAX_TEXT) -> bool:
    return type(value) is str and len(value) <= cap


def _number(value: Any) -> bool:
    return type(value) in (int, float) and value >= 0


def _counts(value: Any) -> bool:
    return (
        type(value) is dict
        and len(value) <= MAX_ENTRIES
        and all(_text(k, MAX_NAME) and type(n) is int and n > 0 for k, n in value.items())
    )


def _problem(value: Any) -> bool:
    return value is None or (
        type(value) is list and len(value) == 2 and _text(value[0], MAX_NAME) and _text(value[1], MAX_TEXT)
    )


def _constant(value: Any) -> bool:
    return value is None or type(value) in (int, float, bool) or _text(value, MAX_TEXT)


def _launch(record: dict[str, Any]) -> bool:
    signature, constants, options = record["signature"], record["constants"], record["options"]
    return (
        _text(record["kernel"], MAX_NAME)
        and type(signature) is dict
        and len(signature) <= MAX_ENTRIES
        and all(_text(k, MAX_NAME) and _text(v, MAX_NAME) for k, v in signature.items())
        and type(constants) is dict
        and len(constants) <= MAX_ENTRIES
        and all(_text(k, MAX_NAME) and _constant(v) for k, v in constants.items())
        and type(options) is dict
        and all(k in LAUNCH_OPTIONS and type(v) is int for k, v in options.items())
    )


def _list(value: Any) -> bool:
    return type(value) is list  # tensors inside are decoded, and checked, by the scorer


# tag -> (required fields, optional fields, check of the values)
_TRIAL_CHECKS = {"index": lambda v: type(v) is int, "launches": _counts, "ops": _counts, "kernel_ops": _counts}
_SHAPES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    Tag.LOAD: (frozenset({"ok"}), frozenset({"error"})),
    Tag.TRIAL: (
        frozenset(_TRIAL_CHECKS),
        frozenset({"error", "ms", "tampered", "inputs_changed", "problem", "output"}),
    ),
    Tag.LAUNCH: (frozenset({"kernel", "signature", "constants", "options"}), frozenset()),
    Tag.RERUN: (frozenset({"output", "tampered"}), frozenset()),
    Tag.GHOST: (frozenset({"tampered"}), frozenset({"output", "error"})),
    Tag.TIMING: (frozenset({"median_ms", "spread", "device_name", "outputs"}), frozenset()),
    Tag.DONE: (frozenset(), frozenset()),
    Tag.COMPILE: (frozenset({"kernel", "ok"}), frozenset({"stages", "error"})),
    Tag.COMPILED: (frozenset(), frozenset()),
    Tag.HARNESS_ERROR: (frozenset({"error"}), frozenset()),
}


def _well_formed(record: dict[str, Any]) -> bool:
    """Exactly the fields of its tag, each of its type and within its size."""
    tag = record["t"]
    required, optional = _SHAPES[tag]
    fields = record.keys() - {"t"}
    if not required <= fields or not fields <= required | optional:
        return False
    if tag == Tag.LOAD:
        ok = record["ok"]
        return type(ok) is bool and ok is ("error" not in record) and _text(record.get("error", ""))
    if tag == Tag.TRIAL:
        if not all(check(record[name]) for name, check in _TRIAL_CHECKS.items()):
            return False
        if "error" in record:  # the trial raised: an error, and no output
            return fields == required | {"error"} and _text(record["error"])
        checks = {"ms", "tampered", "inputs_changed", "problem"}
        if not checks <= fields or not _number(record["ms"]) or not _problem(record["problem"]):
            return False
        if type(record["tampered"]) is not bool or type(record["inputs_changed"]) is not bool:
            return False
        return ("output" in record) is (record["problem"] is None) and _list(record.get("output", []))
    if tag == Tag.LAUNCH:
        return _launch(record)
    if tag in (Tag.RERUN, Tag.GHOST) and type(record["tampered"]) is not bool:
        return False
    if tag == Tag.RERUN:
        return _list(record["output"])
    if tag == Tag.GHOST:
        return ("output" in record) is not ("error" in record) and (
            _list(record["output"]) if "output" in record else _text(record["error"])
        )
    if tag == Tag.TIMING:
        return (
            _number(record["median_ms"])
            and _number(record["spread"])
            and _text(record["device_name"], MAX_NAME)
            and _list(record["outputs"])
        )
    if tag == Tag.COMPILE:
        if not _text(record["kernel"], MAX_NAME) or type(record["ok"]) is not bool:
            return False
        if record["ok"]:
            stages = record.get("stages")
            return (
                fields == {"kernel", "ok", "stages"}
                and type(stages) is list
                and len(stages) <= 16
                and all(_text(s, MAX_NAME) for s in stages)
            )
        return fields == {"kernel", "ok", "error"} and _text(record["error"])
    if tag == Tag.HARNESS_ERROR:
        return _text(record["error"])
    return True  # done, compiled


def _records(records: list[Any], tags: frozenset[str]) -> list[dict[str, Any]]:
    """The records, each well formed and of a tag this job's harness writes."""
    for at, record in enumerate(records):
        if type(record) is not dict or type(record.get("t")) is not str or record["t"] not in tags:
            tag = record.get("t") if type(record) is dict else type(record).__name__
            raise Forged(f"record {at}: {str(tag)[:MAX_NAME]!r} is not a record this harness writes")
        if not _well_formed(record):
            raise Forged(f"record {at} ({record['t']}): not the fields the harness writes")
    return records


_CANDIDATE_TAGS = frozenset(
    {Tag.LOAD, Tag.TRIAL, Tag.LAUNCH, Tag.RERUN, Tag.GHOST, Tag.TIMING, Tag.DONE, Tag.HARNESS_ERROR}
)
_COMPILE_TAGS = frozenset({Tag.COMPILE, Tag.COMPILED, Tag.HARNESS_ERROR})


def check_candidate_report(records: list[Any], trials: int, timed: bool) -> None:
    """Raises Forged unless `records` is (a prefix of) what the harness writes for a candidate
    job of `trials` trials (`timed`: on a GPU, where the timing record follows the ghost)."""
    _records(records, _CANDIDATE_TAGS)
    expected: list[tuple[str, bool]] = []  # what may come next after the trials: (tag, optional)
    next_trial, kernels, state = 0, set(), "load"
    for at, record in enumerate(records):
        tag = record["t"]
        if state == "ended":
            raise Forged(f"record {at} ({tag}): after the end of the report")
        if tag == Tag.HARNESS_ERROR:
            state = "ended"
        elif state == "load":
            if tag != Tag.LOAD:
                raise Forged(f"record {at} ({tag}): the report must start with load")
            state, expected = ("trials", []) if record["ok"] else ("after", [])
        elif state == "trials" and tag == Tag.TRIAL:
            if next_trial >= trials:
                raise Forged(f"record {at}: trial {record['index']} of a job of {trials} trials")
            if record["index"] != next_trial:
                raise Forged(f"record {at}: trial {record['index']} where trial {next_trial} was due")
            if next_trial == 0 and "output" in record:
                expected = [(Tag.RERUN, True), (Tag.GHOST, False)] + ([(Tag.TIMING, False)] if timed else [])
            next_trial += 1
        elif state == "trials" and tag == Tag.LAUNCH and next_trial:
            if record["kernel"] in kernels:
                raise Forged(f"record {at}: a second launch record for kernel {record['kernel'][:MAX_NAME]!r}")
            kernels.add(record["kernel"])
        elif state in ("trials", "after") and (state == "after" or next_trial == trials):
            state = "after"
            while expected and expected[0][0] != tag and expected[0][1]:
                expected.pop(0)
            if expected and expected[0][0] == tag:
                expected.pop(0)
            elif tag == Tag.DONE and not expected:
                state = "ended"
            else:
                due = expected[0][0] if expected else Tag.DONE
                raise Forged(f"record {at} ({tag}): {due} was due")
        else:
            raise Forged(f"record {at} ({tag}): out of order (trial {next_trial} of {trials} was due)")


def check_compile_report(records: list[Any], kernels: list[str]) -> None:
    """Raises Forged unless `records` is (a prefix of) one compile record per kernel sent, in
    order, then `compiled`."""
    _records(records, _COMPILE_TAGS)
    for at, record in enumerate(records):
        tag = record["t"]
        if at and records[at - 1]["t"] in (Tag.COMPILED, Tag.HARNESS_ERROR):
            raise Forged(f"record {at} ({tag}): after the end of the report")
        if tag == Tag.COMPILE and (at >= len(kernels) or record["kernel"] != kernels[at]):
            raise Forged(f"record {at}: a compile record for {record['kernel'][:MAX_NAME]!r}, not a kernel sent")
        if tag == Tag.COMPILED and at != len(kernels):
            raise Forged(f"record {at}: compiled after {at} of {len(kernels)} kernels")
