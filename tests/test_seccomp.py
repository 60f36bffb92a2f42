"""The syscall filter: jobs cannot reach the kernel interfaces a sandbox escape starts from.

The hostile candidates run on every backend (the session `client`). Each attempt runs
in a forked child of the candidate (so an attempt that succeeded changes nothing for
the next one) and must fail with the filter's answer: EPERM, or ENOSYS for clone3 (as
Docker does, so that glibc falls back to clone). Many attempts use arguments the
kernel would answer differently (ENOENT, EBADF, EFAULT, success) if the filter let
them through; where the kernel's own capability check gives EPERM too, the unit tests
below show the filter answers first.
"""

from __future__ import annotations

import errno
import json
import platform
import struct
import subprocess
import sys

import pytest

from sandbox.backends import seccomp
from tests.test_hostile import assert_contained, task_for

x86_64_only = pytest.mark.skipif(platform.machine() != "x86_64", reason="the attempts use x86_64 syscall numbers")

# What Docker's default profile refuses a process without CAP_SYS_ADMIN and the other
# capabilities its conditional rules name (or does not list at all), plus what we refuse
# beyond it: ptrace and process_vm_*, io_uring, modify_ldt.
REFUSED = """
    acct add_key bpf chroot clock_settime create_module delete_module fanotify_init finit_module
    fsconfig fsmount fsopen fspick get_kernel_syms get_mempolicy init_module io_uring_enter
    io_uring_register io_uring_setup ioperm iopl kcmp kexec_file_load kexec_load keyctl
    lookup_dcookie mbind modify_ldt mount mount_setattr move_mount nfsservctl open_by_handle_at
    open_tree perf_event_open pidfd_getfd pivot_root process_madvise process_vm_readv
    process_vm_writev ptrace query_module quotactl quotactl_fd reboot request_key set_mempolicy
    set_mempolicy_home_node setdomainname sethostname setns settimeofday stime swapoff swapon
    syslog _sysctl sysfs umount umount2 unshare uselib userfaultfd ustat vhangup vm86 vm86old
""".split()
NEEDED = """
    read write openat close mmap mprotect munmap madvise brk futex execve exit_group wait4 kill
    tgkill prctl setresuid setresgid setgroups socketpair sendmsg recvmsg rt_sigaction
    rt_sigprocmask set_robust_list rseq getrandom sched_getaffinity pipe2 dup2 fcntl ioctl
    memfd_create setrlimit prlimit64 getdents64 newfstatat statx arch_prctl set_tid_address
""".split()
CLONE_NEW = {"mnt": 0x20000, "cgroup": 0x02000000, "uts": 0x04000000, "ipc": 0x08000000,
             "user": 0x10000000, "pid": 0x20000000, "net": 0x40000000}  # fmt: skip
FORK = 17  # SIGCHLD: what fork() passes
THREAD = 0x3D0F00  # what pthread_create passes: CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|*TID

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
ALLOW, KILL_PROCESS = 0x7FFF0000, 0x80000000


def refused_with(code: int) -> int:
    return 0x00050000 | code


def run_filter(nr: int, *args: int, arch: int | None = None) -> int:
    """What the kernel would do with this syscall under the compiled program bwrap loads.

    A tiny interpreter for the classic-BPF instructions libseccomp emits; anything else
    fails the test rather than being guessed at."""
    program = seccomp.bpf_program()
    arch = AUDIT_ARCH[platform.machine()] if arch is None else arch
    data = struct.pack("<iIQ6Q", nr, arch, 0, *args, *[0] * (6 - len(args)))  # struct seccomp_data
    accumulator, pc = 0, 0
    while True:
        code, jump_true, jump_false, k = struct.unpack_from("<HBBI", program, 8 * pc)
        pc += 1
        if code == 0x20:  # ld [k]
            accumulator = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:  # and #k
            accumulator &= k
        elif code == 0x05:  # ja
            pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):  # jeq, jgt, jge, jset #k
            taken = {0x15: accumulator == k, 0x25: accumulator > k, 0x35: accumulator >= k, 0x45: accumulator & k}
            pc += jump_true if taken[code] else jump_false
        elif code == 0x06:  # ret #k
            return k
        else:
            raise AssertionError(f"unexpected BPF instruction {code:#x} at {pc - 1}")


