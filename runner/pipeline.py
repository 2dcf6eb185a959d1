"""The main job: validated spec -> preflight -> launches (interleaved repeats) -> checks -> report.

This module owns a session's side effects: the result folder, the SIGINT handler, the order of
launches and the summary written after each of them. Everything it decides is computed by the
pure stages (compile, conformance, check, why, report).
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from runner.engines.local import Interrupts, LaunchOutcome, execute
from runner.errors import ExitCode, PreflightError, ResultError, UsageError
from runner.jsonio import read_json, write_text_atomic
from runner.plan.compile import LaunchPlan, compile_launch, declared_of
from runner.plan.machine import Machine, free_port, probe_machine
from runner.plan.preflight import preflight
from runner.plan.worker_plan import Observed
from runner.report.plots import write_plots
from runner.report.progress import ProgressUI
from runner.report.text import render
from runner.results.records import (
    SUMMARY_FORMAT,
    TIMING_METRICS,
    LaunchRecord,
    RunRecord,
    launch_dir,
    load_summary,
    new_result_dir,
    save_summary,
    sha256_text,
)
from runner.spec.diagnose import did_you_mean
from runner.spec.models import ExperimentSpec
from runner.spec.validate import ResolvedRun, ValidatedSpec, require_valid
from runner.verdicts.check import Verdict, check_expectations
from runner.verdicts.conformance import mismatches
from runner.verdicts.why import explain
from runner.vocab import DONE_PREFIX, METRICS_FILE, REPORT_FILE, SPEC_COPY, Outcome, Status, precision_name


@dataclass(frozen=True)
class RunOptions:
    """What the command line adds to a spec."""

    output: str = "results"
    only: tuple[str, ...] = ()
    repeats: int | None = None
    timeout_s: float | None = None
    allow_inconclusive: bool = False
    progress: bool = True


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
    verdicts: list[Verdict] | None = None

    def summary(self, status: str) -> dict[str, Any]:
        """summary.json as of now."""
        runs = {name: record.summary() for name, record in self.records.items()}
        expectations = []
        for verdict in self.verdicts or []:
            data = verdict.as_json()
            # no Why from timings that cannot be trusted: the verdict's message already says why
            data["why"] = None if verdict.cause else explain(data, runs, self.machine.as_json())
            expectations.append(data)
        spec = self.validated.spec
        return {
            "format": SUMMARY_FORMAT,
            "status": status,
            "spec": {
                "name": spec.name,
                "description": spec.description,
                "path": self.validated.path,
                "sha256": self.spec_sha256,
                "baseline": self.validated.baseline,
                "runs": list(self.records),
            },
            "options": asdict(self.options),
            "environment": {
                **self.machine.as_json(),
                "started_at": self.started_at,
                "updated_at": _now(),
                "command": shlex.join(["accel-run", *sys.argv[1:]]),
            },
            "runs": runs,
            "expectations": expectations,
        }

    def save(self, status: str) -> dict[str, Any]:
        """Write summary.json now (atomically) and return it."""
        summary = self.summary(status)
        save_summary(self.result_dir, summary)
        return summary


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def select_runs(validated: ValidatedSpec, only: tuple[str, ...]) -> list[str]:
    """The runs to launch: all of them, or those named by --only (unknown names are a usage error)."""
    names = list(validated.runs)
    for name in only:
        if name not in validated.runs:
            raise UsageError(f"--only names no run: '{name}'{did_you_mean(name, names)}; runs: {', '.join(names)}")
    return [n for n in names if not only or n in only]


def _repeats(run: ResolvedRun, options: RunOptions) -> int | None:
    """The fixed number of repeats of a run, or None for measure.repeats: auto."""
    repeats = options.repeats or run.config.measure.repeats
    return None if repeats == "auto" else int(repeats)


def _new_records(
    validated: ValidatedSpec, selected: list[str], machine: Machine, options: RunOptions
) -> dict[str, RunRecord]:
    records = {}
    for name, run in validated.runs.items():
        measure, fixed = run.config.measure, _repeats(run, options)
        records[name] = RunRecord(
            name=name,
            description=run.description,
            repeats=fixed or 1,
            declared=declared_of(run, machine).as_json(),
            selected=name in selected,
            noise_floor=measure.noise_floor,
            auto=fixed is None,
            max_repeats=measure.max_repeats,
            max_time_s=measure.max_time_s,
            min_duration_s=measure.min_duration_s,
            max_disturbance=measure.max_disturbance,
        )
    return records


@dataclass(frozen=True)
class SessionResult:
    """What a session hands back to the CLI: the report to print, notes for stderr, the exit code."""

    report: str
    notes: tuple[str, ...]
    exit_code: ExitCode
    result_dir: Path


def _check_machine(validated: ValidatedSpec, selected: list[str], machine: Machine, ui: ProgressUI) -> None:
    problems, warnings = preflight([validated.runs[n] for n in selected], machine)
    for warning in warnings:
        ui.say(f"accel-run: warning: {warning}")
    if problems:
        raise PreflightError(problems)


def run_spec(validated: ValidatedSpec, *, options: RunOptions, err: TextIO) -> SessionResult:
    """`accel-run SPEC`: run every selected run, check the expectations, report."""
    selected = select_runs(validated, options.only)
    machine = probe_machine()
    ui = ProgressUI(stream=err, bars=options.progress)
    _check_machine(validated, selected, machine, ui)
    result_dir = new_result_dir(options.output, validated.spec.name)
    text = validated.document.text
    write_text_atomic(result_dir / SPEC_COPY, text)
    records = _new_records(validated, selected, machine, options)
    session = Session(validated, machine, result_dir, options, records, sha256_text(text), _now())
    ui.say(f"accel-run: {validated.spec.name}: {len(selected)} run(s), results in {result_dir}")
    return _run_session(session, ui)


def _prepare_launch(
    validated: ValidatedSpec, machine: Machine, result_dir: Path, name: str, repeat: int, repeats: int
) -> LaunchPlan:
    """Compile one launch and write its files (config, plan, command): everything but starting it."""
    run = validated.runs[name]
    directory = launch_dir(result_dir, name, repeat)
    directory.mkdir(parents=True, exist_ok=True)
    # a resumed launch must not read an old result, nor an old rank's done marker
    for stale in (directory / METRICS_FILE, *directory.glob(f"{DONE_PREFIX}*")):
        stale.unlink(missing_ok=True)
    plan = compile_launch(
        run,
        spec_name=validated.spec.name,
        machine=machine,
        directory=directory,
        port=run.config.launch.main_process_port or free_port(),
        repeat=repeat,
        repeats=repeats,
        base_env=dict(os.environ),
    )
    for file_name, content in plan.files.items():
        write_text_atomic(directory / file_name, content)
    return plan


def dry_run(validated: ValidatedSpec, *, options: RunOptions) -> str:
    """`--dry-run`: write every launch's files and return the commands; nothing is started."""
    selected = select_runs(validated, options.only)
    machine = probe_machine()
    problems, warnings = preflight([validated.runs[n] for n in selected], machine)
    result_dir = new_result_dir(options.output, validated.spec.name)
    write_text_atomic(result_dir / SPEC_COPY, validated.document.text)
    lines = [f"# dry run of {validated.path}: files in {result_dir}, nothing was started"]
    lines += [f"# preflight would refuse: {p}" for p in problems]
    lines += [f"# warning: {w}" for w in warnings]
    for name in selected:
        plan = _prepare_launch(validated, machine, result_dir, name, 1, _repeats(validated.runs[name], options) or 1)
        lines.append(
            f"\n# run '{name}' ({plan.declared.processes} process(es), {plan.declared.device}, "
            f"{precision_name(plan.declared.mixed_precision)}); config: {plan.directory / 'accelerate_config.yaml'}"
        )
        lines.append(shlex.join(["env", *[f"{k}={v}" for k, v in plan.env_set.items()], *plan.argv]))
    return "\n".join(lines) + "\n"


