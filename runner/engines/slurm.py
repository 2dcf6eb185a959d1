"""The SLURM engine: a launch runs as a batch job; SLURM schedules it, accel-run submits, watches and collects.

Submit with `sbatch --parsable`, then poll `squeue` for the job's state (pending with SLURM's
reason, running) and the worker's progress file in the shared run folder; once the job has left
the queue, `scontrol show job` gives its end state (this works without SLURM accounting, where
`sacct` does not). Ctrl-C cancels the job with `scancel` and waits until it has left the queue.
The job does not depend on this process: when accel-run is killed, the job runs on and
`--resume` re-attaches to it by its id (kept in summary.json).

Every wait on the scheduler is bounded and told: a squeue that does not answer (slurmctld down)
is said at once and retried for LOST_AFTER_S; a job whose ranks have all finished and written
their metrics is collected RELEASE_WAIT_S after, released by SLURM or not (a node that stopped
responding keeps a job COMPLETING until SLURM declares it down), with a note naming the node; a
job COMPLETING without finished work is given up after COMPLETING_WAIT_S; after Ctrl-C the job
leaves the queue within CANCEL_WAIT_S or the reason says where it is held. A client command is
cut off when Ctrl-C is pressed, so one Ctrl-C always ends the launch within seconds.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from runner.engines.base import Interrupts, JobUpdate, LaunchOutcome
from runner.engines.local import failure_excerpt, report_progress
from runner.engines.logcap import cap_file
from runner.engines.logs import error_line
from runner.plan.launch import LaunchPlan
from runner.plan.sbatch import SBATCH_FILE, SLURM_TOOLS
from runner.results.layout import work_finished
from runner.spec.resolved import ResolvedRun
from runner.vocab import METRICS_FILE, STDERR_LOG, STDOUT_LOG, Status

POLL_S = 1.0  # squeue once a second: cheap for the controller, prompt enough for a person
COMMAND_TIMEOUT_S = 60.0  # a SLURM client that hangs this long means the controller is unreachable
ANSWER_S = 10.0  # squeue and scancel in the watch: longer than this, and the user is told it does not answer
LOST_AFTER_S = 120.0  # squeue failing this long in a row: the launch is given up (the job may live on)
CANCEL_WAIT_S = 30.0  # scancel returns at once; the job leaves the queue after its KillWait
RELEASE_WAIT_S = 30.0  # every rank finished: SLURM releases the job in seconds, or a node holds it
COMPLETING_WAIT_S = 120.0  # completing without finished work: KillWait and the epilog, at most
NOTICE_S = 10.0  # a wait on SLURM longer than this is told: what for, on which node, for how long more
# states in which a job has ended (squeue may still list it for a moment while it completes)
ENDED = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "REVOKED",
    "SPECIAL_EXIT",
    "TIMEOUT",
}


class SlurmUnavailable(Exception):
    """A SLURM client failed to answer (not installed, controller down): the launch cannot be judged."""


class _CutOff(Exception):
    """A client command stopped because Ctrl-C was pressed while it ran."""


@dataclass(frozen=True)
class JobState:
    """What SLURM says of a job: its state, the reason for it, and for an ended job its exit code."""

    job_id: str
    state: str
    reason: str = ""
    exit_code: str = ""
    nodes: str = ""
    run_s: float | None = None  # RunTime, for a job seen only after it ended (collected by --resume)
    queue_s: float | None = None  # StartTime - SubmitTime, likewise

    @property
    def ended(self) -> bool:
        """Whether the job is over (whatever the outcome)."""
        return self.state in ENDED


def _slurm(
    argv: list[str],
    env: dict[str, str] | None = None,
    *,
    timeout_s: float = COMMAND_TIMEOUT_S,
    stop: Callable[[], bool] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one SLURM client command (argv, never a shell) and return what it answered.

    A client retries a controller that is down for many seconds: it is cut off after `timeout_s`
    (SlurmUnavailable), or as soon as `stop()` says so (_CutOff: Ctrl-C was pressed).
    """
    try:
        proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise SlurmUnavailable(
            f"{argv[0]} is not installed (the slurm engine needs {', '.join(SLURM_TOOLS)})"
        ) from None
    deadline = time.monotonic() + timeout_s
    with proc:
        while True:
            try:
                out, err = proc.communicate(timeout=0.2)
                return subprocess.CompletedProcess(argv, proc.returncode, out, err)
            except subprocess.TimeoutExpired:
                cut = stop is not None and stop()
                if not cut and time.monotonic() < deadline:
                    continue
                proc.kill()
                proc.communicate()
                if cut:
                    raise _CutOff from None
                raise SlurmUnavailable(
                    f"{argv[0]} did not answer in {timeout_s:g} s (is slurmctld reachable?)"
                ) from None


