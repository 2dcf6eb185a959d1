"""One launch: compiled and its files written, run by its engine, read back into its record and told on the terminal."""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path
from typing import Any

from runner.contract import MetricsRecord
from runner.engines.base import Interrupts, JobUpdate, LaunchOutcome
from runner.engines.diskfull import with_disk_cause
from runner.jsonio import read_json, write_text_atomic
from runner.plan.compile import compile_launch
from runner.plan.engine_plan import planning_of
from runner.plan.launch import LaunchPlan
from runner.plan.machine import Machine
from runner.report.progress import ProgressUI
from runner.results.layout import launch_dir
from runner.results.nofollow import make_folders
from runner.results.records import LaunchRecord, RunRecord
from runner.session.state import Session
from runner.spec.resolved import ValidatedSpec
from runner.verdicts.check import timing_judged_runs
from runner.verdicts.conformance import mismatches
from runner.vocab import DONE_PREFIX, METRICS_FILE, STDERR_LOG, Status


def prepare_launch(
    validated: ValidatedSpec,
    machine: Machine,
    result_dir: Path,
    name: str,
    repeat: int,
    repeats: int,
    *,
    attaching: bool = False,
    timing_judged: bool = True,
) -> LaunchPlan:
    """Compile one launch and write its files (config, plan, command): everything but starting it.

    `attaching` to a job still running from an earlier session: its folder is left as it is.
    `timing_judged`: whether a checked expectation reads the run's timing (see timing_judged_runs).
    """
    run = validated.runs[name]
    planning = planning_of(run)
    directory = launch_dir(result_dir, name, repeat)
    plan = compile_launch(
        run,
        spec_name=validated.spec.name,
        machine=machine,
        directory=directory,
        port=run.config.launch.main_process_port or planning.port(),
        repeat=repeat,
        repeats=repeats,
        base_env=dict(os.environ),
        timing_judged=timing_judged,
    )
    plan = planning.finish(plan, run, spec_name=validated.spec.name)
    if attaching:
        return plan
    make_folders(result_dir, directory)  # never through a symbolic link (results.nofollow)
    # a resumed launch must not read an old result, nor an old rank's done marker
    for stale in (directory / METRICS_FILE, *directory.glob(f"{DONE_PREFIX}*")):
        stale.unlink(missing_ok=True)
    for file_name, content in plan.files.items():
        write_text_atomic(directory / file_name, content)
    return plan


def _own_interval_judged(session: Session, name: str) -> bool:
    """Whether a verdict may rest on this launch's own interval: a checked expectation reads the run's timing,
    and no earlier launch of the run was fit to time. Once one was, verdicts compare launches (the
    interval of one launch widens only a single pair), so a later launch's extra blocks would tighten nothing.
    """
    judged = name in timing_judged_runs(session.validated.spec, session.records)
    return judged and not session.records[name].by_repeat("samples_per_s")


def launch_one(session: Session, name: str, repeat: int, interrupts: Interrupts, ui: ProgressUI) -> LaunchOutcome:
    """Prepare, execute and record one launch."""
    begun = time.perf_counter()
    run = session.validated.runs[name]
    record = session.records[name]
    job_id = session.attach.pop((name, repeat), None)
    plan = prepare_launch(
        session.validated,
        session.machine,
        session.result_dir,
        name,
        repeat,
        record.repeats,
        attaching=job_id is not None,
        timing_judged=_own_interval_judged(session, name),
    )
    label = name if record.repeats == 1 else f"{name} (repeat {repeat}/{record.repeats})"
    if record.auto and record.repeats > 1:
        label = f"{name} (repeat {repeat}, auto)"
    ui.start(label)
    timeout = session.options.timeout_s or run.config.launch.timeout_s
    started_at = time.time()
    prepare_s = time.perf_counter() - begun
    # preflight checked a pinned port before the session; another process may have taken it since
    reason = planning_of(run).port_taken(run)
    if reason:
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
        read_metrics(launch, plan, run.config.launch.main_process_port)
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
            f"submitted as {update.job}",
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


def read_metrics(launch: LaunchRecord, plan: LaunchPlan, pinned_port: int | None = None) -> None:
    """Fill a launch record from metrics.json, failing it when what ran differs from the spec.

    The port recorded is the one the process group really used (Accelerate moves to another one,
    silently, when the planned port is taken); a pinned port that was not used fails the launch.
    """
    measured = MetricsRecord.from_json(read_json(plan.directory / METRICS_FILE))
    launch.take(measured)
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