def resume(result_dir: str, *, options: RunOptions, err: TextIO) -> SessionResult:
    """`--resume`: rerun the launches of a result that did not finish, if its spec is unchanged.

    The result keeps the options it was started with (--only, --repeats, --output); a time limit
    and --allow-inconclusive may be given anew. A finished launch is kept only if it was declared
    as it would be now (the same machine facts: threads, device), so repeats never mix set-ups.
    """
    folder = Path(result_dir)
    summary = load_summary(folder)
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
    validated = require_valid(str(copy))
    validated = replace(validated, document=replace(validated.document, path=summary["spec"]["path"]))
    saved = summary.get("options", {})
    merged = RunOptions(
        output=str(folder.parent.parent),
        only=tuple(saved.get("only", ())),
        repeats=saved.get("repeats"),
        timeout_s=options.timeout_s if options.timeout_s is not None else saved.get("timeout_s"),
        allow_inconclusive=options.allow_inconclusive or bool(saved.get("allow_inconclusive")),
        progress=options.progress,
    )
    selected = select_runs(validated, merged.only)
    machine = probe_machine()
    ui = ProgressUI(stream=err, bars=options.progress)
    _check_machine(validated, selected, machine, ui)
    records = _new_records(validated, selected, machine, merged)
    kept = dropped = 0
    for name, run in summary.get("runs", {}).items():
        if name not in records:
            continue
        for launch in run.get("repeats", []):
            record = LaunchRecord.from_json(launch)
            if record.status is not Status.OK:
                continue
            if run.get("declared") != records[name].declared:
                dropped += 1  # declared differently (another machine?): rerun it, do not mix set-ups
                continue
            records[name].launches[record.repeat] = record
            kept += 1
    started = summary["environment"].get("started_at", _now())
    session = Session(validated, machine, folder, merged, records, recorded, started)
    note = f"; {dropped} rerun because this machine declares them differently" if dropped else ""
    ui.say(f"accel-run: resuming {folder}: {kept} finished launch(es) kept{note}")
    return _run_session(session, ui)