def submit(plan: LaunchPlan) -> str:
    """`sbatch --parsable job.sbatch` with the launch's environment; returns the job id."""
    done = _slurm(["sbatch", "--parsable", str(plan.directory / SBATCH_FILE)], env=plan.env)
    answer = done.stdout.strip().split(";")[0]
    if done.returncode != 0 or not answer.isdigit():
        message = (done.stderr.strip() or done.stdout.strip() or f"exit code {done.returncode}").splitlines()[-1]
        raise SlurmUnavailable(f"sbatch refused the job: {message}")
    return answer


def queue_state(
    job_id: str, *, timeout_s: float = COMMAND_TIMEOUT_S, stop: Callable[[], bool] | None = None
) -> JobState | None:
    """The job's state while squeue lists it; None once it has left the queue."""
    done = _slurm(["squeue", "-h", "-j", job_id, "-o", "%T|%r|%N"], timeout_s=timeout_s, stop=stop)
    line = done.stdout.strip().splitlines()[:1]
    if done.returncode != 0 and "Invalid job id" not in done.stderr:
        raise SlurmUnavailable(
            f"squeue failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
        )
    if not line:
        return None
    state, reason, nodes = ([*line[0].split("|"), "", ""])[:3]
    return JobState(job_id, state, "" if reason == "None" else reason, nodes=nodes)


def final_state(job_id: str) -> JobState | None:
    """How a job that left the queue ended (`scontrol show job`); None when SLURM has forgotten it."""
    done = _slurm(["scontrol", "show", "job", job_id])
    if done.returncode != 0:
        return None
    fields = dict(re.findall(r"(\w+)=(\S*)", done.stdout))
    reason = fields.get("Reason", "")
    return JobState(
        job_id,
        fields.get("JobState", "UNKNOWN"),
        "" if reason == "None" else reason,
        exit_code=fields.get("ExitCode", ""),
        nodes=fields.get("NodeList", ""),
        run_s=_duration_s(fields.get("RunTime", "")),
        queue_s=_between(fields.get("SubmitTime", ""), fields.get("StartTime", "")),
    )


