"""The syscall filter every job runs under: one rule set, rendered for each backend.

The rules come from Docker's default seccomp profile (moby, profiles/seccomp/default.json)
for a process without CAP_SYS_ADMIN, CAP_SYS_PTRACE and the other capabilities its
conditional rules name, which is what the runner and every job are. It is an allow-list:
a syscall it does not name, including any the kernel gains later, is refused with EPERM.
So unshare, setns, every mount call, pivot_root, chroot, keyctl/add_key/request_key,
bpf, perf_event_open, kexec, modules, open_by_handle_at, userfaultfd and the rest of
what Docker refuses are refused; clone is allowed only without namespace flags, and
clone3 (whose flags sit behind a pointer a filter cannot read) answers ENOSYS so that
glibc falls back to clone. A job can therefore not create a user namespace and mount
inside it. Tighter than Docker: ptrace, process_vm_readv and process_vm_writev (Docker
allows them on kernels >= 4.8; a job must never read another process, least of all a
harness holding expected values), io_uring (a large kernel attack surface no job needs)
and modify_ldt are refused, and only the native ABI exists: a syscall through another
one (i386 `int 0x80`, x32; their numbers differ, so a filter on x86_64 numbers alone
could be sidestepped) kills the process, under bwrap by the filter's bad-architecture
action, under Docker by runc's (the profile names no extra architectures).

`bpf_program` compiles the rules with libseccomp (it resolves names for the native
architecture and emits the architecture check) for `bwrap --seccomp`; `docker_profile`
renders them as an engine profile. The clone rule reads the flags from argument 0,
which is wrong on s390 (flags come second there): bwrap refuses that platform.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

from sandbox.backends.base import BackendUnavailable

LIBRARY = "libseccomp.so.2"

CLONE_NAMESPACES = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
AF_VSOCK = 40  # sockets to the hypervisor: not for jobs (Docker refuses them too)


@dataclass(frozen=True)
class Arg:
    """A condition on one syscall argument, in libseccomp's (and Docker's) terms.

    For SCMP_CMP_MASKED_EQ, `value` is the mask and `value_two` what the masked
    argument must equal."""

    index: int
    op: str
    value: int
    value_two: int = 0


@dataclass(frozen=True)
class Rule:
    names: tuple[str, ...]
    errno: int | None = None  # None: allowed; otherwise refused with this errno
    args: tuple[Arg, ...] = ()  # every condition must hold for the rule to apply


@dataclass(frozen=True)
class SyscallPolicy:
    rules: tuple[Rule, ...]
    default_errno: int = errno.EPERM


_ALLOWED = tuple(
    """
    accept accept4 access adjtimex alarm arch_prctl bind brk capget capset chdir chmod chown
    chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
    clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
    copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
    epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
    exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
    fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
    flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync
    ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu getcwd getdents
    getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32
    getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
    getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname
    getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
    inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents
    io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill
    landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr
    link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64
    madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock
    mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
    mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget
    msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat
    _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc
    pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64
    process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead
    readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages
    removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction
    rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
    rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
    sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
    sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
    sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
    semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
    setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
    setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
    setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid
    setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
    sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx
    symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
    timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64
    timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times
    tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat
    utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
    """.split()
)

# Docker's personality values: plain Linux, PER_LINUX32, UNAME26 (and both), the query.
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

JOB_POLICY = SyscallPolicy(
    rules=(
        Rule(_ALLOWED),
        Rule(("clone",), args=(Arg(0, "SCMP_CMP_MASKED_EQ", CLONE_NAMESPACES, 0),)),
        Rule(("clone3",), errno=errno.ENOSYS),
        Rule(("socket",), args=(Arg(0, "SCMP_CMP_NE", AF_VSOCK),)),
        *(Rule(("personality",), args=(Arg(0, "SCMP_CMP_EQ", value),)) for value in _PERSONALITIES),
    )
)


# ----------------------------------------------------------------- bwrap: classic BPF

_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_EQ": 4, "SCMP_CMP_MASKED_EQ": 7}
_ACT_ALLOW = 0x7FFF0000
_ACT_KILL_PROCESS = 0x80000000
_ACT_ERRNO = 0x00050000
_ATTR_ACT_BADARCH = 2


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _libseccomp() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(LIBRARY, use_errno=True)
    except OSError as exc:
        raise BackendUnavailable(
            f"libseccomp is missing ({exc}): bwrap sandboxes need it for the job syscall filter "
            "(apt-get install libseccomp2)"
        ) from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def syscall_number(name: str) -> int | None:
    """The native architecture's number for `name` (libseccomp's table); None if it has none."""
    number = int(_libseccomp().seccomp_syscall_resolve_name(name.encode()))
    return number if number >= 0 else None  # negative: unknown, or a multiplexed call of another arch


def _checked(result: int, what: str) -> None:
    if result < 0:
        raise BackendUnavailable(f"libseccomp could not {what}: {os.strerror(-result)}")


@functools.cache
def bpf_program(policy: SyscallPolicy = JOB_POLICY) -> bytes:
    """The policy as the classic-BPF program `bwrap --seccomp` loads (compiled once per process)."""
    if os.uname().machine.startswith("s390"):
        raise BackendUnavailable("the job syscall filter reads clone's flags from argument 0: not so on s390")
    lib = _libseccomp()
    context = lib.seccomp_init(_ACT_ERRNO | policy.default_errno)
    if not context:
        raise BackendUnavailable("libseccomp could not start a filter (seccomp_init failed)")
    try:
        _checked(lib.seccomp_attr_set(context, _ATTR_ACT_BADARCH, _ACT_KILL_PROCESS), "kill other ABIs")
        for rule in policy.rules:
            action = _ACT_ALLOW if rule.errno is None else _ACT_ERRNO | rule.errno
            conditions = (_ArgCmp * len(rule.args))(
                *(_ArgCmp(arg.index, _OPS[arg.op], arg.value, arg.value_two) for arg in rule.args)
            )
            for name in rule.names:
                number = syscall_number(name)
                if number is not None:
                    _checked(lib.seccomp_rule_add_array(context, action, number, len(rule.args), conditions), name)
        with open(os.memfd_create("rft-seccomp-export", os.MFD_CLOEXEC), "w+b") as exported:
            _checked(lib.seccomp_export_bpf(context, exported.fileno()), "export the filter")
            exported.seek(0)
            return exported.read()
    finally:
        lib.seccomp_release(context)


@contextlib.contextmanager
def program_fd(policy: SyscallPolicy = JOB_POLICY) -> Iterator[int]:
    """A fresh fd holding the compiled filter, for `bwrap --seccomp FD` (pass it with pass_fds).

    Fresh each time: bwrap reads it to the end, and a shared file offset would leave the
    next bwrap nothing to read. Once per sandbox (worker), never per job."""
    with open(os.memfd_create("rft-seccomp", os.MFD_CLOEXEC), "w+b") as program:
        program.write(bpf_program(policy))
        program.flush()
        program.seek(0)
        yield program.fileno()


# ----------------------------------------------------------------- docker: engine profile


@functools.cache
def docker_profile(policy: SyscallPolicy = JOB_POLICY) -> str:
    """The policy as a Docker seccomp profile, for `security_opt=["seccomp=<profile>"]`.

    No architectures are named: runc then filters the native ABI only and kills a process
    that calls through another one (Docker's own profile allows i386 and x32)."""
    syscalls = []
    for rule in policy.rules:
        entry: dict[str, object] = {"names": list(rule.names), "action": "SCMP_ACT_ALLOW"}
        if rule.errno is not None:
            entry.update(action="SCMP_ACT_ERRNO", errnoRet=rule.errno)
        if rule.args:
            entry["args"] = [
                {"index": arg.index, "value": arg.value, "valueTwo": arg.value_two, "op": arg.op} for arg in rule.args
            ]
        syscalls.append(entry)
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": policy.default_errno, "syscalls": syscalls}
    return json.dumps(profile)
