"""A session from start to end: preflight, the launches in the order verdicts.rounds decides, the summary
written after each of them, then the verdicts and the report; `--resume` continues one.

First Ctrl-C (or SIGTERM) stops the launch in flight cleanly, a second kills at once; a machine fault
(a full disk, the result folder deleted) ends the session with what it has.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TextIO

from runner.engines.base import Engine, Interrupts, close_engines, start_engines
from runner.engines.kinds import job_word
from runner.errors import MachineError, PreflightError
from runner.jsonio import write_text_atomic
from runner.plan.machine import Machine, probe_machine
from runner.plan.preflight import preflight, skipped_runs
from runner.report.progress import ProgressUI
from runner.report.text import render
from runner.results.layout import launch_dir, new_result_dir, sha256_text
from runner.results.lock import ResultLock
from runner.results.nofollow import refuse_linked_runs, require_real
from runner.results.records import LaunchRecord
from runner.results.reserve import SpaceReserve
from runner.results.summary import now, require_result_folder, save_summary
from runner.session.launch import launch_one
from runner.session.report import load_or_rebuild, write_report
from runner.session.state import RunOptions, Session, SessionResult, new_records
from runner.session.summary import exit_code_of, keep_finished, resumable_sets, resumable_spec, submitted_jobs
from runner.spec.resolved import ValidatedSpec, select_runs
from runner.spec.validate import require_valid
from runner.verdicts.check import check_expectations
from runner.verdicts.rounds import next_round, schedule, stopped
from runner.vocab import SETS_FILE, SPEC_COPY, Status


def _check_machine(validated: ValidatedSpec, selected: list[str], machine: Machine, ui: ProgressUI) -> None:
    runs = [validated.runs[n] for n in selected]
    problems, warnings = preflight(runs, machine)
    for name, reason in skipped_runs(runs, machine).items():
        ui.say(f"accel-run: skipping run '{name}': it {reason}")
    for warning in warnings:
        ui.say(f"accel-run: warning: {warning}")
    if problems:
        raise PreflightError(problems)


def _engines(validated: ValidatedSpec, selected: list[str]) -> dict[str, Engine]:
    """The session's engines, each started for the selected runs of its kind (the local one's fork server now)."""
    return start_engines([validated.runs[name] for name in selected])


def run_spec(validated: ValidatedSpec, *, options: RunOptions, err: TextIO) -> SessionResult:
    """`accel-run SPEC`: run every selected run, check the expectations, report."""
    selected = select_runs(validated, options.only)
    engines = _engines(validated, selected)
    try:
        return _run_spec(validated, selected, engines, options, err)
    finally:
        close_engines(engines)


def _run_spec(
    validated: ValidatedSpec, selected: list[str], engines: dict[str, Engine], options: RunOptions, err: TextIO
) -> SessionResult:
    machine = probe_machine()
    ui = ProgressUI(stream=err, bars=options.progress)
    _check_machine(validated, selected, machine, ui)
    # absolute: a SLURM job starts in its run folder, where a relative path would point elsewhere
    result_dir = new_result_dir(options.output, validated.spec.name).absolute()
    text = validated.document.text
    write_text_atomic(result_dir / SPEC_COPY, text)
    if options.sets:  # with spec.yaml, what a rebuilt summary needs to resolve the runs as they ran
        write_text_atomic(result_dir / SETS_FILE, json.dumps(list(options.sets)) + "\n")
    records = new_records(validated, selected, machine, options)
    session = Session(validated, machine, result_dir, options, records, sha256_text(text), now(), engines=engines)
    session.spec_file = str(Path(validated.path).resolve())
    runnable = sum(record.selected for record in records.values())
    ui.say(f"accel-run: {validated.spec.name}: {runnable} run(s), results in {result_dir}")
    ui.say(f"accel-run: {bound_line(session)}")
    with ResultLock(result_dir), SpaceReserve(result_dir) as reserve:
        session.reserve = reserve
        return _run_session(session, ui)


def resume(result_dir: str, *, options: RunOptions, err: TextIO) -> SessionResult:
    """`--resume`: rerun the launches of a result that did not finish, if its spec is unchanged.

    The result keeps the options it was started with (--only, --repeats, --output, --set); a time
    limit and --allow-inconclusive may be given anew. Which finished launches are kept is
    results.summary.keep_finished's policy.
    """
    folder = require_result_folder(result_dir).absolute()  # as in run_spec: SLURM jobs need absolute paths
    require_real(folder)  # a session writes and deletes in it: never through a symbolic link
    with ResultLock(folder), SpaceReserve(folder) as reserve:  # one session per result folder (see lock)
        return _resume_locked(folder, options, err, reserve)


def _resume_locked(folder: Path, options: RunOptions, err: TextIO, reserve: SpaceReserve) -> SessionResult:
    summary, notes = load_or_rebuild(folder)
    for note in notes:
        print(f"accel-run: {note}", file=err)
    sets = resumable_sets(summary, options.sets)
    validated = require_valid(str(resumable_spec(folder, summary)), sets=sets, as_path=summary["spec"]["path"])
    validated = replace(validated, document=replace(validated.document, path=summary["spec"]["path"]))
    refuse_linked_runs(folder, validated.runs)  # before anything in them is deleted or rewritten
    saved = summary.get("options", {})
    merged = RunOptions(
        output=str(folder.parent.parent),
        only=tuple(saved.get("only", ())),
        repeats=saved.get("repeats"),
        timeout_s=options.timeout_s if options.timeout_s is not None else saved.get("timeout_s"),
        allow_inconclusive=options.allow_inconclusive or bool(saved.get("allow_inconclusive")),
        progress=options.progress,
        command=options.command,
        sets=sets,
        engine=saved.get("engine"),
    )
    selected = select_runs(validated, merged.only)
    machine = probe_machine()
    ui = ProgressUI(stream=err, bars=options.progress)
    _check_machine(validated, selected, machine, ui)
    records = new_records(validated, selected, machine, merged)
    kept, dropped = keep_finished(summary, records)
    started = summary.get("environment", {}).get("started_at", now())
    engines = _engines(validated, selected)
    session = Session(validated, machine, folder, merged, records, summary["spec"]["sha256"], started, engines=engines)
    session.reserve = reserve
    session.attach = submitted_jobs(summary, records, folder)
    session.spec_file = str(summary["spec"].get("file") or "")
    note = f"; {dropped} rerun because this machine declares them differently" if dropped else ""
    word = job_word(validated.runs[name].config.engine.kind for name, _ in session.attach)
    jobs = f"; re-attaching to {len(session.attach)} {word}(s) submitted before" if session.attach else ""
    ui.say(f"accel-run: resuming {folder}: {kept} finished launch(es) kept{note}{jobs}")
    try:
        return _run_session(session, ui)
    finally:
        close_engines(engines)


@contextmanager
def _interruptible(interrupts: Interrupts) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM): stop the current run cleanly. Second: KeyboardInterrupt, which kills at once."""

    def handler(signum: int, frame: FrameType | None) -> None:
        interrupts.press()
        if interrupts.count > 1:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _run_session(session: Session, ui: ProgressUI) -> SessionResult:
    interrupts = Interrupts()
    ui.begin(len(schedule(session.records)))
    session.save("running")
    try:
        with _interruptible(interrupts):
            interrupted = _launch_until_decided(session, interrupts, ui)
    except KeyboardInterrupt:
        interrupted = True
        _record_killed_launch(session)
    except MachineError as fault:
        ui.close()
        return _stopped_by_fault(session, str(fault))
    finally:
        ui.close()
    if interrupted:
        _cut_short(session, "interrupted")
    verdicts = check_expectations(session.validated.spec, session.records)
    spent = session.budget_s if session.budget_spent else None
    session.verdicts = [stopped(v, session.records, interrupted, spent) for v in verdicts]
    summary = session.save("interrupted" if interrupted else "complete")
    text, hints = write_report(summary, session.result_dir)
    notes = [f"accel-run: {hint}" for hint in hints]
    notes.append(f"accel-run: results in {session.result_dir} (report.md, summary.json)")
    return SessionResult("\n" + text, tuple(notes), exit_code_of(summary), session.result_dir)