def _duration_s(text: str) -> float | None:
    """SLURM's [D-]HH:MM:SS as seconds."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d+):(\d+)", text)
    if match is None:
        return None
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def _between(start: str, end: str) -> float | None:
    """Seconds from one SLURM timestamp (2026-11-28T09:26:11) to another; None when either is unknown."""
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None


def node_states(nodes: str) -> str:
    """'n2: IDLE+COMPLETING+NOT_RESPONDING' for a SLURM node list, as scontrol has it ('' when it does not answer)."""
    if not nodes:
        return ""
    try:
        done = _slurm(["scontrol", "-o", "show", "node", nodes], timeout_s=ANSWER_S)
    except SlurmUnavailable:
        return ""
    found = []
    for line in done.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "NodeName" in fields:
            found.append(f"{fields['NodeName']}: {fields.get('State', '?')}")
    return ", ".join(found)


def cancel(job_id: str, *, wait_s: float = CANCEL_WAIT_S) -> str:
    """scancel the job and wait until it has left the queue: '' once it has, else where it is held (one clause)."""
    try:
        done = _slurm(["scancel", job_id], timeout_s=ANSWER_S)
    except SlurmUnavailable as exc:
        return f"scancel did not reach SLURM ({exc}): it may still run, check squeue -j {job_id}"
    if done.returncode != 0:
        answer = (done.stderr.strip() or done.stdout.strip() or f"exit code {done.returncode}").splitlines()[-1]
        return f"scancel failed ({answer}): it may still run, check squeue -j {job_id}"
    deadline = time.monotonic() + wait_s
    state: JobState | None = None
    while time.monotonic() < deadline:
        try:
            state = queue_state(job_id, timeout_s=ANSWER_S)
        except SlurmUnavailable as exc:
            return f"squeue does not answer ({exc}): check squeue -j {job_id}"
        if state is None:
            return ""
        time.sleep(POLL_S / 2)
    held = f" by {node_states(state.nodes) or state.nodes}" if state is not None and state.nodes else ""
    return f"it is still {state.state if state else 'queued'} after {wait_s:g} s, held{held}"


def _job_update(job_id: str, state: str, reason: str = "", nodes: str = "", *, note: str = "") -> JobUpdate:
    """A change of a SLURM job's state, for the session."""
    return JobUpdate(job_id, state, reason, nodes, note=note, scheduler="SLURM")


def start(runs: list[ResolvedRun]) -> SlurmEngine:
    """The session's SLURM engine (nothing to start: each job is submitted on its own)."""
    return SlurmEngine()


