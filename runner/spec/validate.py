"""Stage 3, validate: a loaded spec checked as a whole; every run resolved and checked, all errors collected.

Order: the document against `ExperimentSpec`; each run merged (top-level sections + its overrides)
and checked against `RunConfig`; then the semantic rules that types cannot express (sizes that must
agree, runs that must exist, work that must be comparable). Nothing here imports torch or runs
user code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeGuard

from pydantic import BaseModel, ValidationError

from runner.errors import Diagnostic, KeyPath, Severity, SpecError, UsageError, sorted_unique
from runner.spec.diagnose import did_you_mean, findings_from
from runner.spec.load import Document, parse_spec, read_spec_text
from runner.spec.merge import merge_sections, source_of
from runner.spec.models import (
    BoundExpectation,
    CloseExpectation,
    ExperimentSpec,
    RatioExpectation,
    RunConfig,
    SpeedupExpectation,
)
from runner.spec.workload import Workload, human_bytes, workload_of

SECTIONS = ("model", "data", "train", "launch", "measure")
DEFAULT_RUN = "main"
# No synthetic experiment needs a terabyte; anything above is a typo (samples: 1e30) and is refused
# before a process starts. Preflight compares smaller estimates with the machine's memory.
MEMORY_LIMIT_BYTES = 1 << 40


@dataclass(frozen=True)
class ResolvedRun:
    """One run after merging: its config, the work it implies, where its values were written."""

    name: str
    description: str
    config: RunConfig
    workload: Workload
    sources: dict[KeyPath, KeyPath] = field(repr=False, compare=False)

    def source(self, rel: KeyPath) -> KeyPath:
        """The document path where the value at `rel` (a path inside the run) was written."""
        return source_of(self.sources, rel)

    def overridden(self, rel: KeyPath) -> bool:
        """Whether this run's own overrides wrote the value at `rel` (not the top level, not a default)."""
        return self.sources.get(tuple(rel), ())[:1] == ("runs",)


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


def validate_file(path: str) -> Validation:
    """Load and validate one spec file; never raises for problems in the file."""
    try:
        text = read_spec_text(path)
    except SpecError as exc:
        return Validation(path, exc.diagnostics)
    return validate_text(text, path)


def validate_text(text: str, path: str = "<spec>") -> Validation:
    """Validate YAML text (tests, fuzzing)."""
    try:
        document = parse_spec(text, path)
    except SpecError as exc:
        return Validation(path, exc.diagnostics, text)
    return validate_document(document)


def require_valid(path: str, *, strict: bool = False) -> ValidatedSpec:
    """Validate a spec for running; raises SpecError with every error (and warning, when strict)."""
    result = validate_file(path)
    blocking = result.diagnostics if strict else result.errors
    if blocking or result.spec is None:
        raise SpecError(blocking or result.diagnostics)
    return result.spec


def validate_document(document: Document) -> Validation:
    """All checks on a loaded document, all diagnostics collected."""
    checker = _Checker(document)
    spec = checker.check_document()
    runs = checker.check_runs()
    if spec is not None and runs is not None and not checker.has_errors:
        checker.check_semantics(spec, runs)
    diagnostics = sorted_unique(checker.diagnostics)
    if spec is None or runs is None or any(d.severity is Severity.ERROR for d in diagnostics):
        return Validation(document.path, diagnostics, document.text)
    baseline = spec.baseline or next(iter(runs))
    validated = ValidatedSpec(document, spec, runs, baseline, diagnostics)
    return Validation(document.path, diagnostics, document.text, validated)


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