def _stopped_by_fault(session: Session, fault: str) -> SessionResult:
    """After a machine fault: the summary and report with the cause, saved where the folder still takes them
    (the session's reserve is freed for it first), and printed in any case."""
    session.fault = fault
    _cut_short(session, "stopped by a machine fault")
    session.verdicts = check_expectations(session.validated.spec, session.records)
    if session.reserve is not None:
        session.reserve.release()
    summary = session.summary("interrupted")
    notes = []
    try:
        session.require_folder()
        save_summary(session.result_dir, summary)
        _, hints = write_report(summary, session.result_dir)
        notes += [f"accel-run: {hint}" for hint in hints]
    except MachineError as again:  # the fault itself (a full disk, a deleted folder) can forbid it
        notes.append(f"accel-run: {again}; what the folder holds may be older than the report above")
    notes.append(f"accel-run: error: {fault}")
    text = render(summary, markdown=False)
    return SessionResult("\n" + text, tuple(notes), exit_code_of(summary), session.result_dir)


def _cut_short(session: Session, why: str) -> None:
    """The session ends before its plan: runs with finished repeats become incomplete, judged on those."""
    for record in session.records.values():
        record.cut_short = why


def _launch_until_decided(session: Session, interrupts: Interrupts, ui: ProgressUI) -> bool:
    """Launch what the schedule holds, then the rounds auto repeats ask for; True when interrupted.

    Once the session has run for measure.max_session_s, no launch starts (see _over_budget).
    """
    while True:
        todo = schedule(session.records)
        if not todo:
            planned = next_round(session.validated.spec, session.records)
            if not planned.added:
                return False
            if _over_budget(session):
                return False
            for line in planned.lines():
                ui.say(line)
            ui.extend(planned.added)
            continue
        for name, repeat in todo:
            if interrupts.count:
                return True
            if _over_budget(session):
                return False
            session.require_folder()
            outcome = launch_one(session, name, repeat, interrupts, ui)
            session.save("running")
            if outcome.status is Status.INTERRUPTED:
                return True


