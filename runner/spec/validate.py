"""Stage 3, validate: a loaded spec checked as a whole; every run resolved and checked, all errors collected.

Order: the document against `ExperimentSpec`; each run merged (top-level sections + its overrides)
and checked against `RunConfig`; then the semantic rules that types cannot express (sizes that must
agree, runs that must exist, work that must be comparable). The rules live in `runner.spec.rules`,
one module per concern; this module drives them and keeps the order. Nothing here imports torch or
runs user code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runner.errors import Diagnostic, Severity, SpecError, sorted_unique
from runner.spec import advice
from runner.spec.expectations import expand_expectations
from runner.spec.load import Document, parse_spec, read_spec_text
from runner.spec.models import ExperimentSpec, RunConfig, ScriptRunConfig
from runner.spec.resolved import ResolvedRun, ValidatedSpec
from runner.spec.rules import document as document_rules
from runner.spec.rules import engine, expect, launch, names, sizes
from runner.spec.rules.context import Checker
from runner.spec.rules.document import DEFAULT_RUN as DEFAULT_RUN  # the editor merges runs as validation does
from runner.spec.rules.document import SECTIONS as SECTIONS
from runner.spec.set_option import apply_sets


@dataclass(frozen=True)
class Validation:
    """The outcome for one file: the diagnostics, and the spec when there are no errors."""

    path: str
    diagnostics: list[Diagnostic]
    source: str | None = None  # the file's text when it could be read, for the caret display
    spec: ValidatedSpec | None = None

    @property
    def errors(self) -> list[Diagnostic]:
        """The diagnostics that make the file invalid."""
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        """The rest."""
        return [d for d in self.diagnostics if d.severity is Severity.WARNING]


def validate_file(path: str, *, sets: Sequence[str] = ()) -> Validation:
    """Load and validate one spec file, with the --set options applied; never raises for problems in the file."""
    try:
        text = read_spec_text(path)
    except SpecError as exc:
        return Validation(path, exc.diagnostics)
    return validate_text(text, path, sets=sets)


def validate_text(text: str, path: str = "<spec>", *, sets: Sequence[str] = ()) -> Validation:
    """Validate YAML text (tests, fuzzing)."""
    try:
        document = apply_sets(parse_spec(text, path), sets)
    except SpecError as exc:
        return Validation(path, exc.diagnostics, text)
    return validate_document(document)


def require_valid(
    path: str, *, strict: bool = False, sets: Sequence[str] = (), as_path: str | None = None
) -> ValidatedSpec:
    """Validate a spec for running; raises SpecError with every error (and warning, when strict).

    `as_path`: validate the file as if it were there (a result's copy of its spec, so a script's
    relative path resolves against the original spec's folder, as it did when the result began).
    """
    if as_path is None:
        result = validate_file(path, sets=sets)
    else:
        try:
            result = validate_text(read_spec_text(path), as_path, sets=sets)
        except SpecError as exc:
            result = Validation(path, exc.diagnostics)
    blocking = result.diagnostics if strict else result.errors
    if blocking or result.spec is None:
        raise SpecError(blocking or result.diagnostics)
    return result.spec


def validate_document(document: Document) -> Validation:
    """All checks on a loaded document, all diagnostics collected."""
    foreign = advice.accelerate_config(document.data)
    if foreign is not None:  # one sentence instead of an unknown key per line
        return Validation(document.path, [Diagnostic(document.path, 1, 1, Severity.ERROR, foreign)], document.text)
    checker = Checker(document)
    sizes.check_absurd_sizes(checker)
    document_rules.check_control_characters(checker)
    spec = document_rules.check_document(checker)
    runs = document_rules.check_runs(checker)
    expectations: list[tuple[int, Any]] = []  # (index written at, expectation between named runs)
    if spec is not None and runs is not None and not checker.has_errors:
        expectations = _check_semantics(checker, spec, runs)
    diagnostics = sorted_unique(checker.diagnostics)
    if spec is None or runs is None or any(d.severity is Severity.ERROR for d in diagnostics):
        return Validation(document.path, diagnostics, document.text)
    baseline = spec.baseline or next(iter(runs))
    # expectations over cells, and those taking the top-level baseline, become ones between named runs
    spec = spec.model_copy(update={"expect": [expectation for _, expectation in expectations]})
    validated = ValidatedSpec(document, spec, runs, baseline, diagnostics)
    return Validation(document.path, diagnostics, document.text, validated)


def _check_semantics(checker: Checker, spec: ExperimentSpec, runs: dict[str, ResolvedRun]) -> list[tuple[int, Any]]:
    """The rules types cannot express, on typed runs; returns the expectations between named runs."""
    for run in runs.values():
        if isinstance(run.config, ScriptRunConfig):  # its sizes are the script's: only the launch is checked
            launch.check_launch(checker, run)
            launch.check_script_batch(checker, run, run.config)
            engine.check_engine(checker, run)
        else:
            _check_run(checker, run)
    names.check_run_names(checker, list(runs))
    names.check_baseline(checker, spec, runs)
    builtin = [run for run in runs.values() if isinstance(run.config, RunConfig)]
    unacknowledged = [run for run in builtin if "warmup-too-long" not in checker.acknowledged_by(run)]
    for run, found in advice.warmup_too_long(unacknowledged):
        checker.advise(run, found)
    many = advice.many_launches(list(runs.values()))
    if many is not None:
        checker.advise(next(iter(runs.values())), many)
    configs = {name: run.config for name, run in runs.items()}
    baseline = spec.baseline or next(iter(runs))  # as ValidatedSpec.baseline: the first run by default
    expectations = expand_expectations(spec.expect, configs, baseline, checker.report)
    for index, expectation in expectations:
        expect.check_expectation(checker, index, expectation, runs)
    return expectations


def _check_run(checker: Checker, run: ResolvedRun) -> None:
    """A run of the built-in worker: its sizes, then (when it fits a machine) its steps, launch and engine."""
    sizes.check_model_fits_data(checker, run)
    if not sizes.check_memory(checker, run):
        return
    sizes.check_steps(checker, run)
    launch.check_launch(checker, run)
    engine.check_engine(checker, run)
