"""The main job: validated spec -> preflight -> launches (interleaved repeats) -> checks -> report.

This module orchestrates a session: the result folder, the SIGINT handler, the launches in the
order verdicts.rounds decides, and the summary written after each of them. What it decides is
computed elsewhere: compiling (plan), running (engines), judging (verdicts), summary.json and
the resume policy (results.summary), the report (report).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property, partial
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from runner.contract import MetricsRecord
from runner.engines.base import Engine, Interrupts, JobUpdate, LaunchOutcome
from runner.engines.diskfull import with_disk_cause
from runner.engines.local import LocalEngine
from runner.engines.slurm import SlurmEngine
from runner.errors import ExitCode, MachineError, PreflightError, machine_error
from runner.jsonio import read_json, write_text_atomic
from runner.plan.compile import LaunchPlan, compile_launch, declared_of, launcher_of, server_env
from runner.plan.machine import Machine, free_port, port_is_free, probe_machine
from runner.plan.preflight import preflight, skipped_runs
from runner.plan.quoting import join_line
from runner.plan.sbatch import SBATCH_FILE, compile_for_slurm
from runner.report.plots import write_plots
from runner.report.progress import ProgressUI
from runner.report.text import render
from runner.results.layout import launch_dir, new_result_dir, sha256_text
from runner.results.lock import ResultLock
from runner.results.nofollow import make_folders, refuse_linked_runs, require_real
from runner.results.rebuild import rebuild_summary
from runner.results.records import LaunchRecord, RunRecord
from runner.results.reserve import SpaceReserve
from runner.results.summary import (
    DamagedSummary,
    build_summary,
    exit_code_of,
    keep_finished,
    load_summary,
    now,
    require_result_folder,
    resumable_sets,
    resumable_spec,
    save_summary,
    submitted_jobs,
)
from runner.spec.models import SlurmEngineSection
from runner.spec.resolved import ResolvedRun, ValidatedSpec, select_runs
from runner.spec.validate import require_valid
from runner.verdicts.check import Verdict, check_expectations
from runner.verdicts.conformance import mismatches
from runner.verdicts.rounds import next_round, schedule, stopped
from runner.vocab import (
    CONFIG_FILE,
    DONE_PREFIX,
    METRICS_FILE,
    REPORT_FILE,
    SETS_FILE,
    SPEC_COPY,
    STDERR_LOG,
    Status,
    precision_name,
)


@dataclass(frozen=True)
class RunOptions:
    """What the command line adds to a spec."""

    output: str = "results"
    only: tuple[str, ...] = ()
    repeats: int | None = None
    timeout_s: float | None = None
    allow_inconclusive: bool = False
    progress: bool = True
    command: str = "accel-run"  # the command line as typed, recorded in summary.json
    sets: tuple[str, ...] = ()  # --set options the spec was validated with; --resume applies them again
    engine: str | None = None  # --engine, shown in the report (its effect is among the sets)


@dataclass
class Session:
    """One invocation's state: the spec, the machine, the result folder and every run's record."""

    validated: ValidatedSpec
    machine: Machine
    result_dir: Path
    options: RunOptions
    records: dict[str, RunRecord]
    spec_sha256: str
    started_at: str
    verdicts: list[Verdict] = field(default_factory=list)
    engines: dict[str, Engine] = field(default_factory=lambda: {"local": LocalEngine(), "slurm": SlurmEngine()})
    wall_started: float = field(default_factory=time.monotonic)  # for the session's timed share
    budget_spent: bool = False  # measure.max_session_s stopped launches that were still planned

    @cached_property
    def budget_s(self) -> float | None:
        """The session's budget (the smallest measure.max_session_s of the runs it launches), or None."""
        budgets = [
            budget
            for name, record in self.records.items()
            if record.selected and (budget := self.validated.runs[name].config.measure.max_session_s) is not None
        ]
        return min(budgets) if budgets else None

    def elapsed_s(self) -> float:
        """Seconds since the session started."""
        return time.monotonic() - self.wall_started

    fault: str = ""  # the machine fault that ended the session early (disk full, folder deleted)
    attach: dict[tuple[str, int], str] = field(default_factory=dict)  # (run, repeat) -> a job to re-attach to
    in_flight: tuple[str, int] | None = None  # the launch being run now
    spec_file: str = ""  # the spec file's absolute path: --report SPEC and compare find its results by it
    reserve: SpaceReserve | None = None  # disk space freed for the last save after a machine fault

    def engine_of(self, name: str) -> Engine:
        """The engine that runs `name`'s launches (its engine section's kind)."""
        return self.engines[self.validated.runs[name].config.engine.kind]

    def engine_names(self) -> str:
        """The engines the selected runs use, for summary.json."""
        kinds = {self.validated.runs[n].config.engine.kind for n, r in self.records.items() if r.selected}
        return ", ".join(sorted(kinds)) or "local"

    def require_folder(self) -> None:
        """The result folder must still exist: a session never recreates one deleted under it."""
        if not self.result_dir.is_dir():
            raise MachineError(
                f"the result folder {self.result_dir} was deleted while the session ran; "
                "nothing more can be saved there"
            )

    def save(self, status: str) -> dict[str, Any]:
        """Write summary.json now (atomically) and return it."""
        self.require_folder()
        summary = self.summary(status)
        save_summary(self.result_dir, summary)
        return summary

    def summary(self, status: str) -> dict[str, Any]:
        """summary.json's content as of now."""
        spec = self.validated.spec
        return build_summary(
            status=status,
            spec={
                "name": spec.name,
                "description": spec.description,
                "path": self.validated.path,
                "file": self.spec_file,
                "sha256": self.spec_sha256,
                "baseline": self.validated.baseline,
                "runs": list(self.records),
            },
            options=asdict(self.options),
            environment={
                **self.machine.as_json(),
                "engine": self.engine_names(),
                "started_at": self.started_at,
                "command": self.options.command,
                "session_wall_s": round(self.elapsed_s(), 3),
            },
            records=self.records,
            verdicts=self.verdicts,
            fault=self.fault,
        )