class _Checker:
    """Collects diagnostics for one document."""

    def __init__(self, document: Document) -> None:
        self.doc = document
        self.data = document.data
        self.diagnostics: list[Diagnostic] = []
        self.claimed: set[KeyPath] = set()  # paths already explained better than Pydantic would
        self.check_absurd_sizes()

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.diagnostics)

    def report(
        self, doc_path: KeyPath, message: str, *, severity: Severity = Severity.ERROR, at_key: bool = False
    ) -> None:
        if doc_path in self.claimed:
            return
        span = self.doc.span(doc_path, of_key=at_key)
        self.diagnostics.append(Diagnostic(self.doc.path, span.line, span.col, severity, message, doc_path))

    def _validate(
        self, model: type[BaseModel], data: Any, locate: Callable[[KeyPath], KeyPath], prefix: KeyPath = ()
    ) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for finding in findings_from(exc, data, model, prefix):
                self.report(locate(finding.path), finding.message, at_key=finding.at_key)
            return None

    def check_absurd_sizes(self) -> None:
        """A sample count no machine could hold (samples: 1e30) is refused with a memory estimate."""
        top: dict[str, Any] = self.data["data"] if isinstance(self.data.get("data"), dict) else {}
        places: list[tuple[KeyPath, dict[str, Any]]] = [(("data",), top)]
        runs = self.data.get("runs")
        for name, run in runs.items() if isinstance(runs, dict) else []:
            if isinstance(run, dict) and isinstance(run.get("data"), dict):
                places.append((("runs", name, "data"), run["data"]))
        for path, section in places:
            samples, features = section.get("samples"), section.get("features", top.get("features", 1))
            if not (_is_number(samples) and _is_number(features)) or float(samples) <= 1e9:
                continue
            needed = float(samples) * (max(float(features), 1.0) * 4 + 8)
            if needed > MEMORY_LIMIT_BYTES:
                self.report(
                    (*path, "samples"),
                    f"data.samples {float(samples):.3g} is beyond any machine: {float(samples):.3g} samples x "
                    f"{features} features need about {human_bytes(needed)} of memory "
                    f"(limit {human_bytes(MEMORY_LIMIT_BYTES)})",
                )
                self.claimed.add((*path, "samples"))

    # -- the document and the runs ----------------------------------------------------------

    def check_document(self) -> ExperimentSpec | None:
        spec: ExperimentSpec | None = self._validate(ExperimentSpec, self.data, lambda path: path)
        return spec

    def run_overrides(self) -> dict[str, dict[str, Any]]:
        runs = self.data.get("runs")
        if not isinstance(runs, dict) or not runs:
            return {DEFAULT_RUN: {}}
        return {str(name): (value if isinstance(value, dict) else {}) for name, value in runs.items()}

    def check_runs(self) -> dict[str, ResolvedRun] | None:
        base = {s: self.data[s] for s in SECTIONS if isinstance(self.data.get(s), dict)}
        resolved: dict[str, ResolvedRun] = {}
        ok = True
        for name, override in self.run_overrides().items():
            sections = {s: v for s, v in override.items() if s in SECTIONS and isinstance(v, dict | type(None))}
            merged, sources = merge_sections(base, (), sections, ("runs", name))
            config: RunConfig | None = self._validate(RunConfig, merged, partial(source_of, sources))
            if config is None:
                ok = False
                continue
            description = override.get("description", "")
            resolved[name] = ResolvedRun(
                name, description if isinstance(description, str) else "", config, workload_of(config), sources
            )
        return resolved if ok else None

    # -- semantic rules -----------------------------------------------------------------------

    def check_semantics(self, spec: ExperimentSpec, runs: dict[str, ResolvedRun]) -> None:
        for run in runs.values():
            self.check_run(run)
        names = list(runs)
        if spec.baseline is not None and spec.baseline not in runs:
            hint = did_you_mean(spec.baseline, names)
            self.report(("baseline",), f"baseline names no run: '{spec.baseline}'{hint}; runs: {', '.join(names)}")
        for index, expectation in enumerate(spec.expect):
            self.check_expectation(index, expectation, runs)

    def _run_report(
        self,
        run: ResolvedRun,
        rel: KeyPath,
        message: str,
        *,
        severity: Severity = Severity.ERROR,
        also: tuple[KeyPath, ...] = (),
    ) -> None:
        """Report a rule broken inside a run: named after the run when an override is involved."""
        involved = (rel, *also)
        overridden = [p for p in involved if run.overridden(p)]
        written = [p for p in involved if p in run.sources]
        where = (overridden or written or [rel])[0]
        prefix = f"run '{run.name}': " if overridden else ""
        self.report(run.source(where), prefix + message, severity=severity)

    def check_run(self, run: ResolvedRun) -> None:
        config, work = run.config, run.workload
        model, data = config.model, config.data
        if model.input_dim != data.features:
            self._run_report(
                run,
                ("model", "input_dim"),
                f"model.input_dim is {model.input_dim} but data.features is {data.features}; they must be equal",
                also=(("data", "features"),),
            )
        if model.classes != data.classes:
            self._run_report(
                run,
                ("model", "classes"),
                f"model.classes is {model.classes} but data.classes is {data.classes}; they must be equal",
                also=(("data", "classes"),),
            )
        if work.memory_bytes > MEMORY_LIMIT_BYTES:
            self._run_report(
                run,
                ("data", "samples"),
                f"this run needs about {human_bytes(work.memory_bytes)} of memory "
                f"({data.samples:,} samples x {data.features} features, {work.params:,} parameters); "
                f"no machine has that (limit {human_bytes(MEMORY_LIMIT_BYTES)})",
            )
            return
        self.check_steps(run)
        self.check_launch(run)

    def check_steps(self, run: ResolvedRun) -> None:
        """The run makes optimizer steps, and timed ones; its schedule's warm-up fits in it."""
        config, work, train = run.config, run.workload, run.config.train
        if work.train_samples < 1:
            self._run_report(run, ("train", "eval_split"), "eval_split leaves no training samples")
        elif work.steps_per_epoch == 0:
            per_step = work.global_batch
            self._run_report(
                run,
                ("train", "batch_size"),
                f"zero optimizer steps: batch_size {work.batch_size} x {work.processes} process(es) x "
                f"{work.accumulation} accumulation step(s) = {per_step:,} samples per optimizer step, "
                f"but there are only {work.train_samples:,} training samples",
                also=(("launch", "processes"), ("train", "gradient_accumulation_steps")),
            )
        elif config.measure.warmup_steps >= work.optimizer_steps:
            self._run_report(
                run,
                ("measure", "warmup_steps"),
                f"measure.warmup_steps ({config.measure.warmup_steps}) leaves no timed steps: "
                f"the run makes only {work.optimizer_steps} optimizer step(s)",
                also=(("train", "epochs"), ("train", "max_steps")),
            )
        if train.warmup_steps > work.optimizer_steps > 0:
            self._run_report(
                run,
                ("train", "warmup_steps"),
                f"train.warmup_steps ({train.warmup_steps}) is longer than the run "
                f"({work.optimizer_steps} optimizer steps); the learning rate never reaches its peak",
                severity=Severity.WARNING,
            )

    def check_launch(self, run: ResolvedRun) -> None:
        """Launch settings that contradict each other (GPUs, precision on CPU, machines)."""
        launch = run.config.launch
        if launch.gpu_ids is not None and launch.num_machines == 1 and len(launch.gpu_ids) != launch.processes:
            self._run_report(
                run,
                ("launch", "gpu_ids"),
                f"gpu_ids lists {len(launch.gpu_ids)} GPU(s) but processes is {launch.processes}; "
                "give one GPU per process",
                also=(("launch", "processes"),),
            )
        if launch.mixed_precision == "fp16" and launch.device == "cpu":
            self._run_report(
                run,
                ("launch", "mixed_precision"),
                "fp16 mixed precision needs a GPU; on device cpu use bf16 or no",
                also=(("launch", "device"),),
            )
        if launch.gpu_ids is not None and launch.device == "cpu":
            self._run_report(run, ("launch", "gpu_ids"), "gpu_ids is set but device is cpu", severity=Severity.WARNING)
        if launch.num_machines > 1 and not launch.main_process_ip:
            self._run_report(
                run, ("launch", "num_machines"), "num_machines > 1 needs main_process_ip (the main machine's address)"
            )
        if launch.machine_rank >= launch.num_machines:
            self._run_report(
                run,
                ("launch", "machine_rank"),
                f"machine_rank {launch.machine_rank} must be below num_machines ({launch.num_machines})",
            )
        if launch.processes % launch.num_machines:
            self._run_report(
                run,
                ("launch", "processes"),
                f"processes ({launch.processes}) must be a multiple of num_machines ({launch.num_machines}): "
                "it counts processes on all machines together",
            )

    def check_expectation(self, index: int, expectation: Any, runs: dict[str, ResolvedRun]) -> None:
        path: KeyPath = ("expect", index)
        names = list(runs)
        missing = False
        for role in ("run", "baseline"):
            name = getattr(expectation, role, None)
            if name is not None and name not in runs:
                missing = True
                self.report(
                    (*path, role),
                    f"expectation names no run: '{name}'{did_you_mean(name, names)}; runs: {', '.join(names)}",
                )
        if missing:
            return
        if isinstance(expectation, SpeedupExpectation | RatioExpectation | CloseExpectation):
            if expectation.run == expectation.baseline:
                self.report((*path, "baseline"), "run and baseline are the same run", severity=Severity.WARNING)
        if isinstance(expectation, SpeedupExpectation):
            self._check_comparable(path, runs[expectation.run], runs[expectation.baseline])
        if isinstance(expectation, BoundExpectation) and expectation.metric == "accuracy":
            bound = expectation.at_least if expectation.at_least is not None else expectation.at_most
            if bound is not None and bound > 1:
                field_name = "at_least" if expectation.at_least is not None else "at_most"
                self.report(
                    (*path, field_name),
                    f"accuracy is a fraction between 0 and 1; {bound} would be {bound:.0%} (write {bound / 100:g})",
                )

    def _check_comparable(self, path: KeyPath, run: ResolvedRun, base: ResolvedRun) -> None:
        a, b = run.workload, base.workload
        differences = []
        if a.global_batch != b.global_batch:
            differences.append(
                f"global batch {a.global_batch} vs {b.global_batch} "
                f"({a.optimizer_steps} vs {b.optimizer_steps} optimizer steps)"
            )
        if a.nominal_samples != b.nominal_samples:
            differences.append(f"samples trained {a.nominal_samples:,} vs {b.nominal_samples:,}")
        if differences:
            self.report(
                path,
                f"speedup of '{run.name}' over '{base.name}' compares different work: {'; '.join(differences)}; "
                "it is measured in samples/s, but the two runs do not train alike",
                severity=Severity.WARNING,
            )


def select_runs(validated: ValidatedSpec, only: tuple[str, ...]) -> list[str]:
    """The runs named by --only (all when empty), in the spec's order; an unknown name is a usage error."""
    names = list(validated.runs)
    for name in only:
        if name not in validated.runs:
            raise UsageError(f"--only names no run: '{name}'{did_you_mean(name, names)}; runs: {', '.join(names)}")
    return [n for n in names if not only or n in only]
