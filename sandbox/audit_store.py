"""The audit trail's file: whole lines appended by several processes, rotated, synced, and
never in the way of scoring.

Several service processes (`serve --processes`) append to one file. O_APPEND makes each
write() land at the end, but neither POSIX nor every filesystem (NFS) promises that a large
write() is not split or interleaved with another, and write() may write less than asked. So
each line is written whole under an exclusive flock, looping over short writes.

Rotation happens under that same lock: the writer that finds the file due renames it to
`STEM.YYYYMMDDTHHMMSSZ[.N]SUFFIX` and creates a new one. Every writer, before writing, checks
that the file it holds (and has just locked) is still the one at the path; a writer whose
file was rotated away by another process reopens the path and locks again. So no line is
written to a closed file after its rename, and none is lost.

A failing write (a full disk, EIO) drops that line and is counted: scoring goes on, and
`healthy` says the log is failing (health and metrics show it) until a write succeeds again.
A write that failed halfway is cut back off the file, so the next line starts on a line of
its own. fsync: `always` after every line, `interval` at most once a `fsync_interval` (and
from `sync`, which the server calls each second), `none` leaves it to the kernel.
"""

from __future__ import annotations

import calendar
import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
FSYNC_POLICIES = ("none", "interval", "always")
_REOPEN_TRIES = 16  # rotations by others between our open and our lock, in a row: not plausible


@dataclass
class StoreStats:
    written: int = 0  # lines appended
    dropped: int = 0  # lines lost to a failing write
    rotations: int = 0  # rotations this process did
    error: str = ""  # the last failure, while unhealthy


class AppendLog:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rotate_bytes: int = 0,
        rotate_seconds: float = 0.0,
        fsync: str = "interval",
        fsync_interval: float = 1.0,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {FSYNC_POLICIES}, not {fsync!r}")
        self.path = Path(path)
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.stats = StoreStats()
        self.healthy = True
        self._lock = threading.Lock()  # the fd and the counters; flock orders processes
        self._fd: int | None = None
        self._started: tuple[int, float] | None = None  # (inode, time of its first line)
        self._synced_at = time.monotonic()
        self._unsynced = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open()  # a path that cannot be opened at all is a configuration error: fail the start

    def append(self, line: bytes) -> bool:
        """Append one whole line (ending in a newline); False when it was dropped."""
        with self._lock:
            try:
                fd = self._locked_current(len(line))
                try:
                    self._write(fd, line)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                self._unsynced = True
                if self.fsync == "always" or (
                    self.fsync == "interval" and time.monotonic() - self._synced_at >= self.fsync_interval
                ):
                    self._sync(fd)
            except OSError as exc:
                self.stats.dropped += 1
                self._failed(exc)
                return False
            self.stats.written += 1
            if not self.healthy:
                self.healthy, self.stats.error = True, ""
                log.warning("audit log writable again", extra={"fields": {"path": str(self.path)}})
            return True

    def sync(self) -> None:
        """fsync what was written since the last one (the `interval` policy's timer)."""
        with self._lock:
            if self.fsync != "none" and self._unsynced and self._fd is not None:
                try:
                    self._sync(self._fd)
                except OSError as exc:
                    self._failed(exc)

    def close(self) -> None:
        with self._lock:
            if self._fd is None:
                return
            if self.fsync != "none" and self._unsynced:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def rotated_files(self) -> list[Path]:
        """The closed files next to the current one, oldest first (their names sort by time)."""
        return sorted(self.path.parent.glob(f"{self.path.stem}.*{self.path.suffix}"))

    # the file

    def _open(self) -> int:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        return self._fd

    def _drop_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _locked_current(self, adding: int) -> int:
        """Our fd, exclusively locked, on the file at the path now, with room for `adding` bytes:
        a file rotated (or removed) by another writer is reopened; one due is rotated first."""
        for _ in range(_REOPEN_TRIES):
            fd = self._fd if self._fd is not None else self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = self._is_current(fd)
                if current and not self._due(fd, adding):
                    return fd  # still locked: the caller writes, then unlocks
                if current:
                    self._rotate(fd)
            except BaseException:
                fcntl.flock(fd, fcntl.LOCK_UN)
                raise
            fcntl.flock(fd, fcntl.LOCK_UN)
            self._drop_fd()
        raise OSError(f"{self.path} was replaced {_REOPEN_TRIES} times while being opened")

    def _is_current(self, fd: int) -> bool:
        try:
            at_path = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (at_path.st_dev, at_path.st_ino) == (held.st_dev, held.st_ino)

    def _write(self, fd: int, line: bytes) -> None:
        start = os.lseek(fd, 0, os.SEEK_END)  # under the lock the end stays put: O_APPEND writes there
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            with contextlib.suppress(OSError):  # a half line would glue itself to the next one
                os.ftruncate(fd, start)
            raise

    def _sync(self, fd: int) -> None:
        os.fsync(fd)
        self._synced_at, self._unsynced = time.monotonic(), False

    def _failed(self, exc: OSError) -> None:
        self.stats.error = f"{type(exc).__name__}: {exc}"
        if self.healthy:
            self.healthy = False
            log.error(
                "audit log not writable: records dropped",
                extra={"fields": {"path": str(self.path), "error": self.stats.error}},
            )

    # rotation

    def _due(self, fd: int, adding: int) -> bool:
        if not (self.rotate_bytes or self.rotate_seconds):
            return False
        held = os.fstat(fd)
        if held.st_size == 0:
            return False
        if self.rotate_bytes and held.st_size + adding > self.rotate_bytes:
            return True
        return bool(self.rotate_seconds) and time.time() - self._first_line_time(held.st_ino) >= self.rotate_seconds

    def _first_line_time(self, inode: int) -> float:
        """When the file's first line was written: the same answer in every process sharing it."""
        if self._started is None or self._started[0] != inode:
            started = time.time()
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError), open(self.path, "rb") as handle:
                stamp = str(json.loads(handle.readline(1 << 20))["time"])
                started = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
            self._started = (inode, started)
        return self._started[1]

    def _rotate(self, fd: int) -> None:
        """Rename the (locked, current) file away: its waiters, and we, then reopen the path."""
        if self.fsync != "none":
            os.fsync(fd)
        os.rename(self.path, self._rotated_name())
        self.stats.rotations += 1

    def _rotated_name(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for n in range(1_000_000):
            tail = f".{stamp}" + (f".{n}" if n else "")
            candidate = self.path.with_name(f"{self.path.stem}{tail}{self.path.suffix}")
            if not candidate.exists():  # only the lock holder rotates: nobody races for the name
                return candidate
        raise OSError(f"no free rotated name for {self.path}")
