"""The result folder's layout (a contract; see the README).

OUTPUT/<spec name>/<UTC timestamp>/spec.yaml, summary.json, report.md
OUTPUT/<spec name>/<UTC timestamp>/<run>/accelerate_config.yaml, command.txt, plan.json,
                                        metrics.json, stdout.log, stderr.log
repeat k >= 2 of a run lives in <run>/repeat-<k>/ (same files).

A result can be named without its timestamp (resolve_result): a spec's results folder or the spec
file stand for its newest result, `latest` for the newest result of any spec.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from pathlib import Path

from runner.errors import ResultError
from runner.vocab import DONE_PREFIX, METRICS_FILE, SUMMARY_FILE

LATEST = "latest"
_RESULT_NAME = re.compile(r"(\d{8}T\d{6}Z)(?:-(\d+))?")


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


def work_finished(directory: Path, ranks: int) -> bool:
    """Whether a launch folder holds finished work: metrics.json, and `ranks` ranks' done markers (each rank
    writes its marker once its work is durable; runner.worker.train)."""
    return (directory / METRICS_FILE).exists() and len(list(directory.glob(f"{DONE_PREFIX}*"))) >= ranks


def sha256_text(text: str) -> str:
    """Content hash of a spec, to notice when it changed before --resume."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _stamp_order(folder: Path) -> tuple[str, int] | None:
    """'20261128T101500Z-2' sorts as ('20261128T101500Z', 2); None for a name no result folder has."""
    match = _RESULT_NAME.fullmatch(folder.name)
    return (match.group(1), int(match.group(2) or 1)) if match else None


def results_in(spec_folder: Path) -> list[Path]:
    """The results of one spec (OUTPUT/<spec>/<timestamp>/ holding a summary.json), oldest first."""
    try:
        children = list(spec_folder.iterdir())
    except OSError:
        return []
    found = [c for c in children if _stamp_order(c) is not None and (c / SUMMARY_FILE).is_file()]
    return sorted(found, key=lambda c: _stamp_order(c) or ("", 0))


def resolve_result(reference: str, output: str | Path) -> Path:
    """The result folder a user means: the folder itself; OUTPUT/<spec>/ or a spec file: that spec's newest
    result; `latest`: the newest result of any spec under OUTPUT. Timestamps order results (UTC, so
    the names sort by time). Anything else comes back as given, for the caller's 'not a result folder'.
    """
    path, output = Path(reference), Path(output)
    if reference == LATEST and not path.exists():
        every = [r for spec in _children(output) for r in results_in(spec)]
        if not every:
            raise ResultError(f"'{LATEST}': there is no result under {output}/ yet (choose another with --output)")
        return max(every, key=lambda r: _stamp_order(r) or ("", 0))
    if path.is_dir():
        results = [] if (path / SUMMARY_FILE).exists() or _stamp_order(path) is not None else results_in(path)
        return results[-1] if results else path
    if path.is_file():
        name = _spec_name(path)
        folder = output / name
        return _newest(results_in(folder), f"no result of spec '{name}' in {folder}/ (run `accel-run {path}`)")
    return path


def _children(folder: Path) -> list[Path]:
    try:
        return [c for c in folder.iterdir() if c.is_dir()]
    except OSError:
        return []


def _newest(results: list[Path], missing: str) -> Path:
    if not results:
        raise ResultError(missing)
    return results[-1]


def _spec_name(path: Path) -> str:
    """The `name` of a spec file (its results live in OUTPUT/<name>/); the YAML reader is loaded only here."""
    from runner.spec.load import parse_spec, read_spec_text

    name = parse_spec(read_spec_text(str(path)), str(path)).data.get("name")
    if not isinstance(name, str) or not name:
        raise ResultError(f"{path} has no spec name, so it names no result (give the result folder)")
    return name