class SlurmEngine:
    """Runs each launch as a SLURM job and watches it until it ends."""

    name = "slurm"

    def close(self) -> None:
        """Nothing is held between jobs: each one is submitted and watched on its own."""

    # Long on purpose, like local.execute: every way a job can end (done, failed, cancelled by
    # someone else, our time limit, Ctrl-C, a node that holds it) is decided in one loop, so none
    # forgets to cancel it or to bound its wait.
    def run(
        self,
        plan: LaunchPlan,
        *,
        timeout_s: float | None,
        interrupts: Interrupts,
        on_progress: Callable[[int, int, str], None] | None = None,
        on_job: Callable[[JobUpdate], None] | None = None,
        job_id: str | None = None,
    ) -> LaunchOutcome:
        """Submit `plan` (or re-attach to `job_id`) and watch the job to its end."""
        started = time.monotonic()
        how = "ATTACHED" if job_id else "SUBMITTED"
        try:
            job_id = job_id or submit(plan)
        except SlurmUnavailable as exc:
            return LaunchOutcome(Status.FAILED, None, time.monotonic() - started, str(exc))
        running_since: float | None = None
        silent_since: float | None = None
        waiting_since: float | None = None  # the work finished, or the job is completing: SLURM must release it
        told_wait = False
        last: tuple[str, str] | None = None

        def pressed() -> bool:  # a client command is cut off by Ctrl-C
            return interrupts.count > 0

        try:
            _tell(on_job, _job_update(job_id, how, ""))  # recorded at once; a failure to record cancels the job
            while True:
                if interrupts.count:
                    _tell(on_job, _job_update(job_id, "CANCELLING", note=_CANCELLING))
                    left = cancel(job_id)
                    reason = f"interrupted by Ctrl-C; job {job_id} was cancelled" + (f" ({left})" if left else "")
                    return self._stopped(plan, job_id, Status.INTERRUPTED, reason, started, running_since)
                try:
                    state = queue_state(job_id, timeout_s=ANSWER_S, stop=pressed)
                except _CutOff:
                    continue  # Ctrl-C: handled at the top
                except SlurmUnavailable as exc:
                    # the controller can be busy or restarting; the job lives on without us
                    now = time.monotonic()
                    if silent_since is None:
                        silent_since = now
                        note = f"squeue does not answer ({exc}); the job runs on: retrying for up to {LOST_AFTER_S:g} s"
                        _tell(on_job, _job_update(job_id, "UNANSWERED", note=note))
                    if now - silent_since > LOST_AFTER_S:
                        raise
                    time.sleep(POLL_S)
                    continue
                if silent_since is not None:
                    silent_since = None
                    _tell(on_job, _job_update(job_id, "ANSWERED", note="squeue answers again"))
                if state is None or state.ended:
                    break
                if (state.state, state.reason) != last:
                    last = (state.state, state.reason)
                    _tell(on_job, _job_update(job_id, state.state, state.reason, state.nodes))
                now = time.monotonic()
                if state.state == "RUNNING":
                    running_since = running_since or now
                    if on_progress is not None:
                        report_progress(plan.directory, on_progress)
                finished = work_finished(plan.directory, plan.declared.processes)
                if finished or state.state == "COMPLETING":
                    waiting_since = waiting_since or now
                    bound = RELEASE_WAIT_S if finished else COMPLETING_WAIT_S
                    waited = now - waiting_since
                    if waited > bound:
                        return self._unreleased(plan, job_id, state, waited, finished, started, running_since)
                    if waited > NOTICE_S and not told_wait:
                        told_wait = True
                        _tell(on_job, _job_update(job_id, state.state, note=_holding(state, waited, bound, finished)))
                if timeout_s is not None and running_since is not None and now - running_since > timeout_s:
                    left = cancel(job_id)
                    reason = (
                        f"time limit of {timeout_s:g} s reached (launch.timeout_s or --timeout); "
                        f"job {job_id} was cancelled" + (f" ({left})" if left else "")
                    )
                    return self._stopped(plan, job_id, Status.TIMEOUT, reason, started, running_since)
                time.sleep(POLL_S)
        except SlurmUnavailable as exc:
            reason = (
                f"lost track of job {job_id} for {LOST_AFTER_S:g} s ({exc}); it may still run: "
                f"check squeue -j {job_id}, then --resume reruns this launch"
            )
            return self._stopped(plan, job_id, Status.FAILED, reason, started, running_since)
        except BaseException:
            _slurm(["scancel", job_id], timeout_s=ANSWER_S)  # a second Ctrl-C, or a bug here: leave no job behind
            raise
        # re-attached, this session saw only part of the job: its times are SLURM's own account
        return self._ended(plan, job_id, started, None if how == "ATTACHED" else running_since)

    def _unreleased(
        self,
        plan: LaunchPlan,
        job_id: str,
        state: JobState,
        waited: float,
        finished: bool,
        started: float,
        running_since: float | None,
    ) -> LaunchOutcome:
        """SLURM has not let go of the job in time: collect finished work with a note, or give the launch up."""
        held = node_states(state.nodes) or state.nodes or "its nodes"
        if state.state != "COMPLETING":
            cancel(job_id, wait_s=0)  # still running after its work: leave no job behind
        if finished:
            wall, queue_s = _times(started, running_since)
            warning = (
                f"SLURM had not released job {job_id} {waited:.0f} s after every rank finished "
                f"({state.state}, held by {held}); its {METRICS_FILE} was collected and the measurements are kept"
            )
            outcome = LaunchOutcome(Status.OK, 0, wall, "", "", warning=warning, job_id=job_id, queue_s=queue_s)
            return replace(outcome, notes=_cap_logs(plan))
        reason = (
            f"SLURM job {job_id} stayed {state.state} for {waited:.0f} s, held by {held}, and its ranks did not all "
            f"finish; accel-run stopped waiting (scontrol show job {job_id})"
        )
        return self._stopped(plan, job_id, Status.FAILED, reason, started, running_since)

    def _ended(self, plan: LaunchPlan, job_id: str, started: float, running_since: float | None) -> LaunchOutcome:
        """The job left the queue: decide from SLURM's end state and the run folder."""
        try:
            end = final_state(job_id)
        except SlurmUnavailable:
            end = None
        directory = plan.directory
        notes = _cap_logs(plan)
        finished = (directory / METRICS_FILE).exists()
        all_done = work_finished(directory, plan.declared.processes)  # every node's ranks, in the shared folder
        tail = failure_excerpt(directory)
        wall, queue_s = _times(started, running_since)
        if running_since is None and end is not None and end.run_s is not None:
            wall, queue_s = end.run_s, end.queue_s  # it ran (partly) while nobody watched: SLURM's own account
        state = end.state if end else "UNKNOWN"
        how = f"job {job_id} ended {state}" + (f" (reason: {end.reason})" if end and end.reason else "")
        if end and end.exit_code and end.exit_code != "0:0":
            how += f", exit code {end.exit_code}"
        if state == "COMPLETED" and finished:
            return LaunchOutcome(Status.OK, 0, wall, "", "", job_id=job_id, queue_s=queue_s, notes=notes)
        if finished and all_done:
            warning = (
                f"SLURM {how} after every rank had finished and {METRICS_FILE} was written; the measurements are kept"
                if end
                else f"SLURM no longer knows job {job_id}, but every rank finished and wrote {METRICS_FILE}"
            )
            return LaunchOutcome(
                Status.OK, 0, wall, "", tail, warning=warning, job_id=job_id, queue_s=queue_s, notes=notes
            )
        if end is None:
            reason = f"SLURM no longer knows job {job_id} (it ended over MinJobAge ago) and it wrote no {METRICS_FILE}"
        elif state == "COMPLETED":
            reason = f"SLURM {how}, but the job wrote no {METRICS_FILE}"
        elif not (directory / STDERR_LOG).exists():
            reason = (
                f"SLURM {how}, and its log {directory / STDERR_LOG} was never written: is the result folder "
                "on a file system the nodes share? (see scontrol show job / the slurmd log)"
            )
        else:
            cause = error_line(tail)
            reason = f"SLURM {how}" + (f": {cause}" if cause else "")
        status = Status.TIMEOUT if state == "TIMEOUT" else Status.FAILED
        return LaunchOutcome(status, None, wall, reason, tail, job_id=job_id, queue_s=queue_s, notes=notes)

    def _stopped(
        self, plan: LaunchPlan, job_id: str, status: Status, reason: str, started: float, running_since: float | None
    ) -> LaunchOutcome:
        wall, queue_s = _times(started, running_since)
        notes = _cap_logs(plan)
        tail = failure_excerpt(plan.directory)
        return LaunchOutcome(status, None, wall, reason, tail, job_id=job_id, queue_s=queue_s, notes=notes)


