"""summary.json as a file: written atomically, read back (with one clear error when it is damaged).

What goes into it, the exit code it stands for and what a resume keeps of it are the session's
(runner.session.summary): those rest on the verdicts, which come after results/.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from runner.errors import ResultError
from runner.jsonio import read_json, write_json_atomic
from runner.results.lock import owner
from runner.vocab import SUMMARY_FILE

SUMMARY_FORMAT = 1


def now() -> str:
    """UTC time as summary.json writes it."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def engine_kinds(summary: dict[str, Any]) -> list[str]:
    """The engine kinds a session's runs used, as summary.json's environment.engine lists them ("local, slurm")."""
    listed = str(summary.get("environment", {}).get("engine") or "")
    return [kind for kind in listed.split(", ") if kind]


class DamagedSummary(ResultError):
    """summary.json exists but cannot be used (not JSON, or not the shape accel-run writes)."""


# What the readers of summary.json rely on: key -> type, and whether it must be there.
_SHAPE: dict[str, tuple[type, bool]] = {
    "status": (str, True),
    "spec": (dict, True),
    "runs": (dict, True),
    "options": (dict, False),
    "environment": (dict, False),
    "expectations": (list, False),
}
_SPEC_SHAPE: dict[str, type] = {"path": str, "sha256": str}


def require_result_folder(result_dir: str | Path) -> Path:
    """The folder as a Path, or the one-line error when it is not a folder at all."""
    folder = Path(result_dir)
    if not folder.is_dir():
        raise ResultError(f"{result_dir} is not a result folder (expected OUTPUT/<spec>/<timestamp>/)")
    return folder


def load_summary(result_dir: str | Path) -> dict[str, Any]:
    """Read a result's summary.json, with one clear error when it is missing or damaged.

    A summary still saying "running" whose session no longer holds the folder's lock (it was
    killed) reads as "abandoned".
    """
    folder = require_result_folder(result_dir)
    path = folder / SUMMARY_FILE
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise ResultError(f"{path} does not exist; is {result_dir} a result folder?") from None
    except ValueError as exc:
        raise DamagedSummary(f"cannot read {path}: {exc}") from None
    except OSError as exc:
        raise ResultError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(data, dict) or data.get("format") != SUMMARY_FORMAT:
        raise DamagedSummary(f"{path} is not an accel-run summary (format {SUMMARY_FORMAT})")
    problem = _shape_problem(data)
    if problem:
        raise DamagedSummary(f"{path} has the wrong shape: {problem}")
    if data["status"] == "running" and owner(folder) is None:
        data["status"] = "abandoned"  # its session died without finishing; --resume reruns the rest
    return data


def _shape_problem(data: dict[str, Any]) -> str:
    for key, (kind, required) in _SHAPE.items():
        if key not in data and not required:
            continue
        if not isinstance(data.get(key), kind):
            return f"'{key}' is {type(data.get(key)).__name__ if key in data else 'missing'}, not {kind.__name__}"
    for key, kind in _SPEC_SHAPE.items():
        if not isinstance(data["spec"].get(key), kind):
            return f"'spec.{key}' is missing or not {kind.__name__}"
    for name, run in data["runs"].items():
        if not isinstance(run, dict) or not isinstance(run.get("repeats", []), list):
            return f"run '{name}' is not a record with a list of repeats"
    return ""


def save_summary(result_dir: Path, summary: dict[str, Any]) -> None:
    """Rewrite summary.json atomically (after every launch: a crash loses at most the launch in flight)."""
    write_json_atomic(result_dir / SUMMARY_FILE, summary)
