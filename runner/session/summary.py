"""summary.json's content and the policies that rest on it: the exit code a result stands for, what a resume may keep.

Built from the records and the verdicts (so it sits above both); runner.results.summary writes the
file and reads it back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from runner.engines.kinds import job_word
from runner.errors import ExitCode, ResultError
from runner.results.layout import sha256_text, work_finished
from runner.results.records import LaunchRecord, RunRecord
from runner.results.summary import SUMMARY_FORMAT, engine_kinds, now
from runner.verdicts.check import Verdict
from runner.verdicts.why import explain
from runner.vocab import SPEC_COPY, Outcome, Status


def build_summary(
    *,
    status: str,
    spec: dict[str, Any],
    options: dict[str, Any],
    environment: dict[str, Any],
    records: dict[str, RunRecord],
    verdicts: list[Verdict],
    fault: str = "",
) -> dict[str, Any]:
    """summary.json as of now: the spec's facts, the options, the machine, every run and verdict."""
    runs = {name: record.summary() for name, record in records.items()}
    expectations = []
    for verdict in verdicts:
        data = verdict.as_json()
        # explain() reads the verdict's cause: unfit timings get a Why marked as such, misleading ones none
        data["why"] = explain(data, runs, environment)
        expectations.append(data)
    return {
        "format": SUMMARY_FORMAT,
        "status": status,
        "spec": spec,
        "options": options,
        "environment": {**environment, "updated_at": now()},
        "runs": runs,
        "expectations": expectations,
        **({"fault": fault} if fault else {}),
    }


def exit_code_of(summary: dict[str, Any]) -> ExitCode:
    """The exit code a result stands for (the same for the session and for --report)."""
    if summary.get("fault"):  # the machine stopped the session (a full disk): exit 3, as the session did
        return ExitCode.RUN_FAILED
    if summary.get("status") in ("interrupted", "abandoned"):
        return ExitCode.INTERRUPTED
    runs = summary.get("runs", {}).values()
    if any(run.get("status") in (Status.FAILED, Status.TIMEOUT) for run in runs):
        return ExitCode.RUN_FAILED
    verdicts = {expectation.get("verdict") for expectation in summary.get("expectations", [])}
    if verdicts & {Outcome.FAIL, Outcome.ERROR}:
        return ExitCode.FAILED
    if Outcome.INCONCLUSIVE in verdicts and not summary.get("options", {}).get("allow_inconclusive"):
        return ExitCode.FAILED
    return ExitCode.OK


def resumable_spec(folder: Path, summary: dict[str, Any]) -> Path:
    """The spec copy of a result that may be resumed; refuses when the copy or the original changed."""
    copy = folder / SPEC_COPY
    try:
        text = copy.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultError(f"cannot read {copy}: {exc.strerror or exc}") from None
    recorded = summary["spec"]["sha256"]
    if sha256_text(text) != recorded:
        raise ResultError(f"{copy} was edited after the result was started; it cannot be resumed")
    original = Path(summary["spec"]["path"])
    if original.is_file():
        current = sha256_text(original.read_text(encoding="utf-8"))
        if current != recorded:
            raise ResultError(
                f"{original} changed since this result was started (sha256 {recorded[:12]} -> {current[:12]}); "
                f"resuming would mix two specs. Start a new result with `accel-run {original}`, "
                "or restore the spec to resume"
            )
    return copy


def resumable_sets(summary: dict[str, Any], given: Sequence[str]) -> tuple[str, ...]:
    """The --set options a resume validates the spec with: the recorded ones; others given are refused.

    A resume applies the options the result was started with; giving none means "as started".
    Different ones would mix two specs in one result, like an edited spec file.
    """
    recorded = tuple(str(option) for option in summary.get("options", {}).get("sets", ()))
    if given and tuple(given) != recorded:
        started = " ".join(f"--set {option}" for option in recorded) if recorded else "no --set options"
        asked = " ".join(f"--set {option}" for option in given)
        raise ResultError(
            f"this result was started with {started}; resuming with {asked} would mix two specs. "
            "Resume with the same --set options (or none), or start a new result"
        )
    return recorded


def _saved_launches(
    summary: dict[str, Any], records: dict[str, RunRecord]
) -> Iterator[tuple[str, dict[str, Any], LaunchRecord]]:
    """(run name, its saved entry, one saved launch) for every launch of a run that `records` has."""
    for name, run in summary.get("runs", {}).items():
        if name in records:
            for launch in run.get("repeats", []):
                yield name, run, LaunchRecord.from_json(launch)


def keep_finished(summary: dict[str, Any], records: dict[str, RunRecord]) -> tuple[int, int]:
    """Put a result's finished launches into fresh records; (kept, dropped).

    A finished launch is kept only if its run is declared as it would be now (the same machine
    facts: threads, device), so repeats never mix set-ups; the others are rerun.
    """
    kept = dropped = 0
    for name, run, record in _saved_launches(summary, records):
        if record.status is not Status.OK:
            continue
        declared = records[name].declared
        if run.get("declared") != (declared.as_json() if declared else {}):
            dropped += 1
            continue
        records[name].launches[record.repeat] = record
        records[name].repeats = max(records[name].repeats, record.repeat)
        kept += 1
    return kept, dropped


def submitted_jobs(
    summary: dict[str, Any], records: dict[str, RunRecord], folder: Path | None = None
) -> dict[tuple[str, int], str]:
    """The SLURM jobs a session left uncollected: (run, repeat) -> job id.

    A job still submitted when its session was killed (pending, with its id); and a job whose launch
    was recorded interrupted although its folder holds the finished work (metrics.json and every
    rank's done marker: a job SLURM had not released when Ctrl-C ended the session), so the metrics
    on disk are collected, not thrown away by a resubmission. Their launches stay in the records (so
    summary.json keeps their ids until they are collected) and their runs are planned to include
    them, so the session reaches them in order.
    """
    jobs = {}
    word = job_word(engine_kinds(summary))
    for name, run, record in _saved_launches(summary, records):
        if not (record.job_id and records[name].selected and record.repeat not in records[name].launches):
            continue
        pending = record.status is Status.PENDING
        processes = run.get("declared", {}).get("processes", 1)
        finished = (
            folder is not None
            and record.status is Status.INTERRUPTED
            and work_finished(folder / record.directory, int(processes))
        )
        if pending or finished:
            jobs[(name, record.repeat)] = record.job_id
            if finished:  # still to do: collected by re-attaching to its job
                record = replace(record, status=Status.PENDING, reason=f"{word} {record.job_id}: to be collected")
            records[name].launches[record.repeat] = record
            records[name].repeats = max(records[name].repeats, record.repeat)
    return jobs