def _times(started: float, running_since: float | None) -> tuple[float, float | None]:
    """(wall, queue) as this session saw the job: wall from when it ran (or was submitted), queue until then."""
    wall = time.monotonic() - (running_since or started)
    return wall, None if running_since is None else running_since - started


def _tell(on_job: Callable[[JobUpdate], None] | None, update: JobUpdate) -> None:
    if on_job is not None:
        on_job(update)


_CANCELLING = f"Ctrl-C: scancel sent; waiting up to {CANCEL_WAIT_S:g} s for the job to leave the queue"


def _holding(state: JobState, waited: float, bound: float, finished: bool) -> str:
    """What a wait on SLURM waits for, on which node, and for how long more."""
    held = node_states(state.nodes) or state.nodes or "its nodes"
    then = "collected then, released or not" if finished else "given up then"
    what = "every rank finished, but SLURM has not released the job" if finished else "completing"
    return f"{what} after {waited:.0f} s, held by {held}: waiting {bound - waited:.0f} s more ({then})"


def _cap_logs(plan: LaunchPlan) -> tuple[str, ...]:
    """A finished job's logs (written by slurmstepd, not through accel-run) compacted to the cap; the notes."""
    notes = (cap_file(plan.directory / name) for name in (STDOUT_LOG, STDERR_LOG))
    return tuple(note for note in notes if note)
