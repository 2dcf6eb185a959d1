"""The result folder's layout (a contract; see the README).

OUTPUT/<spec name>/<UTC timestamp>/spec.yaml, summary.json, report.md
OUTPUT/<spec name>/<UTC timestamp>/<run>/accelerate_config.yaml, command.txt, plan.json,
                                        metrics.json, stdout.log, stderr.log
repeat k >= 2 of a run lives in <run>/repeat-<k>/ (same files).

A result can be named without its timestamp (resolve_result): a spec's results folder stands for
its newest result, a spec file for the newest result of that file (results are filed under the
spec's `name:`, so two files that share a name share a folder: summary.json's spec.file and
spec.sha256 tell them apart), `latest` for the newest result of any spec.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Resolved:
    """The result folder a reference names, and a warning to show with it ('' when there is none)."""

    folder: Path
    warning: str = ""


def resolve_result(reference: str, output: str | Path) -> Resolved:
    """The result folder a user means: the folder itself; OUTPUT/<spec>/: that spec's newest result; a spec
    file: the newest result of that file (its path, or its content, recorded in summary.json);
    `latest`: the newest result of any spec under OUTPUT. Timestamps order results (UTC, so the
    names sort by time). Anything else comes back as given, for the caller's 'not a result folder'.
    """
    path, output = Path(reference), Path(output)
    if reference == LATEST and not path.exists():
        every = [r for spec in _children(output) for r in results_in(spec)]
        if not every:
            raise ResultError(f"'{LATEST}': there is no result under {output}/ yet (choose another with --output)")
        return Resolved(max(every, key=lambda r: _stamp_order(r) or ("", 0)))
    if path.is_dir():
        results = [] if (path / SUMMARY_FILE).exists() or _stamp_order(path) is not None else results_in(path)
        return Resolved(results[-1] if results else path)
    if path.is_file():
        return _newest_of_file(path, output)
    return Resolved(path)


def _newest_of_file(path: Path, output: Path) -> Resolved:
    """The newest result of the spec file `path` in OUTPUT/<its name>/, and a warning when other files share it."""
    name, text = _spec_name(path)
    folder = output / name
    mine, others = [], {}
    for result in results_in(folder):
        recorded = _recorded_spec(result)
        if recorded is None or _same_spec(recorded, path, sha256_text(text)):
            mine.append(result)
        else:
            others[str(recorded.get("file") or recorded.get("path"))] = str(recorded.get("path"))
    shown = sorted(set(others.values()))
    another = f"{'another spec file' if len(shown) == 1 else 'other spec files'} named '{name}' ({', '.join(shown)})"
    if not mine:
        if others:
            raise ResultError(
                f"no result of {path} in {folder}/: the results there are of {another}; run `accel-run {path}`, "
                "or give another name: to one of them"
            )
        raise ResultError(f"no result of spec '{name}' in {folder}/ (run `accel-run {path}`)")
    warning = f"{folder}/ also holds results of {another}; showing the newest of {path}" if others else ""
    return Resolved(mine[-1], warning)


def _recorded_spec(result: Path) -> dict[str, object] | None:
    """summary.json's `spec` section of a result, or None when it cannot be read (then it cannot tell)."""
    try:
        spec = json.loads((result / SUMMARY_FILE).read_text(encoding="utf-8")).get("spec")
    except (OSError, ValueError, AttributeError):
        return None
    return spec if isinstance(spec, dict) else None


def _same_spec(recorded: dict[str, object], path: Path, sha256: str) -> bool:
    """Whether a result was run from the spec file `path`: the same file (summary.json's spec.file, or its
    spec.path from an older result), or the same content (spec.sha256: a copied or moved file)."""
    if recorded.get("sha256") == sha256:
        return True
    file = recorded.get("file") or recorded.get("path")
    return isinstance(file, str) and bool(file) and _resolved(Path(file)) == _resolved(path)


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:  # a loop of symbolic links: compare it as written
        return path.absolute()


def _children(folder: Path) -> list[Path]:
    try:
        return [c for c in folder.iterdir() if c.is_dir()]
    except OSError:
        return []


def _newest(results: list[Path], missing: str) -> Path:
    if not results:
        raise ResultError(missing)
    return results[-1]


def _spec_name(path: Path) -> tuple[str, str]:
    """The `name` of a spec file (its results live in OUTPUT/<name>/) and its text; the YAML reader is loaded
    only here."""
    from runner.spec.load import parse_spec, read_spec_text

    text = read_spec_text(str(path))
    name = parse_spec(text, str(path)).data.get("name")
    if not isinstance(name, str) or not name:
        raise ResultError(f"{path} has no spec name, so it names no result (give the result folder)")
    return name, text
