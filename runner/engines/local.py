"""Stage 5, execute: the one place that starts processes.

A launch runs as argv (never through a shell) in a session of its own, its output teed to
stdout.log/stderr.log. While it runs we watch: the launcher's exit, each rank's heartbeat (a
dead rank is noticed within seconds, before its peers hang in a collective), the time limit and
Ctrl-C. Stopping a launch stops its whole process tree: torch's elastic agent starts each rank
in a session of its own, so a process-group kill is not enough; engines.reap finds every process the
launch started, however it detached. The logs come through engines.logcap, which caps them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runner.engines.base import Interrupts, JobUpdate, LaunchOutcome
from runner.engines.liveness import unresponsive_rank
from runner.engines.logcap import CappedLogs
from runner.engines.logs import error_line, first_error
from runner.engines.reap import AfterWork, LaunchProcesses
from runner.engines.warm import ForkedLaunch, ForkServer, ForkServerError, startup_differences
from runner.jsonio import read_json
from runner.plan.compile import launcher_of, server_env
from runner.plan.launch import LaunchPlan
from runner.spec.resolved import ResolvedRun
from runner.vocab import (
    DONE_PREFIX,
    HEARTBEAT_PREFIX,
    LAUNCH_MARK_VAR,
    LAUNCH_T0_VAR,
    METRICS_FILE,
    PROGRESS_FILE,
    RUNNER_PID_VAR,
    STDERR_LOG,
    Status,
)

DEAD_RANK_S = 10.0  # heartbeats come every second; ten missed ones mean the process is gone
TERM_GRACE_S = 5.0
POLL_S = 0.1  # how soon the launcher's exit is noticed
SLOW_POLL_EVERY = 5  # process tree, heartbeats and progress: every 0.5 s
TAIL_LINES = 20


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last lines of a log file (bounded read: logs can be large)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def failure_excerpt(directory: Path) -> str:
    """The failing rank's first error from a launch's stderr.log (every line of its last 64 KiB read)."""
    return first_error(log_tail(directory / STDERR_LOG, lines=64 * 1024), TAIL_LINES)


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


@dataclass
class _Heartbeats:
    """Each rank's heartbeat file, aged on the runner's own monotonic clock (file times can be skewed)."""

    directory: Path
    seen: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (mtime, when it changed)

    def dead_rank(self, now: float) -> tuple[str, float] | None:
        """A rank whose heartbeat stopped changing DEAD_RANK_S ago: (rank, seconds)."""
        for beat in self.directory.glob(f"{HEARTBEAT_PREFIX}*"):
            try:
                mtime = beat.stat().st_mtime
            except OSError:
                continue
            if (self.directory / beat.name.replace(HEARTBEAT_PREFIX, DONE_PREFIX, 1)).exists():
                continue  # finished: its heartbeat stops with it
            last = self.seen.get(beat.name)
            if last is None or last[0] != mtime:
                self.seen[beat.name] = (mtime, now)
            elif now - last[1] > DEAD_RANK_S:
                return beat.name.removeprefix(HEARTBEAT_PREFIX), now - last[1]
        return None


class LocalEngine:
    """Launches on this machine: forked by the session's fork server, or `accelerate launch`, watched until it ends."""

    name = "local"

    def __init__(self, server_env: dict[str, str] | None = None) -> None:
        self.server = ForkServer(server_env) if server_env is not None else None

    def warm_up(self) -> None:
        """Start the fork server now, so its imports overlap the session's own start."""
        if self.server is not None:
            self.server.start()

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
        """One launch to its end (see execute); a local launch has no job to tell of or re-attach to."""
        return execute(plan, timeout_s=timeout_s, interrupts=interrupts, on_progress=on_progress, server=self.server)

    def close(self) -> None:
        """Stop the fork server, if one was started."""
        if self.server is not None:
            self.server.close()


def start(runs: list[ResolvedRun]) -> LocalEngine:
    """The session's local engine; the fork server starts now when a run will use it, its imports beside ours."""
    forked = any(launcher_of(run) == "fork" for run in runs)
    engine = LocalEngine(server_env(os.environ) if forked else None)
    engine.warm_up()
    return engine