@dataclass(frozen=True)
class SessionResult:
    """What a session hands back to the CLI: the report to print, notes for stderr, the exit code."""

    report: str
    notes: tuple[str, ...]
    exit_code: ExitCode
    result_dir: Path


def _repeats(run: ResolvedRun, options: RunOptions) -> int | None:
    """The fixed number of repeats of a run, or None for measure.repeats: auto."""
    repeats = options.repeats or run.config.measure.repeats
    return None if repeats == "auto" else int(repeats)


def _new_records(
    validated: ValidatedSpec, selected: list[str], machine: Machine, options: RunOptions
) -> dict[str, RunRecord]:
    records = {}
    skips = skipped_runs([validated.runs[n] for n in selected], machine)
    for name, run in validated.runs.items():
        fixed = _repeats(run, options)
        records[name] = RunRecord.measured_by(
            run.config.measure,
            name=name,
            description=run.description,
            repeats=fixed or 1,
            declared=declared_of(run, machine),
            selected=name in selected,
            auto=fixed is None,
            skip_reason=skips.get(name, ""),
            workload="script" if run.script_file else "builtin",
        )
    return records


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
    """The session's engines; the fork server starts now when a run will use it, its imports beside ours."""
    forked = any(launcher_of(validated.runs[name]) == "fork" for name in selected)
    local = LocalEngine(server_env(os.environ) if forked else None)
    local.warm_up()
    return {"local": local, "slurm": SlurmEngine()}


def run_spec(validated: ValidatedSpec, *, options: RunOptions, err: TextIO) -> SessionResult:
    """`accel-run SPEC`: run every selected run, check the expectations, report."""
    selected = select_runs(validated, options.only)
    engines = _engines(validated, selected)
    try:
        return _run_spec(validated, selected, engines, options, err)
    finally:
        for engine in engines.values():
            engine.close()


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
    records = _new_records(validated, selected, machine, options)
    session = Session(validated, machine, result_dir, options, records, sha256_text(text), now(), engines=engines)
    session.spec_file = str(Path(validated.path).resolve())
    runnable = sum(record.selected for record in records.values())
    ui.say(f"accel-run: {validated.spec.name}: {runnable} run(s), results in {result_dir}")
    ui.say(f"accel-run: {bound_line(session)}")
    with ResultLock(result_dir), SpaceReserve(result_dir) as reserve:
        session.reserve = reserve
        return _run_session(session, ui)