def _over_budget(session: Session) -> bool:
    """Whether measure.max_session_s is spent; then what was still planned is not launched, and says so.

    A run with finished launches keeps them (its verdicts are judged on those); a run never launched
    is skipped with the reason, as a run this machine is too small for is.
    """
    budget = session.budget_s
    if budget is None or session.elapsed_s() < budget:
        return False
    for record in session.records.values():
        if not record.selected or len(record.launches) >= record.repeats:
            continue
        if record.launches:
            record.repeats = len(record.launches)
        else:
            record.selected = False
            record.skip_reason = f"was not run: measure.max_session_s ({budget:g} s) was spent first"
        session.budget_spent = True
    return True


def bound_line(session: Session) -> str:
    """How many launches the session starts with, how many repeats: auto may add, and what bounds its time."""
    selected = [r for r in session.records.values() if r.selected]
    first = len(schedule(session.records))
    auto = [r for r in selected if r.auto]
    most = sum(r.max_repeats for r in auto) + sum(r.repeats for r in selected if not r.auto)
    plan = (
        f"{first} launch(es), up to {most} while repeats: auto finds a verdict undecided"
        if auto
        else f"{first} launch(es) (measure.repeats)"
    )
    budget = session.budget_s
    if budget is None:
        return f"{plan}; no session limit (measure.max_session_s)"
    timeouts = [session.validated.runs[n].config.launch.timeout_s for n, r in session.records.items() if r.selected]
    last = (
        f" plus the launch then running (at most {max(t for t in timeouts if t is not None):g} s, launch.timeout_s)"
        if all(t is not None for t in timeouts)
        else " plus the launch then running"
    )
    return f"{plan}; no launch starts after {budget:g} s (measure.max_session_s){last}"


def _record_killed_launch(session: Session) -> None:
    """After a second Ctrl-C: the launch in flight is recorded as interrupted."""
    for name, repeat in [session.in_flight] if session.in_flight else []:
        directory = launch_dir(session.result_dir, name, repeat).relative_to(session.result_dir)
        submitted = session.records[name].launches.get(repeat)  # a SLURM job's id: --resume may collect it
        session.records[name].launches[repeat] = LaunchRecord(
            repeat,
            Status.INTERRUPTED,
            str(directory),
            "interrupted by a second Ctrl-C (killed at once)",
            job_id=submitted.job_id if submitted else "",
        )