def number(name: str) -> int:
    found = seccomp.syscall_number(name)
    assert found is not None, f"{name} is not a syscall here"
    return found


native_only = pytest.mark.skipif(platform.machine() not in AUDIT_ARCH, reason="x86_64 and aarch64 only")


@native_only
def test_the_filter_refuses_what_docker_refuses_and_ptrace():
    assert len(seccomp.bpf_program()) % 8 == 0
    for core in ("unshare", "setns", "mount", "umount2", "pivot_root", "ptrace", "keyctl", "bpf", "perf_event_open"):
        number(core)  # so the loop below cannot pass by resolving nothing
    let_through = {
        name: hex(action)
        for name in REFUSED
        if (nr := seccomp.syscall_number(name)) is not None and (action := run_filter(nr)) != refused_with(errno.EPERM)
    }
    assert not let_through


@native_only
def test_the_filter_allows_what_the_runner_and_jobs_need():
    needed = [name for name in NEEDED if seccomp.syscall_number(name) is not None]
    assert {name: hex(run_filter(number(name))) for name in needed} == dict.fromkeys(needed, hex(ALLOW))
    assert run_filter(number("clone"), FORK) == ALLOW
    assert run_filter(number("clone"), THREAD) == ALLOW
    assert run_filter(number("socket"), 1, 1, 0) == ALLOW  # AF_UNIX
    assert run_filter(number("personality"), 0xFFFFFFFF) == ALLOW  # the query


@native_only
def test_the_filter_refuses_namespaces_vsock_and_personality_changes():
    for name, flag in CLONE_NEW.items():
        assert run_filter(number("clone"), FORK | flag) == refused_with(errno.EPERM), name
        assert run_filter(number("clone"), THREAD | flag) == refused_with(errno.EPERM), name
    assert run_filter(number("clone3")) == refused_with(errno.ENOSYS)  # glibc then falls back to clone
    assert run_filter(number("socket"), 40, 1, 0) == refused_with(errno.EPERM)  # AF_VSOCK
    assert run_filter(number("personality"), 0x0040000) == refused_with(errno.EPERM)  # ADDR_NO_RANDOMIZE


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86_64's other ABIs")
def test_the_filter_kills_other_abis():
    """Syscall numbers differ per ABI: a filter that only checked numbers would let i386 `unshare` (310) by."""
    assert run_filter(310, CLONE_NEW["user"], arch=0x40000003) == KILL_PROCESS  # i386 unshare
    assert run_filter(number("read"), arch=0x40000003) == KILL_PROCESS
    assert run_filter(0x40000000 | number("unshare"), CLONE_NEW["user"]) == KILL_PROCESS  # x32
    assert run_filter(0x40000000 | number("read")) == KILL_PROCESS


def docker_action(profile: dict, name: str, *args: int) -> tuple[str, int]:
    """How runc would answer under this profile: the rule naming the call whose conditions hold."""
    values = [*args, *[0] * (6 - len(args))]
    holds = {
        "SCMP_CMP_EQ": lambda arg: values[arg["index"]] == arg["value"],
        "SCMP_CMP_NE": lambda arg: values[arg["index"]] != arg["value"],
        "SCMP_CMP_MASKED_EQ": lambda arg: values[arg["index"]] & arg["value"] == arg["valueTwo"],
    }
    for rule in profile["syscalls"]:
        if name in rule["names"] and all(holds[arg["op"]](arg) for arg in rule.get("args", [])):
            return rule["action"], rule.get("errnoRet", 0)
    return profile["defaultAction"], profile["defaultErrnoRet"]


