"""A damaged summary.json rebuilt from what the run folders still hold.

Every launch folder keeps plan.json (what was declared) and, when it finished, metrics.json
(what was measured); the result folder keeps the spec it ran (spec.yaml). From these the records,
verdicts and summary are computed again, exactly as a session computes them. What cannot come
back: the timings of a launch that wrote no metrics.json (it is recorded as not finished), and
the session's options and machine facts (the rebuilt summary says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.contract import Declared, MetricsRecord
from runner.errors import ResultError
from runner.jsonio import read_json, write_bytes_atomic
from runner.results.layout import launch_dir, sha256_text
from runner.results.records import LaunchRecord, RunRecord
from runner.results.summary import now, save_summary
from runner.session.summary import build_summary
from runner.spec.resolved import ValidatedSpec
from runner.spec.validate import validate_file
from runner.verdicts.check import check_expectations
from runner.vocab import METRICS_FILE, PLAN_FILE, SETS_FILE, SPEC_COPY, SUMMARY_FILE, Status


def rebuild_summary(folder: Path, damage: str) -> tuple[dict[str, Any], str]:
    """Rebuild and save summary.json (the damaged file kept beside it); returns it and a note saying so."""
    sets = _sets_of(folder)
    validated = _spec_of(folder, damage, sets)
    records = {name: _record(folder, validated, name) for name in validated.runs}
    launches = sum(len(r.launches) for r in records.values())
    if not launches:
        raise ResultError(f"{damage}; no run folder under {folder} holds a launch (plan.json): nothing to rebuild")
    spec = validated.spec
    summary = build_summary(
        status="rebuilt",
        spec={
            "name": spec.name,
            "description": spec.description,
            "path": str(folder / SPEC_COPY),
            "sha256": sha256_text(validated.document.text),
            "baseline": validated.baseline,
            "runs": list(records),
        },
        options={"sets": sets} if sets else {},
        environment={
            **_machine_of(folder, records),
            "rebuilt_at": now(),
            "rebuilt_from": "run folders (plan.json, metrics.json)",
        },
        records=records,
        verdicts=check_expectations(spec, records),
    )
    damaged = folder / SUMMARY_FILE
    if damaged.exists():
        write_bytes_atomic(folder / f"{SUMMARY_FILE}.damaged", damaged.read_bytes())
    save_summary(folder, summary)
    finished = sum(len(r.ok_launches()) for r in records.values())
    note = (
        f"{damage}; rebuilt it from the run folders: {launches} launch(es), {finished} with metrics "
        f"(the damaged file is kept as {SUMMARY_FILE}.damaged)"
    )
    return summary, note


def _machine_of(folder: Path, records: dict[str, RunRecord]) -> dict[str, Any]:
    """The machine the launches ran on, for the Machine line: plan.json's (the host that compiled them), else
    what metrics.json observed (versions, host name), else nothing (the report says "unknown")."""
    launches = [launch for record in records.values() for launch in record.launches.values()]
    for launch in launches:
        try:
            machine = read_json(folder / launch.directory / PLAN_FILE).get("machine")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(machine, dict) and machine:
            return machine
    for launch in launches:
        observed, ranks = launch.observed, launch.ranks
        if observed.torch:
            host = ranks[0].get("hostname", "") if ranks and isinstance(ranks[0], dict) else ""
            found = {"torch": observed.torch, "accelerate": observed.accelerate, "python": observed.python}
            versions = {key: value for key, value in found.items() if value}
            return {"hostname": host, "versions": versions}
    return {}


def _sets_of(folder: Path) -> list[str]:
    """The --set options the result was started with (sets.json), or none."""
    try:
        sets = read_json(folder / SETS_FILE)
    except (OSError, ValueError):
        return []
    return [str(option) for option in sets] if isinstance(sets, list) else []


def _spec_of(folder: Path, damage: str, sets: list[str]) -> ValidatedSpec:
    copy = folder / SPEC_COPY
    if not copy.is_file():
        raise ResultError(f"{damage}; {copy} is missing too, so it cannot be rebuilt")
    result = validate_file(str(copy), sets=sets)
    if result.spec is None:
        raise ResultError(f"{damage}; {copy} is not a valid spec, so it cannot be rebuilt")
    return result.spec


def _record(folder: Path, validated: ValidatedSpec, name: str) -> RunRecord:
    run = validated.runs[name]
    measure = run.config.measure
    record = RunRecord.measured_by(
        measure,
        name=name,
        description=run.description,
        repeats=0,
        declared=None,
        selected=False,
        auto=measure.repeats == "auto",
        workload="script" if run.script_file else "builtin",
    )
    repeat = 1
    while (launch_dir(folder, name, repeat) / PLAN_FILE).is_file():
        directory = launch_dir(folder, name, repeat)
        record.declared = _declared(read_json(directory / PLAN_FILE).get("declared"))
        record.launches[repeat] = _launch(directory, repeat, str(directory.relative_to(folder)))
        record.selected, record.repeats = True, repeat
        repeat += 1
    return record


def _declared(data: Any) -> Declared | None:
    """plan.json's declared part, or None where it cannot be read (the run's summary entry says {})."""
    try:
        return Declared.from_json(data)
    except (TypeError, ValueError, AttributeError):
        return None


def _launch(directory: Path, repeat: int, relative: str) -> LaunchRecord:
    try:
        measured = MetricsRecord.from_json(read_json(directory / METRICS_FILE))
    except (OSError, ValueError):
        reason = f"no readable {METRICS_FILE}: the launch did not finish (rebuilt from the run folder)"
        return LaunchRecord(repeat, Status.FAILED, relative, reason)
    note = "rebuilt from metrics.json after summary.json was damaged"
    launch = LaunchRecord(repeat, Status.OK, relative, notes=[note])
    launch.take(measured)
    return launch
