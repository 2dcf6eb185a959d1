"""A launch's stdout.log and stderr.log, capped: the head and the tail are kept, the middle is left out, and said so.

A script that printed 100 MiB per rank left a 200 MiB stdout.log. The launch's processes now
write into pipes (named ones, in a private folder, so a launcher that opens its output by path,
the fork server, gets them too; `accelerate launch` gets their descriptors); a thread per stream
copies them into the log file, and once a file passes
LOG_CAP_BYTES it is compacted: its first HEAD_BYTES, one marker line saying how much was left out
here, and its last bytes (up to the cap), each cut at a line break when one is near. Only this
thread writes the file, so compacting never races a writer, and the file never exceeds about
twice the cap. What a reader wants from a log is at its ends: how the launch began, and the error
it ended with (failure_excerpt reads the tail).

A SLURM job's logs are written by slurmstepd on the node, not through us: cap_file compacts them
the same way once the job has ended.
"""

from __future__ import annotations

import os
import select
import shutil
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from runner.results.nofollow import create_fresh
from runner.vocab import STDERR_LOG, STDOUT_LOG

LOG_CAP_BYTES = 16 << 20  # per log file
HEAD_BYTES = 2 << 20  # of which the start of the output; the rest is its end
ALIGN_BYTES = 64 << 10  # a cut moves to a line break within this distance
_CHUNK = 1 << 20
JOIN_S = 5.0  # after the launch's processes are gone, the rest of their output is copied within this
POLL_MS = 100


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


class _CappedFile:
    """One log file written by one thread: appended to, compacted past the cap."""

    def __init__(self, fd: int, name: str, cap: int = LOG_CAP_BYTES, head: int = HEAD_BYTES) -> None:
        self.fd, self.name, self.cap, self.head = fd, name, cap, head
        self.size = 0  # bytes in the file now
        self.head_end: int | None = None  # where the marker starts, once compacted
        self.left_out = 0  # bytes of output not in the file

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
            self.size += written
        if self.size > 2 * self.cap:
            self.compact()

    def compact(self) -> None:
        """head + marker + the last bytes, to the cap; a no-op under it."""
        if self.size <= self.cap:
            return
        if self.head_end is None:
            self.head_end = self._cut_after_line(self.head)
            body_start = self.head_end
        else:
            body_start = self.head_end + self._marker_length
        keep = self.cap - self.head_end - 200  # room for the marker
        start = self._line_start(max(body_start, self.size - keep))
        tail = os.pread(self.fd, self.size - start, start)
        self.left_out += start - body_start
        marker = (
            f"\n[accel-run: {_mib(self.left_out)} of output left out here; {self.name} is capped at "
            f"{_mib(self.cap)}: its first {_mib(self.head_end)} and its last {_mib(len(tail))} are kept]\n"
        ).encode()
        self._marker_length = len(marker)
        os.ftruncate(self.fd, self.head_end)
        os.pwrite(self.fd, marker + tail, self.head_end)
        self.size = self.head_end + len(marker) + len(tail)
        os.lseek(self.fd, self.size, os.SEEK_SET)

    def _cut_after_line(self, position: int) -> int:
        """`position`, moved back to just after a line break within ALIGN_BYTES before it."""
        window = os.pread(self.fd, min(ALIGN_BYTES, position), max(0, position - ALIGN_BYTES))
        newline = window.rfind(b"\n")
        return position if newline < 0 else position - len(window) + newline + 1

    def _line_start(self, position: int) -> int:
        """`position`, moved on to just after a line break within ALIGN_BYTES after it."""
        window = os.pread(self.fd, ALIGN_BYTES, position)
        newline = window.find(b"\n")
        return position if newline < 0 or position + newline + 1 >= self.size else position + newline + 1

    _marker_length = 0

    @property
    def note(self) -> str:
        """What a reader is told, or '' when nothing was left out."""
        if not self.left_out:
            return ""
        return (
            f"{self.name} was capped at {_mib(self.cap)}: {_mib(self.left_out)} of output in its middle were left "
            "out (its first and last lines are kept; a line in the file marks the place)"
        )