def test_the_docker_profile_refuses_the_same():
    profile = json.loads(seccomp.docker_profile())
    assert (profile["defaultAction"], profile["defaultErrnoRet"]) == ("SCMP_ACT_ERRNO", errno.EPERM)
    assert "architectures" not in profile and "archMap" not in profile  # the native ABI only
    refused = ("SCMP_ACT_ERRNO", errno.EPERM)
    assert {name: docker_action(profile, name) for name in REFUSED} == dict.fromkeys(REFUSED, refused)
    assert {name: docker_action(profile, name)[0] for name in NEEDED} == dict.fromkeys(NEEDED, "SCMP_ACT_ALLOW")
    for flag in CLONE_NEW.values():
        assert docker_action(profile, "clone", FORK | flag) == refused
    assert docker_action(profile, "clone", THREAD)[0] == "SCMP_ACT_ALLOW"
    assert docker_action(profile, "clone3") == ("SCMP_ACT_ERRNO", errno.ENOSYS)
    assert docker_action(profile, "socket", 40, 1, 0) == refused
    assert docker_action(profile, "personality", 0x0040000) == refused


@native_only
def test_both_renderings_agree_on_every_named_syscall():
    """One policy, two translations: no syscall is refused by one backend and allowed by the other."""
    profile = json.loads(seccomp.docker_profile())
    names = {name for rule in seccomp.JOB_POLICY.rules for name in rule.names} | set(REFUSED)
    answers = {"SCMP_ACT_ALLOW": lambda _: ALLOW, "SCMP_ACT_ERRNO": refused_with}
    disagree = {}
    for name in sorted(names):
        if (nr := seccomp.syscall_number(name)) is None:
            continue
        action, code = docker_action(profile, name)
        if run_filter(nr) != answers[action](code):
            disagree[name] = (hex(run_filter(nr)), action, code)
    assert not disagree


