"""Room kept for the last word: disk space held by a session so a full disk cannot stop it from saying why.

A disk that fills during a session used to leave summary.json as it was before the launch that hit
it ("pending", status "running"): the cause was lost and --report read the session as abandoned.
So a session allocates session.reserve in its result folder when it starts (posix_fallocate: the
blocks are really taken, not a sparse promise) and, when a write of summary.json fails, frees it and
writes again. The reserve is 1 MiB (summary.json of a few hundred launches and report.md), or a
quarter of the free space when the disk has less than 4 MiB free; it is removed when the session
ends. A session killed with SIGKILL leaves it behind; the next --resume of the folder takes it over.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from runner.vocab import RESERVE_FILE

RESERVE_BYTES = 1 << 20
SMALL_DISK_BYTES = 4 << 20


class SpaceReserve:
    """`with SpaceReserve(folder) as reserve:` space held for the session; `reserve.release()` frees it."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / RESERVE_FILE
        self.held = 0  # bytes allocated now

    def __enter__(self) -> SpaceReserve:
        try:
            stats = os.statvfs(self.path.parent)
            free = stats.f_bavail * stats.f_frsize
        except OSError:
            return self
        size = RESERVE_BYTES if free >= SMALL_DISK_BYTES else free // 4
        try:
            self.path.unlink(missing_ok=True)  # a killed session's reserve (or a link: never written through)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError:
            return self  # no reserve: a fault is then told only as far as the disk allows
        try:
            if size > 0:
                os.posix_fallocate(fd, 0, size)
                self.held = size
        except OSError:
            self.held = 0
        finally:
            os.close(fd)
        return self

    def release(self) -> bool:
        """Free the reserved space; True when there was some to free (a failed write is worth retrying)."""
        had = self.held > 0
        self.held = 0
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            return False
        return had

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()