def rerender_report(result_dir: str) -> tuple[str, ExitCode]:
    """`--report`: the report of a result, from its summary.json (report.md and plots rewritten), and
    the exit code the session that made it had."""
    folder = Path(result_dir)
    summary = load_summary(folder)
    plots, hint = write_plots(summary, folder)
    write_text_atomic(folder / REPORT_FILE, render(summary, markdown=True, plots=plots))
    text = render(summary, markdown=False, plots=plots)
    return text + (f"\n{hint}\n" if hint else ""), exit_code_of(summary)


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


def _schedule(session: Session) -> list[tuple[str, int]]:
    """Launches still to do, repeats interleaved (A1 B1 A2 B2 ...) so machine drift hits every run alike."""
    todo = []
    most = max((r.repeats for r in session.records.values() if r.selected), default=0)
    for repeat in range(1, most + 1):
        for name, record in session.records.items():
            if record.selected and repeat <= record.repeats and repeat not in record.launches:
                todo.append((name, repeat))
    return todo


def next_round(spec: ExperimentSpec, records: dict[str, RunRecord]) -> int:
    """measure.repeats: auto: plan one more repeat of the runs of every undecided verdict; how many were added.

    A verdict is undecided when it is inconclusive and more repeats may settle it (a spread that
    holds the bound, disturbed repeats, a speedup beyond what the change can give); both runs of a
    pair get the same next repeat number, so they stay paired. A run stops at measure.max_repeats
    or once its launches took measure.max_time_s.
    """
    wanted: list[tuple[str, ...]] = []
    for verdict in check_expectations(spec, records):
        if verdict.verdict == Outcome.INCONCLUSIVE and verdict.repeats_needed is not None:
            if all(records[n].auto and _budget_left(records[n]) for n in verdict.runs):
                wanted.append(verdict.runs)
    added = 0
    for names in wanted:
        target = max(records[n].repeats for n in names) + 1
        for name in names:
            record = records[name]
            if record.repeats < target:
                added += target - record.repeats
                record.repeats = target
    return added


def _budget_left(record: RunRecord) -> bool:
    return len(record.launches) < record.max_repeats and record.launch_time_s() < record.max_time_s


def stopped(verdict: Verdict, records: dict[str, RunRecord], interrupted: bool) -> Verdict:
    """The verdict with how many repeats it used and why no more were launched."""
    runs = [records[n] for n in verdict.runs if n in records and records[n].selected]
    if not runs or verdict.verdict in (Outcome.SKIPPED, Outcome.ERROR):
        return verdict
    launches = max(len(r.ok_launches()) for r in runs)
    unfit = sum(len(r.timing_problems()) for r in runs) if verdict.metric in TIMING_METRICS else 0
    used = int(verdict.interval["n"]) if verdict.interval else launches
    if interrupted:
        why = "interrupted"
    elif not all(r.auto for r in runs):
        why = f"measure.repeats fixed at {max(r.repeats for r in runs)}"
    elif verdict.verdict != Outcome.INCONCLUSIVE:
        why = "decided"
    elif verdict.repeats_needed is None:
        why = "more repeats cannot settle it"
    elif any(len(r.launches) >= r.max_repeats for r in runs):
        why = f"measure.max_repeats ({min(r.max_repeats for r in runs)}) reached"
    else:
        why = f"measure.max_time_s ({min(r.max_time_s for r in runs):g} s) spent"
    return replace(verdict, repeats_used=used, repeats_unfit=unfit, stopped=why)


