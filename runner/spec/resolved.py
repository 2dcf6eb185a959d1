"""A spec after validation: its runs merged and resolved, ready to compile (no YAML, no torch here).

The types every later stage reads (plan, report, the session): ResolvedRun and ValidatedSpec. They
live apart from the validator, so compiling a run never imports the YAML front end, and the
validator's advice can read a resolved run without importing the validator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runner.errors import Diagnostic, KeyPath, UsageError
from runner.spec.diagnose import did_you_mean
from runner.spec.merge import source_of
from runner.spec.models import ExperimentSpec, RunConfig, ScriptRunConfig
from runner.spec.workload import Workload

if TYPE_CHECKING:
    from runner.spec.load import Document


@dataclass(frozen=True)
class ResolvedRun:
    """One run after merging: its config, the work it implies, where its values were written."""

    name: str
    description: str
    config: RunConfig | ScriptRunConfig
    workload: Workload
    sources: dict[KeyPath, KeyPath] = field(repr=False, compare=False)
    script_file: str = ""  # a script run's script, resolved against the spec file's folder

    @property
    def builtin(self) -> RunConfig:
        """The config of a run of the built-in worker (a script run has no model, data or train)."""
        if not isinstance(self.config, RunConfig):
            raise TypeError(f"run '{self.name}' runs a script, not the built-in worker")
        return self.config

    def source(self, rel: KeyPath) -> KeyPath:
        """The document path where the value at `rel` (a path inside the run) was written."""
        return source_of(self.sources, rel)

    def overridden(self, rel: KeyPath) -> bool:
        """Whether this run's own overrides wrote the value at `rel` (not the top level, not a default)."""
        return self.sources.get(tuple(rel), ())[:1] in (("runs",), ("matrix",))


@dataclass(frozen=True)
class ValidatedSpec:
    """A spec that passed validation, ready to compile."""

    document: Document
    spec: ExperimentSpec
    runs: dict[str, ResolvedRun]
    baseline: str
    warnings: list[Diagnostic]

    @property
    def path(self) -> str:
        """The spec file's path as given."""
        return self.document.path


def select_runs(validated: ValidatedSpec, only: tuple[str, ...]) -> list[str]:
    """The runs named by --only (all when empty), in the spec's order; an unknown name is a usage error."""
    names = list(validated.runs)
    only = _rejoin(only, validated.runs)
    for name in only:
        if name not in validated.runs:
            raise UsageError(f"--only names no run: '{name}'{did_you_mean(name, names)}; runs: {', '.join(names)}")
    return [n for n in names if not only or n in only]


def _rejoin(parts: tuple[str, ...], runs: dict[str, ResolvedRun]) -> tuple[str, ...]:
    """--only's comma-separated parts, with the commas of matrix cell names put back.

    `--only processes=2,mixed_precision=bf16,single` names two runs: at each part, the longest run
    of parts that joins into a run's name is taken.
    """
    out: list[str] = []
    start = 0
    while start < len(parts):
        end = next(
            (e for e in range(len(parts), start, -1) if ",".join(parts[start:e]) in runs),
            start + 1,
        )
        out.append(",".join(parts[start:end]))
        start = end
    return tuple(out)
