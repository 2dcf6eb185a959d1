"""One session per result folder: a lock held for the session's life, released by the OS when it dies.

An flock on <result>/session.lock, taken without waiting: a second session (a --resume while the
first still runs) is refused with the owner's PID; a session killed with SIGKILL releases it, so
its result can be resumed at once. The PID in the file is for the message only; the lock is the
kernel's.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from runner.errors import ResultError, machine_error
from runner.results.nofollow import linked
from runner.vocab import LOCK_FILE


class ResultLock:
    """`with ResultLock(folder):` the session owns the folder until the block ends (or the process dies)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILE
        self.fd: int | None = None

    def __enter__(self) -> ResultLock:
        try:
            # O_NOFOLLOW: a session.lock that is a link is never opened (and truncated) through
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise linked(self.path) from None
            raise machine_error(exc, "locking", self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_pid(fd)
            os.close(fd)
            raise ResultError(
                f"{self.path.parent} is in use by another accel-run session (PID {owner}); "
                "wait for it to end (or stop it), then resume"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


def owner(folder: Path) -> int | None:
    """The PID of the live session holding `folder`, or None when no session holds it."""
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(fd) or -1
    finally:
        os.close(fd)
    return None


def _read_pid(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0)
    except (OSError, ValueError):
        return 0