def test_without_libseccomp_the_bwrap_backend_is_unavailable():
    """No filter, no sandbox: a clear BackendUnavailable, never a weaker bwrap (in a child: the
    session's server keeps starting workers)."""
    script = (
        "from sandbox.backends import seccomp\n"
        "from sandbox.backends.base import BackendUnavailable\n"
        "from sandbox.backends.bwrap import BwrapBackend\n"
        "seccomp.LIBRARY = 'libseccomp-missing.so.2'\n"
        "try:\n"
        "    BwrapBackend().check()\n"
        "except BackendUnavailable as exc:\n"
        "    print('unavailable:', exc)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.stdout.startswith("unavailable: libseccomp is missing"), (run.stdout, run.stderr)
    assert "apt-get install libseccomp2" in run.stdout


SYSCALLS = r'''
import ctypes, errno, mmap, os, signal

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NEWUSER = 0x10000000
NAMESPACES = {"mnt": 0x20000, "cgroup": 0x02000000, "uts": 0x04000000, "ipc": 0x08000000,
              "pid": 0x20000000, "net": 0x40000000}

def call(nr, *args):
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return 0 if libc.syscall(nr, *args) >= 0 else ctypes.get_errno()

def clone(flags):
    pid = libc.syscall(56, ctypes.c_long(flags | signal.SIGCHLD), None, None, None, None)
    if pid == 0:
        os._exit(0)
    return 0 if pid > 0 else ctypes.get_errno()

def clone3(flags):
    args = (ctypes.c_uint64 * 8)(flags, 0, 0, 0, signal.SIGCHLD, 0, 0, 0)
    pid = libc.syscall(435, args, ctypes.c_long(64))
    if pid == 0:
        os._exit(0)
    return 0 if pid > 0 else ctypes.get_errno()

def i386(nr, arg):
    """The 32-bit ABI (int 0x80) has its own syscall numbers: a filter must not forget it."""
    code = (b"\x53\xb8" + nr.to_bytes(4, "little") + b"\xbb" + arg.to_bytes(4, "little")
            + b"\xcd\x80\x5b\xc3")  # push rbx; mov eax, nr; mov ebx, arg; int 0x80; pop rbx; ret
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    result = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))()
    return 0 if result >= 0 else -result

def vm_copy(nr):
    source, target = ctypes.create_string_buffer(b"x" * 16), ctypes.create_string_buffer(16)
    local = (ctypes.c_void_p * 2)(ctypes.addressof(target), 16)
    remote = (ctypes.c_void_p * 2)(ctypes.addressof(source), 16)
    return call(nr, os.getpid(), local, 1, remote, 1, 0)

def userns_mount():
    return call(272, NEWUSER | 0x20000) or call(165, b"none", b"/tmp", b"tmpfs", 0, None)

ATTEMPTS = {
    "unshare(NEWUSER)": lambda: call(272, NEWUSER),
    **{f"unshare(NEWUSER|NEW{n.upper()})": (lambda v: lambda: call(272, NEWUSER | v))(v)
       for n, v in NAMESPACES.items()},
    **{f"unshare(NEW{n.upper()})": (lambda v: lambda: call(272, v))(v) for n, v in NAMESPACES.items()},
    "unshare(NEWTIME)": lambda: call(272, 0x80),
    "clone(NEWUSER)": lambda: clone(NEWUSER),
    **{f"clone(NEW{n.upper()})": (lambda v: lambda: clone(v))(v) for n, v in NAMESPACES.items()},
    "clone3()": lambda: clone3(0),
    "clone3(NEWUSER)": lambda: clone3(NEWUSER),
    "setns": lambda: call(308, -1, 0),
    "userns+mount": userns_mount,
    "mount": lambda: call(165, b"none", b"/nonexistent", b"tmpfs", 0, None),
    "umount2": lambda: call(166, b"/tmp", 0),
    "pivot_root": lambda: call(155, b"/tmp", b"/tmp"),
    "chroot": lambda: call(161, b"/nonexistent"),
    "fsopen": lambda: call(430, b"tmpfs", 0),
    "fsconfig": lambda: call(431, -1, 0, None, None, 0),
    "fsmount": lambda: call(432, -1, 0, 0),
    "fspick": lambda: call(433, -100, b"/", 0),
    "open_tree": lambda: call(428, -100, b"/", 0),
    "move_mount": lambda: call(429, -1, b"", -1, b"", 0),
    "mount_setattr": lambda: call(442, -1, b"", 0, None, 0),
    "ptrace(TRACEME)": lambda: call(101, 0, 0, None, None),
    "process_vm_readv": lambda: vm_copy(310),
    "process_vm_writev": lambda: vm_copy(311),
    "kcmp": lambda: call(312, os.getpid(), os.getpid(), 0, 0, 0),
    "pidfd_getfd": lambda: call(438, -1, 0, 0),
    "process_madvise": lambda: call(440, -1, None, 0, 0, 0),
    "keyctl": lambda: call(250, 0, -2, 1),
    "add_key": lambda: call(248, b"user", b"rft-probe", b"x", 1, -2),
    "request_key": lambda: call(249, b"user", b"rft-probe", None, 0),
    "bpf": lambda: call(321, 0, None, 0),
    "perf_event_open": lambda: call(298, None, 0, -1, -1, 0),
    "userfaultfd": lambda: call(323, 1),
    "personality(ADDR_NO_RANDOMIZE)": lambda: call(135, 0x0040000),
    "io_uring_setup": lambda: call(425, 1, ctypes.create_string_buffer(120)),
    "kexec_load": lambda: call(246, 0, 0, None, 0),
    "kexec_file_load": lambda: call(320, -1, -1, 0, b"", 0),
    "init_module": lambda: call(175, None, 0, b""),
    "finit_module": lambda: call(313, -1, b"", 0),
    "delete_module": lambda: call(176, b"rft_probe", 0),
    "open_by_handle_at": lambda: call(304, -1, None, 0),
    "fanotify_init": lambda: call(300, 0, 0),
    "lookup_dcookie": lambda: call(212, 0, None, 0),
    "quotactl": lambda: call(179, 0, None, 0, None),
    "swapon": lambda: call(167, b"/nonexistent", 0),
    "swapoff": lambda: call(168, b"/nonexistent"),
    "reboot": lambda: call(169, 0, 0, 0, None),
    "sethostname": lambda: call(170, b"x", 1),
    "setdomainname": lambda: call(171, b"x", 1),
    "syslog": lambda: call(103, 10, None, 0),
    "acct": lambda: call(163, None),
    "iopl": lambda: call(172, 3),
    "ioperm": lambda: call(173, 0, 1, 1),
    "modify_ldt": lambda: call(154, 0, ctypes.create_string_buffer(16), 16),
    "settimeofday": lambda: call(164, None, None),
    "clock_settime": lambda: call(227, 0, None),
    "vhangup": lambda: call(153),
    "mbind": lambda: call(237, 0, 0, 0, None, 0, 0),
    "set_mempolicy": lambda: call(238, 0, None, 0),
    "get_mempolicy": lambda: call(239, None, None, 0, 0, 0),
    "socket(AF_VSOCK)": lambda: call(41, 40, 1, 0),
    "i386 unshare(NEWUSER)": lambda: i386(310, NEWUSER),
    "i386 ptrace(TRACEME)": lambda: i386(26, 0),
}

def attempt(probe):
    """0 if the call went through, its errno otherwise, -signal if it killed the process."""
    pid = os.fork()
    if pid == 0:
        code = 254  # the attempt itself broke: never taken for "refused"
        try:
            code = min(probe(), 255)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)

def refused(name, outcome):
    if name.startswith("i386"):  # another ABI: killed, or refused like a missing one
        return outcome in (-signal.SIGSYS, errno.EPERM, errno.ENOSYS)
    return outcome == (errno.ENOSYS if name.startswith("clone3") else errno.EPERM)

def f():
    with open("/proc/self/status") as handle:
        status = dict(line.split(":", 1) for line in handle.read().splitlines() if ":" in line)
    got = [] if status["Seccomp"].strip() == "2" else [f"no syscall filter (Seccomp: {status['Seccomp'].strip()})"]
    for name, probe in ATTEMPTS.items():
        outcome = attempt(probe)
        if not refused(name, outcome):
            got.append(f"{name}: {'went through' if outcome == 0 else outcome}")
    return "blocked" if not got else "; ".join(got)
'''


@x86_64_only
@pytest.mark.parametrize("mode", ["calls", "whole"])
def test_jobs_cannot_make_the_refused_syscalls(client, assert_healthy, mode):
    """Namespaces, mounts, ptrace, keyrings, bpf, perf, kexec/modules, io_uring, other ABIs..."""
    failures = client.stats().worker_failures
    assert_contained(client.score(task_for(mode, "syscalls", SYSCALLS, lim=None)))
    assert_healthy()
    assert client.stats().worker_failures == failures, "a sandbox worker died"


HONEST = r"""
import ctypes, mmap, os, socket, subprocess, threading

def f():
    problems = []

    def check(name, action):
        try:
            action()
        except Exception as exc:
            problems.append(f"{name}: {exc!r}")

    def thread():
        seen = []
        worker = threading.Thread(target=seen.append, args=(1,))
        worker.start()
        worker.join()
        assert seen == [1]

    def fork():
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7

    def spawn():  # glibc's posix_spawn tries clone3 first and falls back to clone on ENOSYS
        pid = os.posix_spawn("/bin/true", ["true"], {})
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

    def pass_fds():
        left, right = socket.socketpair()
        read_end, _ = os.pipe()
        socket.send_fds(left, [b"x"], [read_end])
        message, fds, _, _ = socket.recv_fds(right, 1, 1)
        assert message == b"x" and len(fds) == 1

    def personality_query():
        libc = ctypes.CDLL(None, use_errno=True)
        libc.personality.argtypes = [ctypes.c_ulong]
        assert libc.personality(0xFFFFFFFF) != -1

    def executable_memory():
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(b"\xb8\x2a\x00\x00\x00\xc3")  # mov eax, 42; ret
        assert ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))() == 42

    check("thread", thread)
    check("fork", fork)
    check("subprocess", lambda: subprocess.run(["/bin/true"], check=True, timeout=10))
    check("posix_spawn", spawn)
    check("fd passing", pass_fds)
    check("personality query", personality_query)
    check("executable memory", executable_memory)
    check("unix socket", lambda: socket.socket(socket.AF_UNIX).close())
    return "ok" if not problems else "; ".join(problems)
"""


@x86_64_only
def test_honest_jobs_keep_what_they_need(client):
    """Threads, fork, subprocess (clone3 answered ENOSYS so glibc falls back), fd passing, JIT memory."""
    assert_contained(client.score(task_for("calls", "honest-syscalls", HONEST, "ok", lim=None)))