# Long on purpose: the watch loop's exits (launcher done, time limit, Ctrl-C, dead rank) and the
# stop of the whole process tree must be decided in one place, or one path forgets to stop it.
def execute(
    plan: LaunchPlan,
    *,
    timeout_s: float | None,
    interrupts: Interrupts,
    on_progress: Callable[[int, int, str], None] | None = None,
    server: ForkServer | None = None,
) -> LaunchOutcome:
    """Run one launch to its end and say how it ended; never raises for the launch's own failures."""
    directory = plan.directory
    env = {**plan.env, LAUNCH_T0_VAR: repr(time.time()), RUNNER_PID_VAR: str(os.getpid())}
    started = time.monotonic()
    logs = CappedLogs(directory).open()  # logcap: the logs come through pipes, capped (head and tail kept)
    try:
        proc, launcher_note = _start(plan, env, server, logs)
    except BaseException:
        logs.finish(timeout_s=0)
        raise
    tree = LaunchProcesses(proc.pid, marker=plan.env.get(LAUNCH_MARK_VAR, ""))  # reap: every process it starts
    after_work = AfterWork(tree, TERM_GRACE_S)  # reap: a launch that its work is done but something holds open
    heartbeats = _Heartbeats(directory)
    status: Status | None = None
    reason = ""
    polls = 0
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if interrupts.count:  # the first Ctrl-C stops the launch cleanly; a second raises KeyboardInterrupt
                status, reason = Status.INTERRUPTED, "interrupted by Ctrl-C"
                tree.stop(TERM_GRACE_S)
                break
            if timeout_s is not None and now - started > timeout_s:
                status = Status.TIMEOUT
                reason = (
                    f"time limit of {timeout_s:g} s reached (launch.timeout_s or --timeout); every process was stopped"
                )
                tree.stop(TERM_GRACE_S)
                break
            polls += 1
            if polls % SLOW_POLL_EVERY == 1:  # the costlier checks twice a second: the workers need the cores
                tree.refresh()
                if not directory.is_dir():  # deleted under a running launch: nothing it measures can be kept
                    status, reason = Status.FAILED, f"its run folder {directory} was deleted while it ran"
                    tree.stop(TERM_GRACE_S)
                    break
                if after_work.check(_work_done(directory, plan), now):
                    tree.stop(TERM_GRACE_S)  # status stays None: judged below, as a launch that ended by itself
                    break
                dead = heartbeats.dead_rank(now)
                if dead is not None:
                    rank, age = dead
                    status = Status.FAILED
                    reason = unresponsive_rank(rank, age)  # dead or frozen: the heartbeat cannot tell
                    tree.stop(TERM_GRACE_S)
                    break
                if on_progress is not None:
                    report_progress(directory, on_progress)
            time.sleep(POLL_S)
    except BaseException:
        tree.stop(grace_s=0)  # a second Ctrl-C, or a bug in the runner: leave nothing behind
        logs.finish(timeout_s=0)
        raise
    returncode = proc.wait()
    leftovers = tree.stop(TERM_GRACE_S) + after_work.stopped  # a rank (or a daemon) that outlived its launcher
    notes = logs.finish()  # logcap: the rest of the output copied, each log compacted to its cap
    wall = time.monotonic() - started
    tail = failure_excerpt(directory)
    warning = ""
    if status is None:
        finished = (directory / METRICS_FILE).exists()
        how = f"was killed by {_signal_name(returncode)}" if returncode < 0 else f"exited with code {returncode}"
        if returncode == 0 and finished:
            status = Status.OK
        elif returncode == 0:
            status, reason = Status.FAILED, f"the launch exited 0 but wrote no {METRICS_FILE}"
        elif finished and all_ranks_done(directory, plan.declared.local_processes):
            status = Status.OK
            warning = (
                f"the launch {how} after every rank had finished and {METRICS_FILE} was written; "
                f"the measurements are kept (see {STDERR_LOG})"
            )
            if after_work.gave_up:  # stopped by us: say why, not only how
                warning = after_work.warning
        else:
            cause = error_line(tail)
            status, reason = Status.FAILED, f"the launch {how}" + (f": {cause}" if cause else "")
    if on_progress is not None and status is Status.OK:
        report_progress(directory, on_progress)
    shown_tail = tail if status is not Status.OK or warning else ""
    launcher = "fork" if isinstance(proc, ForkedLaunch) else "accelerate"
    return LaunchOutcome(
        status,
        returncode,
        wall,
        reason,
        shown_tail,
        leftovers,
        warning,
        note=launcher_note,
        launcher=launcher,
        notes=tuple(notes),
    )


def _start(
    plan: LaunchPlan, env: dict[str, str], server: ForkServer | None, logs: CappedLogs
) -> tuple[subprocess.Popen[bytes] | ForkedLaunch, str]:
    """Start the launch: forked by the server (launch.launcher: fork), else `accelerate launch`; and a note.

    Its output goes to the capped logs (logcap): the server opens their paths, Popen gets their descriptors.
    """
    note = ""
    if plan.launcher == "fork" and server is not None:
        differences = startup_differences(server.env, env)
        if not differences:
            try:
                return server.spawn(list(plan.launch_args), env, logs.stdout_path, logs.stderr_path), ""
            except ForkServerError as exc:
                note = f"the fork server failed ({exc}); this launch used accelerate launch"
        else:
            note = (
                f"its environment sets {', '.join(differences)}, which only a new process reads: "
                "this launch used accelerate launch instead of the fork server"
            )
    proc = subprocess.Popen(
        list(plan.argv),
        env=env,
        stdout=logs.stdout,
        stderr=logs.stderr,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    return proc, note


def _work_done(directory: Path, plan: LaunchPlan) -> bool:
    """Every rank of this machine marked its work done, and metrics.json is written."""
    return (directory / METRICS_FILE).exists() and all_ranks_done(directory, plan.declared.local_processes)


def all_ranks_done(directory: Path, ranks: int) -> bool:
    """Whether `ranks` ranks marked their work finished (runner.worker.train writes the markers)."""
    return len(list(directory.glob(f"{DONE_PREFIX}*"))) >= ranks


def report_progress(directory: Path, on_progress: Callable[[int, int, str], None]) -> None:
    """Pass the worker's progress.json (step, total, phase) to the progress display."""
    try:
        progress = read_json(directory / PROGRESS_FILE)
    except (OSError, ValueError):
        return
    on_progress(int(progress.get("step", 0)), int(progress.get("total", 0)), str(progress.get("phase", "")))