def _prepare_launch(
    validated: ValidatedSpec,
    machine: Machine,
    result_dir: Path,
    name: str,
    repeat: int,
    repeats: int,
    *,
    attaching: bool = False,
) -> LaunchPlan:
    """Compile one launch and write its files (config, plan, command): everything but starting it.

    `attaching` to a job still running from an earlier session: its folder is left as it is.
    """
    run = validated.runs[name]
    engine = run.config.engine
    pinned = run.config.launch.main_process_port
    directory = launch_dir(result_dir, name, repeat)
    plan = compile_launch(
        run,
        spec_name=validated.spec.name,
        machine=machine,
        directory=directory,
        # on SLURM the port is derived from the job id inside the job
        port=pinned or (0 if isinstance(engine, SlurmEngineSection) else free_port()),
        repeat=repeat,
        repeats=repeats,
        base_env=dict(os.environ),
    )
    if isinstance(engine, SlurmEngineSection):
        plan = compile_for_slurm(plan, engine, spec_name=validated.spec.name, pinned_port=pinned)
    if attaching:
        return plan
    make_folders(result_dir, directory)  # never through a symbolic link (results.nofollow)
    # a resumed launch must not read an old result, nor an old rank's done marker
    for stale in (directory / METRICS_FILE, *directory.glob(f"{DONE_PREFIX}*")):
        stale.unlink(missing_ok=True)
    for file_name, content in plan.files.items():
        write_text_atomic(directory / file_name, content)
    return plan


@dataclass(frozen=True)
class DryRunLaunch:
    """One run as --dry-run compiled it."""

    name: str
    processes: int
    device: str
    precision: str
    config: str
    env: dict[str, str]
    argv: tuple[str, ...]
    machines: int = 1
    sbatch: str = ""  # the batch script of a SLURM run, submitted as `sbatch --parsable SCRIPT`


@dataclass(frozen=True)
class DryRun:
    """What --dry-run wrote and would start: as text for a person, as data for --format json."""

    spec: str
    result_dir: str
    refused: list[str]
    warnings: list[str]
    runs: list[DryRunLaunch]
    skipped: dict[str, str] = field(default_factory=dict)  # run -> why this machine would skip it

    def text(self) -> str:
        """Shell comments and one runnable command per run."""
        lines = [f"# dry run of {self.spec}: files in {self.result_dir}, nothing was started"]
        lines += [f"# preflight would refuse: {p}" for p in self.refused]
        lines += [f"# warning: {w}" for w in self.warnings]
        lines += [
            f"# would skip run '{name}': it {why} (its files are written all the same)"
            for name, why in self.skipped.items()
        ]
        for run in self.runs:
            nodes = f" on {run.machines} SLURM node(s)" if run.sbatch else ""
            what = f"{run.processes} process(es){nodes}, {run.device}, {run.precision}"
            lines.append(f"\n# run '{run.name}' ({what}); config: {run.config}")
            if run.sbatch:
                lines.append(f"# each node starts: {join_line(run.argv)} (with its machine rank; see the script)")
                lines.append(join_line(["sbatch", "--parsable", run.sbatch]))
            else:
                lines.append(join_line(["env", *[f"{k}={v}" for k, v in run.env.items()], *run.argv]))
        return "\n".join(lines) + "\n"

    def as_json(self) -> dict[str, Any]:
        """For --dry-run --format json."""
        return asdict(self)


def dry_run(validated: ValidatedSpec, *, options: RunOptions) -> DryRun:
    """`--dry-run`: write every launch's files and say what would start; nothing is started."""
    selected = select_runs(validated, options.only)
    machine = probe_machine()
    problems, warnings = preflight([validated.runs[n] for n in selected], machine)
    skipped = skipped_runs([validated.runs[n] for n in selected], machine)
    # absolute: a SLURM job starts in its run folder, where a relative path would point elsewhere
    result_dir = new_result_dir(options.output, validated.spec.name).absolute()
    write_text_atomic(result_dir / SPEC_COPY, validated.document.text)
    launches = []
    for name in selected:
        plan = _prepare_launch(validated, machine, result_dir, name, 1, _repeats(validated.runs[name], options) or 1)
        declared = plan.declared
        launches.append(
            DryRunLaunch(
                name=name,
                processes=declared.processes,
                device=declared.device,
                precision=precision_name(declared.mixed_precision),
                config=str(plan.directory / CONFIG_FILE),
                env=dict(plan.env_set),
                argv=tuple(plan.argv),
                machines=declared.machines,
                sbatch=str(plan.directory / SBATCH_FILE) if SBATCH_FILE in plan.files else "",
            )
        )
    return DryRun(validated.path, str(result_dir), problems, warnings, launches, skipped)


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
    summary, notes = _load_or_rebuild(folder)
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
    records = _new_records(validated, selected, machine, merged)
    kept, dropped = keep_finished(summary, records)
    started = summary.get("environment", {}).get("started_at", now())
    engines = _engines(validated, selected)
    session = Session(validated, machine, folder, merged, records, summary["spec"]["sha256"], started, engines=engines)
    session.reserve = reserve
    session.attach = submitted_jobs(summary, records, folder)
    session.spec_file = str(summary["spec"].get("file") or "")
    note = f"; {dropped} rerun because this machine declares them differently" if dropped else ""
    jobs = f"; re-attaching to {len(session.attach)} SLURM job(s) submitted before" if session.attach else ""
    ui.say(f"accel-run: resuming {folder}: {kept} finished launch(es) kept{note}{jobs}")
    try:
        return _run_session(session, ui)
    finally:
        for engine in engines.values():
            engine.close()


