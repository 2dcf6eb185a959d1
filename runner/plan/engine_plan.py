"""What planning asks of an engine kind: its pure part (EnginePlanning), found through runner.engines.kinds.

Compile, preflight and the session ask `planning_of(run)` and never test which engine a run uses:
a new kind answers these questions in its own planning module (runner.plan.local, runner.plan.sbatch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

from runner.engines.kinds import engine_kind, load
from runner.plan.launch import LaunchPlan
from runner.plan.machine import Machine
from runner.spec.resolved import ResolvedRun


@dataclass(frozen=True)
class DryRunText:
    """How --dry-run shows one launch of a kind: where it runs, the commands to start it, a script it submits."""

    where: str  # after "N process(es)", e.g. " on 2 SLURM node(s)"; "" on this machine
    commands: tuple[str, ...]  # shell lines: comments and the command to run
    script: str = ""  # a file submitted instead of run here (a SLURM batch script)


class EnginePlanning(Protocol):
    """An engine kind's pure planning: no process started, no file written."""

    def machines(self, run: ResolvedRun) -> int:
        """Machines one launch spans."""
        ...

    def auto_device(self, run: ResolvedRun, machine: Machine) -> str:
        """'cpu' or 'cuda' for launch.device auto."""
        ...

    def threads(self, run: ResolvedRun, machine: Machine, local_processes: int) -> int:
        """Torch threads per process when launch.cpu_threads_per_process leaves it open."""
        ...

    def accelerate_config(self, run: ResolvedRun, config: dict[str, Any]) -> dict[str, Any]:
        """The Accelerate config of a launch, as this kind runs it (keys it supplies elsewhere removed)."""
        ...

    def launcher(self, run: ResolvedRun) -> str | None:
        """The launcher this kind always uses ("accelerate"), or None: launch.launcher decides."""
        ...

    def shortfall(self, run: ResolvedRun, machine: Machine) -> str:
        """Why this machine is too small for the run ('' when it is not): the run is skipped, not refused."""
        ...

    def cpu_where(self, run: ResolvedRun) -> str:
        """Where a run that uses the CPU runs, for preflight's sentence: "on this machine"."""
        ...

    def preflight(self, runs: list[ResolvedRun], machine: Machine) -> list[str]:
        """Problems of this kind's runs together (its tools missing here), before any run's own."""
        ...

    def preflight_run(self, run: ResolvedRun, machine: Machine) -> tuple[list[str], list[str]]:
        """(problems, warnings) of one run on this machine."""
        ...

    def port(self) -> int:
        """The rendezvous port of a launch the spec does not pin (0: decided where the launch runs)."""
        ...

    def finish(self, plan: LaunchPlan, run: ResolvedRun, *, spec_name: str) -> LaunchPlan:
        """The compiled launch as this kind starts it (a batch script added to its files, say)."""
        ...

    def port_taken(self, run: ResolvedRun) -> str:
        """Why the run's pinned port cannot be used now, just before its launch ('' when it can)."""
        ...

    def describe(self, plan: LaunchPlan, run: ResolvedRun) -> DryRunText:
        """What --dry-run says of one launch."""
        ...


def planning(kind: str) -> EnginePlanning:
    """The planning part of engine kind `kind`."""
    return cast(EnginePlanning, load(engine_kind(kind).planning))


def planning_of(run: ResolvedRun) -> EnginePlanning:
    """The planning part of the engine `run` uses."""
    return planning(run.config.engine.kind)
