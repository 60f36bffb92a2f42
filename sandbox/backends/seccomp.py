"""A seccomp filter for bubblewrap sandboxes: no kernel keyrings.

Keyrings belong to a uid, and nothing bubblewrap unshares separates them: a key a job
adds to its user or session keyring is there for the next job of that uid, in the same
worker or a later one (tested: tests/test_containment.py). Docker's default seccomp
profile denies add_key, request_key and keyctl; this filter does the same for bwrap
(EPERM), for the host's syscall ABI and its 32-bit compat ABI (a 64-bit process can
still enter the kernel through the i386 gate), and denies the x32 ABI wholesale.
Everything else is allowed: the namespaces, the job uid and the rlimits are the walls.
"""

from __future__ import annotations

import errno
import platform
import struct

_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_ALLOW, _ERRNO = 0x7FFF0000, 0x00050000
_ARCH = {"x86_64": 0xC000003E, "i386": 0x40000003, "aarch64": 0xC00000B7, "arm": 0x40000028}
_KEYRING_CALLS = {  # add_key, request_key, keyctl
    "x86_64": (248, 249, 250),
    "i386": (286, 287, 288),
    "aarch64": (217, 218, 219),
    "arm": (309, 310, 311),
}
_ABIS = {"x86_64": ("x86_64", "i386"), "amd64": ("x86_64", "i386"), "aarch64": ("aarch64", "arm")}
_X32_BIT = 0x40000000


def keyring_filter(machine: str | None = None) -> bytes | None:
    """The compiled filter (struct sock_filter[]) for this machine; None if it has no table."""
    abis = _ABIS.get((machine or platform.machine()).lower())
    if abis is None:
        return None
    program: list[tuple[int, int, int, int] | tuple[str, int]] = [(_LD_W_ABS, 0, 0, 4)]  # arch
    for abi in abis:
        block: list[tuple[int, int, int, int] | tuple[str, int]] = [(_LD_W_ABS, 0, 0, 0)]  # syscall number
        if abi == "x86_64":
            block.append(("deny_if_at_least", _X32_BIT))
        block += [("deny_if", number) for number in _KEYRING_CALLS[abi]]
        block.append((_RET_K, 0, 0, _ALLOW))
        program.append((_JEQ_K, 0, len(block), _ARCH[abi]))  # another ABI: skip the block
        program += block
    program.append((_RET_K, 0, 0, _ALLOW))
    deny = len(program)
    program.append((_RET_K, 0, 0, _ERRNO | errno.EPERM))
    compiled = []
    for index, instruction in enumerate(program):
        if len(instruction) == 2:
            test, value = instruction
            code = _JGE_K if test == "deny_if_at_least" else _JEQ_K
            instruction = (code, deny - index - 1, 0, int(value))
        compiled.append(struct.pack("=HBBI", *instruction))
    return b"".join(compiled)
