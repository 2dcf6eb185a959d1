"""Result and run folders are never followed through symbolic links when accel-run writes or deletes in them.

A run folder replaced by a link made --resume delete the link target's metrics.json, empty its
stdout.log and write its own files there. So every folder a session writes into is opened with
O_NOFOLLOW | O_DIRECTORY, one component at a time from the result folder down (each opened
relative to the one above it, as openat does), and a link anywhere on that way is refused with one
line naming it. Files are replaced, never written through: JSON and reports by rename
(jsonio), logs unlinked and created afresh with O_EXCL | O_NOFOLLOW (create_fresh), so a log that
is a link, or a hard link to another file, is never truncated through. Folders above the result
folder (a results/ that links to a bigger disk) are the user's own set-up and are followed.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

from runner.errors import AccelRunError, ResultError, machine_error

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class LinkedFolder(ResultError):
    """A result or run folder is a symbolic link: accel-run does not write or delete through it."""


def linked(path: Path) -> LinkedFolder:
    """The one-line error for a link found where a real folder (or file) must be."""
    try:
        target = f" (to {os.readlink(path)})"
    except OSError:
        target = ""
    return LinkedFolder(
        f"{path} is a symbolic link{target}; accel-run never writes or deletes through one: "
        "replace it with the real folder, or remove it"
    )


def require_real(folder: Path) -> None:
    """The result folder itself must not be a link (the folders above it may be)."""
    if folder.is_symlink():
        raise linked(folder)


def make_folders(result_dir: Path, directory: Path) -> None:
    """Create the folders from `result_dir` down to `directory` (inside it), none of them through a link."""
    parts = directory.relative_to(result_dir).parts
    try:
        if not os.path.lexists(result_dir):
            result_dir.mkdir(parents=True)  # (a session's is there already; a test's may not be)
        fd = os.open(result_dir, _DIR_FLAGS)
    except OSError as exc:
        raise _refusal(exc, result_dir, "opening") from None
    try:
        here = result_dir
        for part in parts:
            here = here / part
            try:
                os.mkdir(part, 0o777, dir_fd=fd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise machine_error(exc, "creating", here) from None
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _refusal(exc, here, "opening") from None
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def refuse_linked_runs(folder: Path, runs: Iterable[str]) -> None:
    """Before a --resume writes anything: no run folder (nor a repeat-<k> folder in it) may be a link."""
    require_real(folder)
    for run in runs:
        path = folder / run
        if path.is_symlink():
            raise linked(path)
        if not path.is_dir():
            continue
        try:
            repeats = [child for child in path.iterdir() if child.name.startswith("repeat-")]
        except OSError:
            continue
        for child in sorted(repeats):
            if child.is_symlink():
                raise linked(child)


def create_fresh(path: Path) -> int:
    """A new, empty file at `path` (a log, opened to write and read back): whatever was there is unlinked first,
    never written through."""
    try:
        path.unlink(missing_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise machine_error(exc, "creating", path) from None


def _refusal(exc: OSError, path: Path, doing: str) -> AccelRunError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and path.is_symlink():
        return linked(path)
    return machine_error(exc, doing, path)
