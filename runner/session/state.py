"""A session's state: the spec, the machine, the result folder, every run's record, and what it hands back."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from runner.engines.base import Engine
from runner.engines.kinds import DEFAULT_KIND
from runner.errors import ExitCode, MachineError
from runner.plan.compile import declared_of
from runner.plan.machine import Machine
from runner.plan.preflight import skipped_runs
from runner.results.records import RunRecord
from runner.results.reserve import SpaceReserve
from runner.results.summary import save_summary
from runner.session.summary import build_summary
from runner.spec.resolved import ResolvedRun, ValidatedSpec
from runner.verdicts.check import Verdict


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
    engines: dict[str, Engine] = field(default_factory=dict)  # kind -> engine (engines.base.start_engines)
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
        return ", ".join(sorted(kinds)) or DEFAULT_KIND

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


def fixed_repeats(run: ResolvedRun, options: RunOptions) -> int | None:
    """The fixed number of repeats of a run, or None for measure.repeats: auto."""
    repeats = options.repeats or run.config.measure.repeats
    return None if repeats == "auto" else int(repeats)


def new_records(
    validated: ValidatedSpec, selected: list[str], machine: Machine, options: RunOptions
) -> dict[str, RunRecord]:
    records = {}
    skips = skipped_runs([validated.runs[n] for n in selected], machine)
    for name, run in validated.runs.items():
        fixed = fixed_repeats(run, options)
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