def write_report(summary: dict[str, Any], folder: Path) -> tuple[str, list[str]]:
    """report.md and the plots into the result folder; returns the terminal text and notes for stderr."""
    try:
        plots, hint = write_plots(summary, folder)
    except OSError as exc:  # matplotlib writing a PNG onto a full disk
        raise machine_error(exc, "writing plots into", folder) from None
    write_text_atomic(folder / REPORT_FILE, render(summary, markdown=True, plots=plots))
    return render(summary, markdown=False, plots=plots), [hint] if hint else []


def rerender_report(result_dir: str) -> tuple[str, ExitCode]:
    """`--report`: the report of a result, rewritten from its summary.json, and the exit code it stands for."""
    folder = Path(result_dir)
    require_real(folder)  # report.md (and a rebuilt summary) are written into it
    summary, notes = _load_or_rebuild(folder)
    try:
        text, hints = write_report(summary, folder)
    except MachineError as fault:  # a full disk: the report is still worth reading
        text, hints = render(summary, markdown=False), [f"{fault}; the report above was not saved"]
    return text + "".join(f"\n{note}\n" for note in [*notes, *hints]), exit_code_of(summary)


def _load_or_rebuild(folder: Path) -> tuple[dict[str, Any], list[str]]:
    """summary.json, or when it is damaged, the summary rebuilt from the run folders (and a note saying so)."""
    try:
        return load_summary(folder), []
    except DamagedSummary as damage:
        summary, note = rebuild_summary(folder, str(damage))
        return summary, [note]


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
            added = next_round(session.validated.spec, session.records)
            if not added:
                return False
            if _over_budget(session):
                return False
            ui.extend(added)
            continue
        for name, repeat in todo:
            if interrupts.count:
                return True
            if _over_budget(session):
                return False
            session.require_folder()
            outcome = _launch(session, name, repeat, interrupts, ui)
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


def _launch(session: Session, name: str, repeat: int, interrupts: Interrupts, ui: ProgressUI) -> LaunchOutcome:
    """Prepare, execute and record one launch."""
    begun = time.perf_counter()
    run = session.validated.runs[name]
    record = session.records[name]
    job_id = session.attach.pop((name, repeat), None)
    plan = _prepare_launch(
        session.validated,
        session.machine,
        session.result_dir,
        name,
        repeat,
        record.repeats,
        attaching=job_id is not None,
    )
    label = name if record.repeats == 1 else f"{name} (repeat {repeat}/{record.repeats})"
    if record.auto and record.repeats > 1:
        label = f"{name} (repeat {repeat}, auto)"
    ui.start(label)
    timeout = session.options.timeout_s or run.config.launch.timeout_s
    started_at = time.time()
    prepare_s = time.perf_counter() - begun
    pinned = run.config.launch.main_process_port
    local = run.config.engine.kind == "local"
    if local and pinned is not None and not port_is_free(pinned):
        # preflight checked it before the session; another process may have taken it since
        reason = (
            f"launch.main_process_port {pinned} is in use on this machine (taken since the session started); "
            "pick another, or remove it to get a free port per launch"
        )
        outcome = LaunchOutcome(Status.FAILED, None, 0.0, reason)
    else:
        session.in_flight = (name, repeat)
        outcome = session.engine_of(name).run(
            plan,
            timeout_s=timeout,
            interrupts=interrupts,
            on_progress=ui.progress,
            on_job=partial(_job_changed, session, ui, name, repeat, plan, started_at),
            job_id=job_id,
        )
        session.in_flight = None
    outcome = with_disk_cause(outcome, plan.directory)  # a full disk can leave no room for the rank's error
    launch = LaunchRecord(
        repeat=repeat,
        status=outcome.status,
        directory=str(plan.directory.relative_to(session.result_dir)),
        reason=outcome.reason,
        wall_s=round(outcome.wall_s, 3),
        log_tail=outcome.log_tail,
        command=plan.command_line,
        port=plan.port or None,  # SLURM: the port is derived in the job; the worker reports it
        started_at=started_at,
        prepare_s=round(prepare_s, 4),
        job_id=outcome.job_id,
        queue_s=None if outcome.queue_s is None else round(outcome.queue_s, 3),
        launcher=outcome.launcher or plan.launcher,
    )
    if outcome.warning:
        launch.notes.append(outcome.warning)
    if outcome.note:
        launch.notes.append(outcome.note)
    launch.notes.extend(outcome.notes)
    if outcome.leftovers_killed:
        launch.notes.append(f"{outcome.leftovers_killed} process(es) outlived the launcher and were stopped")
    if outcome.ok:
        _read_metrics(launch, plan, run.config.launch.main_process_port)
    launch.recorded_at = time.time()
    record.launches[repeat] = launch
    _tell(ui, label, record, launch, plan)
    return outcome