def _run_session(session: Session, ui: ProgressUI) -> SessionResult:
    interrupts = Interrupts()
    ui.begin(len(_schedule(session)))
    session.save("running")
    interrupted = False
    todo: list[tuple[str, int]] = []
    try:
        with _interruptible(interrupts):
            while not interrupted:
                todo = _schedule(session)
                if not todo:
                    added = next_round(session.validated.spec, session.records)
                    if not added:
                        break
                    ui.extend(added)
                    continue
                for name, repeat in todo:
                    if interrupts.count:
                        interrupted = True
                        break
                    outcome = _launch(session, name, repeat, interrupts, ui)
                    session.save("running")
                    if outcome.status is Status.INTERRUPTED:
                        interrupted = True
                        break
    except KeyboardInterrupt:
        interrupted = True
        for name, repeat in todo:  # the launch in flight: recorded as interrupted
            record = session.records[name]
            if repeat not in record.launches:
                directory = launch_dir(session.result_dir, name, repeat).relative_to(session.result_dir)
                record.launches[repeat] = LaunchRecord(
                    repeat, Status.INTERRUPTED, str(directory), "interrupted by a second Ctrl-C (killed at once)"
                )
                break
    finally:
        ui.close()
    verdicts = check_expectations(session.validated.spec, session.records)
    session.verdicts = [stopped(v, session.records, interrupted) for v in verdicts]
    summary = session.save("interrupted" if interrupted else "complete")
    plots, hint = write_plots(summary, session.result_dir)
    write_text_atomic(session.result_dir / REPORT_FILE, render(summary, markdown=True, plots=plots))
    notes = ([f"accel-run: {hint}"] if hint else []) + [
        f"accel-run: results in {session.result_dir} (report.md, summary.json)"
    ]
    return SessionResult(
        "\n" + render(summary, markdown=False, plots=plots),
        tuple(notes),
        exit_code_of(summary),
        session.result_dir,
    )


def exit_code_of(summary: dict[str, Any]) -> ExitCode:
    """The exit code of a session, from its summary (the same for the run and for --report)."""
    if summary.get("status") == "interrupted":
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


def _launch(session: Session, name: str, repeat: int, interrupts: Interrupts, ui: ProgressUI) -> LaunchOutcome:
    """Prepare, execute and record one launch."""
    begun = time.perf_counter()
    run = session.validated.runs[name]
    record = session.records[name]
    plan = _prepare_launch(session.validated, session.machine, session.result_dir, name, repeat, record.repeats)
    label = name if record.repeats == 1 else f"{name} (repeat {repeat}/{record.repeats})"
    if record.auto and record.repeats > 1:
        label = f"{name} (repeat {repeat}, auto)"
    ui.start(label)
    timeout = session.options.timeout_s or run.config.launch.timeout_s
    started_at = time.time()
    prepare_s = time.perf_counter() - begun
    outcome = execute(plan, timeout_s=timeout, interrupts=interrupts, on_progress=ui.progress)
    launch = LaunchRecord(
        repeat=repeat,
        status=outcome.status,
        directory=str(plan.directory.relative_to(session.result_dir)),
        reason=outcome.reason,
        wall_s=round(outcome.wall_s, 3),
        log_tail=outcome.log_tail,
        command=plan.command_line,
        port=plan.port,
        started_at=started_at,
        prepare_s=round(prepare_s, 4),
    )
    if outcome.warning:
        launch.notes.append(outcome.warning)
    if outcome.leftovers_killed:
        launch.notes.append(f"{outcome.leftovers_killed} process(es) outlived the launcher and were stopped")
    if outcome.ok:
        _read_metrics(launch, plan)
    record.launches[repeat] = launch
    if launch.status is Status.OK:
        m = launch.metrics
        problem = record.timing_problem(launch)
        unfit = f"; not fit to time: {problem.sentence}" if problem else ""
        timing = f"train {m['train_time_s']:.2f} s, {m['samples_per_s']:,.0f} samples/s"
        ui.finish(label, f"ok in {outcome.wall_s:.1f} s ({timing}{unfit})")
        for note in launch.notes:
            ui.say(f"  note: {note}")
    else:
        ui.finish(label, f"{launch.status.value.upper()}: {launch.reason}")
        if launch.log_tail:
            ui.say("  last lines of " + str(plan.directory / "stderr.log") + ":")
            for line in launch.log_tail.splitlines()[-12:]:
                ui.say("  | " + line)
    return outcome


def _read_metrics(launch: LaunchRecord, plan: LaunchPlan) -> None:
    """Fill a launch record from metrics.json, failing it when what ran differs from the spec."""
    data = read_json(plan.directory / METRICS_FILE)
    launch.metrics, launch.observed = data["metrics"], data["observed"]
    launch.attribution, launch.loss_curve, launch.ranks = data["attribution"], data["loss_curve"], data["ranks"]
    launch.disturbance = data.get("disturbance") or {}
    problems = mismatches(plan.declared, Observed.from_json(launch.observed))
    if problems:
        launch.status = Status.FAILED
        launch.reason = "what ran differs from the spec: " + "; ".join(problems)
    elif launch.observed.get("diverged"):
        launch.status = Status.FAILED
        launch.reason = "training diverged: the training loss is not finite (lower train.optimizer.lr?)"
