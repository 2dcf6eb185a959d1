"""The SLURM engine: a launch runs as a batch job; SLURM schedules it, accel-run submits, watches and collects.

Submit with `sbatch --parsable`, then poll `squeue` for the job's state (pending with SLURM's
reason, running) and the worker's progress file in the shared run folder; once the job has left
the queue, `scontrol show job` gives its end state (this works without SLURM accounting, where
`sacct` does not). Ctrl-C cancels the job with `scancel` and waits until it has left the queue.
The job does not depend on this process: when accel-run is killed, the job runs on and
`--resume` re-attaches to it by its id (kept in summary.json).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from runner.engines.base import Interrupts, JobUpdate, LaunchOutcome
from runner.engines.local import all_ranks_done, failure_excerpt, report_progress
from runner.engines.logs import error_line
from runner.plan.compile import LaunchPlan
from runner.plan.sbatch import SBATCH_FILE
from runner.vocab import METRICS_FILE, SLURM_TOOLS, STDERR_LOG, Status

POLL_S = 1.0  # squeue once a second: cheap for the controller, prompt enough for a person
COMMAND_TIMEOUT_S = 60.0  # a SLURM client that hangs this long means the controller is unreachable
LOST_AFTER_S = 120.0  # squeue failing this long in a row: the launch is given up (the job may live on)
CANCEL_WAIT_S = 120.0  # scancel returns at once; the job leaves the queue after its KillWait
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


def _slurm(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one SLURM client command (argv, never a shell) and return what it answered."""
    try:
        return subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise SlurmUnavailable(
            f"{argv[0]} is not installed (the slurm engine needs {', '.join(SLURM_TOOLS)})"
        ) from None
    except subprocess.TimeoutExpired:
        raise SlurmUnavailable(
            f"{argv[0]} did not answer in {COMMAND_TIMEOUT_S:g} s (is slurmctld reachable?)"
        ) from None


def submit(plan: LaunchPlan) -> str:
    """`sbatch --parsable job.sbatch` with the launch's environment; returns the job id."""
    done = _slurm(["sbatch", "--parsable", str(plan.directory / SBATCH_FILE)], env=plan.env)
    answer = done.stdout.strip().split(";")[0]
    if done.returncode != 0 or not answer.isdigit():
        message = (done.stderr.strip() or done.stdout.strip() or f"exit code {done.returncode}").splitlines()[-1]
        raise SlurmUnavailable(f"sbatch refused the job: {message}")
    return answer


def queue_state(job_id: str) -> JobState | None:
    """The job's state while squeue lists it; None once it has left the queue."""
    done = _slurm(["squeue", "-h", "-j", job_id, "-o", "%T|%r|%N"])
    line = done.stdout.strip().splitlines()[:1]
    if done.returncode != 0 and "Invalid job id" not in done.stderr:
        raise SlurmUnavailable(f"squeue failed: {done.stderr.strip() or done.returncode}")
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


def cancel(job_id: str, *, wait_s: float = CANCEL_WAIT_S) -> bool:
    """scancel the job and wait until it has left the queue (True) or `wait_s` passed (False)."""
    _slurm(["scancel", job_id])
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        state = queue_state(job_id)
        if state is None:
            return True
        time.sleep(POLL_S / 2)
    return False