def _job_changed(
    session: Session,
    ui: ProgressUI,
    name: str,
    repeat: int,
    plan: LaunchPlan,
    started_at: float,
    update: JobUpdate,
) -> None:
    """A cluster job was submitted or changed state: say so, and keep its id in summary.json at once.

    Saved before the job ends, so a session killed now can be resumed by re-attaching to the job.
    """
    ui.say(f"  {update.text()}")
    if update.state in ("SUBMITTED", "ATTACHED"):
        session.records[name].launches[repeat] = LaunchRecord(
            repeat,
            Status.PENDING,
            str(plan.directory.relative_to(session.result_dir)),
            f"submitted as SLURM job {update.job_id}",
            command=plan.command_line,
            started_at=started_at,
            job_id=update.job_id,
        )
        session.save("running")


def _tell(ui: ProgressUI, label: str, record: RunRecord, launch: LaunchRecord, plan: LaunchPlan) -> None:
    """One launch's end on the terminal: its timings and notes, or why it failed and its log's last lines."""
    if launch.status is Status.OK:
        m = launch.metrics
        problem = record.timing_problem(launch)
        unfit = f"; not fit to time: {problem.sentence}" if problem else ""
        rate = m.get("samples_per_s")  # None: not one block of steps was timed
        speed = f"{rate:,.0f} samples/s" if isinstance(rate, int | float) else "no timed block"
        timing = f"train {m['train_time_s']:.2f} s, {speed}"
        ui.finish(label, f"ok in {launch.wall_s:.1f} s ({timing}{unfit})")
        for note in launch.notes:
            ui.say(f"  note: {note}")
        return
    ui.finish(label, f"{launch.status.value.upper()}: {launch.reason}")
    if launch.log_tail:
        ui.say("  last lines of " + str(plan.directory / STDERR_LOG) + ":")
        for line in launch.log_tail.splitlines()[-12:]:
            ui.say("  | " + line)


def phases_of(worker: dict[str, Any], ended_at: float) -> dict[str, Any]:
    """The worker's phases of a launch, with its teardown: from metrics.json written to the launch's exit."""
    phases = {name: value for name, value in worker.items() if name != "written_at"}
    written = worker.get("written_at")
    if isinstance(written, int | float):
        phases["teardown_s"] = round(max(0.0, ended_at - written), 6)
    return phases


def _read_metrics(launch: LaunchRecord, plan: LaunchPlan, pinned_port: int | None = None) -> None:
    """Fill a launch record from metrics.json, failing it when what ran differs from the spec.

    The port recorded is the one the process group really used (Accelerate moves to another one,
    silently, when the planned port is taken); a pinned port that was not used fails the launch.
    """
    measured = MetricsRecord.from_json(read_json(plan.directory / METRICS_FILE))
    launch.metrics, launch.observed = measured.metrics, measured.observed
    launch.attribution, launch.loss_curve, launch.ranks = measured.attribution, measured.loss_curve, measured.ranks
    launch.disturbance = measured.disturbance
    launch.phases = phases_of(measured.phases, launch.started_at + launch.wall_s)
    observed = measured.observed
    problems = mismatches(plan.declared, observed)
    if observed.main_process_port is not None:
        launch.port = observed.main_process_port
        if pinned_port is not None and observed.main_process_port != pinned_port:
            problems.append(
                f"launch.main_process_port pins {pinned_port}, but the process group used {observed.main_process_port} "
                f"(the port was taken when the launch started)"
            )
    if problems:
        launch.status = Status.FAILED
        launch.reason = "what ran differs from the spec: " + "; ".join(problems)
    elif observed.diverged:
        launch.status = Status.FAILED
        launch.reason = "training diverged: the training loss is not finite (lower train.optimizer.lr?)"
