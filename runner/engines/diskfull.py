"""A launch that failed on a full disk says so, even when the disk had no room left for its traceback.

A rank that hits ENOSPC writes its exception to stderr.log, which lives on the same full disk:
the line is lost and the launch reads as "exited with code 1". So after any failed launch, the
free space of its folder's file system is looked at (statvfs); under FULL_BELOW_BYTES the reason
says that the disk is full and how much is free. Both engines' launches go through it (a SLURM
job's folder is on a shared file system, seen from here too).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from runner.engines.base import LaunchOutcome
from runner.vocab import Status

FULL_BELOW_BYTES = 1 << 20  # less than this free: no run's files fit (metrics.json, logs, checkpoints)
_SAID = "no space left on device"


def disk_cause(directory: Path) -> str:
    """'no space left on device (the file system holding DIR has 12 KiB free)' when it is full, else ''."""
    try:
        stats = os.statvfs(directory)
    except OSError:
        return ""
    free = stats.f_bavail * stats.f_frsize
    if stats.f_files and stats.f_favail == 0:
        return f"{_SAID} (the file system holding {directory} has no free inodes)"
    if free >= FULL_BELOW_BYTES:
        return ""
    shown = f"{free} bytes" if free < 1024 else f"{free // 1024} KiB"
    return f"{_SAID} (the file system holding {directory} has {shown} free)"


def with_disk_cause(outcome: LaunchOutcome, directory: Path) -> LaunchOutcome:
    """A failed launch's reason with the full disk added, unless the reason already says so."""
    if outcome.status is not Status.FAILED or _SAID in outcome.reason.lower():
        return outcome
    cause = disk_cause(directory)
    return replace(outcome, reason=f"{outcome.reason}; {cause}" if outcome.reason else cause) if cause else outcome
