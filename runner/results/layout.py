"""The result folder's layout (a contract; see the README).

OUTPUT/<spec name>/<UTC timestamp>/spec.yaml, summary.json, report.md
OUTPUT/<spec name>/<UTC timestamp>/<run>/accelerate_config.yaml, command.txt, plan.json,
                                        metrics.json, stdout.log, stderr.log
repeat k >= 2 of a run lives in <run>/repeat-<k>/ (same files).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

from runner.errors import ResultError


def utc_stamp(now: dt.datetime | None = None) -> str:
    """20261128T101500Z"""
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")


def new_result_dir(output: str | Path, spec_name: str) -> Path:
    """Create OUTPUT/<spec>/<timestamp>/, with a -2, -3 ... suffix when a concurrent run took the name."""
    parent = Path(output) / spec_name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultError(
            f"cannot create the results folder {parent}: {exc.strerror or exc} (choose another with --output)"
        ) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ResultError(f"the results folder {parent} is not writable (choose another with --output)")
    stamp = utc_stamp()
    for attempt in range(1, 1000):
        candidate = parent / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise ResultError(
                f"cannot create {candidate}: {exc.strerror or exc} (choose another with --output)"
            ) from None
        return candidate
    raise ResultError(f"too many results named {stamp} in {parent}")


def launch_dir(result_dir: Path, run: str, repeat: int) -> Path:
    """Where launch `repeat` of `run` writes its files."""
    return result_dir / run if repeat == 1 else result_dir / run / f"repeat-{repeat}"


def sha256_text(text: str) -> str:
    """Content hash of a spec, to notice when it changed before --resume."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