class SlurmEngine:
    """Runs each launch as a SLURM job and watches it until it ends."""

    name = "slurm"

    def close(self) -> None:
        """Nothing is held between jobs: each one is submitted and watched on its own."""

    # Long on purpose, like local.execute: every way a job can end (done, failed, cancelled by
    # someone else, our time limit, Ctrl-C) is decided in one loop, so none forgets to cancel it.
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
        last: tuple[str, str] | None = None
        try:
            _tell(on_job, JobUpdate(job_id, how, ""))  # recorded at once; a failure to record cancels the job
            while True:
                if interrupts.count:
                    gone = cancel(job_id)
                    left = "" if gone else f" (still in squeue after {CANCEL_WAIT_S:g} s)"
                    return self._stopped(
                        plan,
                        job_id,
                        Status.INTERRUPTED,
                        f"interrupted by Ctrl-C; job {job_id} was cancelled{left}",
                        started,
                        running_since,
                    )
                try:
                    state = queue_state(job_id)
                except SlurmUnavailable:
                    # the controller can be briefly busy or restarting; the job lives on without us
                    silent_since = silent_since or time.monotonic()
                    if time.monotonic() - silent_since > LOST_AFTER_S:
                        raise
                    time.sleep(POLL_S)
                    continue
                silent_since = None
                if state is None or state.ended:
                    break
                if (state.state, state.reason) != last:
                    last = (state.state, state.reason)
                    _tell(on_job, JobUpdate(job_id, state.state, state.reason, state.nodes))
                now = time.monotonic()
                if state.state == "RUNNING":
                    running_since = running_since or now
                    if on_progress is not None:
                        report_progress(plan.directory, on_progress)
                if timeout_s is not None and running_since is not None and now - running_since > timeout_s:
                    cancel(job_id)
                    reason = (
                        f"time limit of {timeout_s:g} s reached (launch.timeout_s or --timeout); "
                        f"job {job_id} was cancelled"
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
            _slurm(["scancel", job_id])  # a second Ctrl-C, or a bug here: leave no job behind
            raise
        # re-attached, this session saw only part of the job: its times are SLURM's own account
        return self._ended(plan, job_id, started, None if how == "ATTACHED" else running_since)

    def _ended(self, plan: LaunchPlan, job_id: str, started: float, running_since: float | None) -> LaunchOutcome:
        """The job left the queue: decide from SLURM's end state and the run folder."""
        try:
            end = final_state(job_id)
        except SlurmUnavailable:
            end = None
        directory = plan.directory
        finished = (directory / METRICS_FILE).exists()
        all_done = all_ranks_done(directory, plan.declared.processes)  # every node's ranks, in the shared folder
        tail = failure_excerpt(directory)
        wall, queue_s = _times(started, running_since)
        if running_since is None and end is not None and end.run_s is not None:
            wall, queue_s = end.run_s, end.queue_s  # it ran (partly) while nobody watched: SLURM's own account
        state = end.state if end else "UNKNOWN"
        how = f"job {job_id} ended {state}" + (f" (reason: {end.reason})" if end and end.reason else "")
        if end and end.exit_code and end.exit_code != "0:0":
            how += f", exit code {end.exit_code}"
        if state == "COMPLETED" and finished:
            return LaunchOutcome(Status.OK, 0, wall, "", "", job_id=job_id, queue_s=queue_s)
        if finished and all_done:
            warning = (
                f"SLURM {how} after every rank had finished and {METRICS_FILE} was written; the measurements are kept"
                if end
                else f"SLURM no longer knows job {job_id}, but every rank finished and wrote {METRICS_FILE}"
            )
            return LaunchOutcome(Status.OK, 0, wall, "", tail, warning=warning, job_id=job_id, queue_s=queue_s)
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
        return LaunchOutcome(status, None, wall, reason, tail, job_id=job_id, queue_s=queue_s)

    def _stopped(
        self, plan: LaunchPlan, job_id: str, status: Status, reason: str, started: float, running_since: float | None
    ) -> LaunchOutcome:
        wall, queue_s = _times(started, running_since)
        tail = failure_excerpt(plan.directory)
        return LaunchOutcome(status, None, wall, reason, tail, job_id=job_id, queue_s=queue_s)


def _times(started: float, running_since: float | None) -> tuple[float, float | None]:
    """(wall, queue) as this session saw the job: wall from when it ran (or was submitted), queue until then."""
    wall = time.monotonic() - (running_since or started)
    return wall, None if running_since is None else running_since - started


def _tell(on_job: Callable[[JobUpdate], None] | None, update: JobUpdate) -> None:
    if on_job is not None:
        on_job(update)
