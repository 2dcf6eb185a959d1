"""`--dry-run`: every launch's files written and what would start said, as text or data; nothing is started."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from runner.jsonio import write_text_atomic
from runner.plan.engine_plan import DryRunText, planning_of
from runner.plan.machine import probe_machine
from runner.plan.preflight import preflight, skipped_runs
from runner.results.layout import new_result_dir
from runner.session.launch import prepare_launch
from runner.session.state import RunOptions, fixed_repeats
from runner.spec.resolved import ValidatedSpec, select_runs
from runner.vocab import CONFIG_FILE, SPEC_COPY, precision_name


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
    sbatch: str = ""  # a script the engine submits instead of running here (a SLURM batch script)
    shown: DryRunText | None = field(default=None, repr=False, compare=False)  # its lines, from its engine


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
            shown = run.shown or DryRunText("", ())
            what = f"{run.processes} process(es){shown.where}, {run.device}, {run.precision}"
            lines.append(f"\n# run '{run.name}' ({what}); config: {run.config}")
            lines += shown.commands
        return "\n".join(lines) + "\n"

    def as_json(self) -> dict[str, Any]:
        """For --dry-run --format json."""
        data = asdict(self)
        for run in data["runs"]:
            del run["shown"]  # the text's lines: the other fields say the same as data
        return data


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
        run = validated.runs[name]
        plan = prepare_launch(validated, machine, result_dir, name, 1, fixed_repeats(run, options) or 1)
        declared = plan.declared
        shown = planning_of(run).describe(plan, run)
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
                sbatch=shown.script,
                shown=shown,
            )
        )
    return DryRun(validated.path, str(result_dir), problems, warnings, launches, skipped)
