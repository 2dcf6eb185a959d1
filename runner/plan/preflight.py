"""Preflight: can this machine run the selected runs as written? Checked before any process starts.

Each problem is one line naming the run and the spec field to change. A run that asks for more GPUs
than this machine has is not a mistake in the spec but a smaller machine: it is skipped, with its
reason, and the runs that fit still run (one GPU is the machine most Accelerate users have). What
is checked is each run's engine's to say (runner.plan.engine_plan): the local engine checks this
machine, a cluster engine that its tools are here.
"""

from __future__ import annotations

from collections.abc import Iterable

from runner.plan.compile import resolve_device
from runner.plan.engine_plan import planning_of
from runner.plan.machine import Machine
from runner.plan.strategies import strategy_of
from runner.spec.resolved import ResolvedRun


def gpu_shortfall(run: ResolvedRun, machine: Machine) -> str:
    """Why this machine has too few GPUs for a run that uses them here ('' when it has enough)."""
    return planning_of(run).shortfall(run, machine)


def skipped_runs(runs: Iterable[ResolvedRun], machine: Machine) -> dict[str, str]:
    """The runs this machine is too small for, each with its reason; the others still run."""
    return {run.name: reason for run in runs if (reason := gpu_shortfall(run, machine))}


def preflight(runs: Iterable[ResolvedRun], machine: Machine) -> tuple[list[str], list[str]]:
    """(problems that stop the session, warnings to show), for the runs that will run (see skipped_runs).

    Each engine kind's checks of its runs together come first (in the order the kinds first appear),
    then each run's own, in the spec's order.
    """
    problems: list[str] = []
    warnings: list[str] = []
    runs = [run for run in runs if not gpu_shortfall(run, machine)]
    by_kind: dict[str, list[ResolvedRun]] = {}
    for run in runs:
        by_kind.setdefault(run.config.engine.kind, []).append(run)
    for same_kind in by_kind.values():
        problems += planning_of(same_kind[0]).preflight(same_kind, machine)
    for run in runs:
        planning = planning_of(run)
        refusal = strategy_of(run.config.launch).refusal(resolve_device(run, machine), planning.cpu_where(run))
        if refusal:
            problems.append(f"run '{run.name}': {refusal}")
            continue
        refused, warned = planning.preflight_run(run, machine)
        problems += refused
        warnings += warned
    return problems, warnings