class CappedLogs:
    """`logs = CappedLogs(directory).open()`: start the launch with its output to logs.stdout and logs.stderr
    (descriptors) or to logs.stdout_path and logs.stderr_path (for a launcher that opens them itself), and call
    logs.finish() once its processes are gone (also when leaving early); it returns the notes.
    (`with CappedLogs(directory) as logs:` does the same, finishing at the block's end.)"""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.stdout = self.stderr = -1  # write ends, held until finish: a pipe never ends before the launch opened it
        self.stdout_path = self.stderr_path = ""
        self._pipes: Path | None = None
        self._read_ends: list[int] = []
        self._files: list[_CappedFile] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def __enter__(self) -> CappedLogs:
        return self.open()

    def open(self) -> CappedLogs:
        """Create the log files (afresh, never through a link) and the pipes; start copying."""
        self._pipes = Path(tempfile.mkdtemp(prefix="accel-run-logs."))
        write_ends = []
        try:
            for name in (STDOUT_LOG, STDERR_LOG):
                log = _CappedFile(create_fresh(self.directory / name), name)
                self._files.append(log)
                pipe = self._pipes / name
                os.mkfifo(pipe, 0o600)
                read_end = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # opens without a writer
                os.set_blocking(read_end, True)
                self._read_ends.append(read_end)
                write_ends.append(os.open(pipe, os.O_WRONLY | os.O_CLOEXEC))
                copy = (read_end, log, self._stop)
                self._threads.append(threading.Thread(target=_copy, args=copy, name=f"accel-run-{name}", daemon=True))
        except BaseException:
            for fd in write_ends:
                os.close(fd)
            self._close()
            raise
        self.stdout, self.stderr = write_ends
        self.stdout_path, self.stderr_path = str(self._pipes / STDOUT_LOG), str(self._pipes / STDERR_LOG)
        for thread in self._threads:
            thread.start()
        return self

    def finish(self, timeout_s: float = JOIN_S) -> list[str]:
        """Copy what is left, compact to the cap; the notes for the launch record (what was left out)."""
        for fd in (self.stdout, self.stderr):
            if fd >= 0:
                os.close(fd)  # ours: the pipes end once the launch's processes have closed theirs
        self.stdout = self.stderr = -1
        for thread in self._threads:
            thread.join(timeout_s)  # a process that escaped every stop could hold a pipe: not forever
        self._stop.set()  # then what is in the pipes is copied, and the threads end
        for thread in self._threads:
            thread.join()
        self._threads = []
        self._close()
        notes = []
        for log in self._files:
            try:
                log.compact()
            except OSError:
                pass
            finally:
                os.close(log.fd)
            if log.note:
                notes.append(log.note)
        self._files = []
        return notes

    def _close(self) -> None:
        for fd in self._read_ends:
            try:
                os.close(fd)
            except OSError:
                pass
        self._read_ends = []
        if self._pipes is not None:
            shutil.rmtree(self._pipes, ignore_errors=True)
            self._pipes = None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._files:
            self.finish(timeout_s=JOIN_S if kind is None else 0)


def _copy(read_end: int, log: _CappedFile, stop: threading.Event) -> None:
    """The copying thread of one stream: until the pipe ends (every writer gone), or `stop` and it is drained."""
    poller = select.poll()
    poller.register(read_end, select.POLLIN)
    while True:
        if not poller.poll(POLL_MS):
            if stop.is_set():
                return  # nothing left to read, and no wait for writers that escaped the stop
            continue
        try:
            data = os.read(read_end, _CHUNK)
        except OSError:
            return
        if not data:
            return
        try:
            log.write(data)
        except OSError:
            pass  # a full disk: the output is dropped, the pipe kept drained so the launch never blocks on it


def cap_file(path: Path) -> str:
    """Compact a finished log written by someone else (a SLURM job's) to the cap; the note, or ''."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        log = _CappedFile(fd, path.name)
        log.size = os.fstat(fd).st_size
        log.compact()
        return log.note
    except OSError:
        return ""
    finally:
        os.close(fd)
