"""What every engine offers the session: run one compiled launch to its end and say how it ended.

The local engine starts `accelerate launch` here; a cluster engine will submit the same launch
and watch it there. Either way the session sees a LaunchOutcome, and the launch folder holds the
worker's metrics.json, so everything after an engine (records, verdicts, report) is shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from runner.engines.kinds import engine_kind, kind_names, load
from runner.plan.launch import LaunchPlan
from runner.spec.resolved import ResolvedRun
from runner.vocab import Status


@dataclass
class Interrupts:
    """Ctrl-C presses seen by the runner: the first stops the current run cleanly, the second at once."""

    count: int = 0

    def press(self) -> None:
        """Record one Ctrl-C (called from the SIGINT handler)."""
        self.count += 1


@dataclass(frozen=True)
class LaunchOutcome:
    """The end of one launch, as data."""

    status: Status
    returncode: int | None
    wall_s: float
    reason: str = ""
    log_tail: str = ""
    leftovers_killed: int = 0
    warning: str = ""  # a fault after every rank had finished: the measurements stand, the reader is told
    job_id: str = ""  # the cluster job that ran it (SLURM)
    queue_s: float | None = None  # submitted to running, on a cluster
    note: str = ""  # what the reader should know of how it was started (a launcher fallback)
    launcher: str = ""  # what started it: "fork" (the fork server) or "accelerate" (accelerate launch)
    notes: tuple[str, ...] = ()  # what the reader should know besides (a log capped, leftovers stopped)

    @property
    def ok(self) -> bool:
        """Whether the launch finished and wrote its metrics."""
        return self.status is Status.OK


@dataclass(frozen=True)
class JobUpdate:
    """A cluster job changed state: SUBMITTED, ATTACHED, then the scheduler's own (PENDING with a reason, RUNNING)."""

    job_id: str
    state: str
    reason: str = ""
    nodes: str = ""
    note: str = ""  # a sentence to show instead (what a wait on the scheduler waits for, a Ctrl-C being handled)
    scheduler: str = "cluster"  # whose job it is, as the user knows it ("SLURM")

    @property
    def job(self) -> str:
        """The job as the user knows it: "SLURM job 42"."""
        return f"{self.scheduler} job {self.job_id}"

    def text(self) -> str:
        """One line for the terminal."""
        if self.note:
            return f"{self.job}: {self.note}"
        reason = f" ({self.reason})" if self.reason else ""
        nodes = f" on {self.nodes}" if self.nodes and self.state in ("RUNNING", "COMPLETING") else ""
        return f"{self.job}: {self.state.lower()}{reason}{nodes}"


class Engine(Protocol):
    """Runs launches; never raises for a launch's own failure (that is a LaunchOutcome)."""

    name: str

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
        """Run `plan` to its end: finished, failed, timed out or interrupted.

        A cluster engine tells `on_job` the job's id as soon as it has one (so a killed session can
        re-attach) and each change of its state; `job_id` re-attaches to a job submitted earlier.
        """
        ...

    def close(self) -> None:
        """Release what the engine holds for the session (the local engine's fork server)."""
        ...


EngineStart = Callable[[list[ResolvedRun]], Engine]  # a kind's `runner`: its engine, for the session's runs of it


def start_engines(runs: list[ResolvedRun]) -> dict[str, Engine]:
    """One engine per registered kind (runner.engines.kinds), each started for the given runs of its kind."""
    engines: dict[str, Engine] = {}
    try:
        for kind in kind_names():
            start = cast(EngineStart, load(engine_kind(kind).runner))
            engines[kind] = start([run for run in runs if run.config.engine.kind == kind])
    except BaseException:
        close_engines(engines)
        raise
    return engines


def close_engines(engines: dict[str, Engine]) -> None:
    """Release what every engine holds (the local engine's fork server)."""
    for engine in engines.values():
        engine.close()
