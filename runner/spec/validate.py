"""Stage 3, validate: a loaded spec checked as a whole; every run resolved and checked, all errors collected.

Order: the document against `ExperimentSpec`; each run merged (top-level sections + its overrides)
and checked against `RunConfig`; then the semantic rules that types cannot express (sizes that must
agree, runs that must exist, work that must be comparable). Nothing here imports torch or runs
user code.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeGuard

from pydantic import BaseModel, ValidationError

from runner.errors import Diagnostic, KeyPath, Severity, SpecError, sorted_unique
from runner.spec import advice, control_chars
from runner.spec.diagnose import did_you_mean, findings_from
from runner.spec.expectations import expand_expectations
from runner.spec.load import Document, parse_spec, read_spec_text
from runner.spec.merge import merged_runs, source_of
from runner.spec.models import (
    BUILTIN_SECTIONS,
    RULE_ACCURACY_FRACTION,
    RULE_FP16_ON_CPU,
    BoundExpectation,
    CloseExpectation,
    ExperimentSpec,
    HuggingFaceModel,
    RatioExpectation,
    RunConfig,
    ScriptRunConfig,
    SlurmEngineSection,
    SpeedupExpectation,
    SyntheticTokens,
    TransformerModel,
    rule_script_excludes,
    whole_numbers,
)
from runner.spec.resolved import ResolvedRun, ValidatedSpec
from runner.spec.set_option import apply_sets
from runner.spec.workload import human_bytes, workload_of
from runner.vocab import LOCK_FILE, REPORT_FILE, RESERVE_FILE, SETS_FILE, SPEC_COPY, SUMMARY_FILE

# a run's folder sits beside these in the result folder: a run must not take one's name
RESULT_FOLDER_NAMES = frozenset(
    {SUMMARY_FILE, SPEC_COPY, SETS_FILE, REPORT_FILE, LOCK_FILE, RESERVE_FILE}
    | {"verdicts.png", "why.png", "loss_curves.png", "throughput.png"}
)
RESULT_FOLDER_RULE = (
    f"is the name of a file accel-run writes in the result folder ({', '.join(sorted(RESULT_FOLDER_NAMES))}); "
    "rename the run"
)
SECTIONS = ("model", "data", "train", "launch", "measure", "engine", "script")
DEFAULT_RUN = "main"
# No synthetic experiment needs a terabyte; anything above is a typo (samples: 1e30) and is refused
# before a process starts. Preflight compares smaller estimates with the machine's memory.
MEMORY_LIMIT_BYTES = 1 << 40


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
    checker = _Checker(document)
    spec = checker.check_document()
    runs = checker.check_runs()
    if spec is not None and runs is not None and not checker.has_errors:
        checker.check_semantics(spec, runs)
    diagnostics = sorted_unique(checker.diagnostics)
    if spec is None or runs is None or any(d.severity is Severity.ERROR for d in diagnostics):
        return Validation(document.path, diagnostics, document.text)
    baseline = spec.baseline or next(iter(runs))
    # expectations over cells, and those taking the top-level baseline, become ones between named runs
    spec = spec.model_copy(update={"expect": [expectation for _, expectation in checker.expectations]})
    validated = ValidatedSpec(document, spec, runs, baseline, diagnostics)
    return Validation(document.path, diagnostics, document.text, validated)


def _child(node: Any, key: str) -> Any:
    return node.get(key) if isinstance(node, dict) else None


def _names(value: Any) -> list[str]:
    """The warning names of an `acknowledge:` list as written (an invalid one is Pydantic's to report)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


class _Checker:
    """Collects diagnostics for one document."""

    def __init__(self, document: Document) -> None:
        self.doc = document
        self.data = whole_numbers(document.data)
        self.diagnostics: list[Diagnostic] = []
        self.claimed: set[KeyPath] = set()  # paths already explained better than Pydantic would
        self.expectations: list[tuple[int, Any]] = []  # (index written at, expectation between named runs)
        self.check_absurd_sizes()
        self.check_control_characters()

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.diagnostics)

    def report(
        self,
        doc_path: KeyPath,
        message: str,
        *,
        severity: Severity = Severity.ERROR,
        at_key: bool = False,
        code: str | None = None,
        acknowledged: Sequence[str] = (),
    ) -> None:
        """Record a diagnostic at `doc_path`; a warning with a `code` the spec acknowledges is dropped."""
        if doc_path in self.claimed:
            return
        if code is not None:
            if code in acknowledged or code in _names(self.data.get("acknowledge")):
                return
            message = f"{message} [acknowledge: {code}]"
        option = self.doc.origin(doc_path)
        if option is not None:  # written by --set: the option locates it
            self.diagnostics.append(Diagnostic(option, None, None, severity, message, doc_path))
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

    def check_control_characters(self) -> None:
        """No control character in any key or text (control_chars says why): located, and told once."""
        for path, at_key, message in control_chars.findings(self.data):
            self.report(path, message, at_key=at_key)
            self.claimed.add(path)

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
        resolved: dict[str, ResolvedRun] = {}
        ok = True
        for name, description, merged, sources in merged_runs(self.data, SECTIONS, DEFAULT_RUN, self.report):
            kind: type[RunConfig | ScriptRunConfig] = RunConfig
            if merged.get("script") is not None:
                kind = ScriptRunConfig
                ok = self.check_builtin_sections_absent(name, merged, sources) and ok
            config: RunConfig | ScriptRunConfig | None = self._validate(kind, merged, partial(source_of, sources))
            if config is None:
                ok = False
                continue
            script_file = ""
            if isinstance(config, ScriptRunConfig):
                script_file = self.check_script_file(config, source_of(sources, ("script", "path")))
            resolved[name] = ResolvedRun(
                name,
                description,
                config,
                workload_of(config),
                sources,
                script_file,
            )
        return resolved if ok else None

    def check_builtin_sections_absent(self, name: str, merged: dict[str, Any], sources: dict[KeyPath, KeyPath]) -> bool:
        """A script run has no model, data or train: its script builds its own. Each one given is an error."""
        present = [s for s in BUILTIN_SECTIONS if s in merged]
        for section in present:
            del merged[section]
            where = source_of(sources, (section,))
            in_run = f"run '{name}': " if where[:1] == ("runs",) else ""
            self.report(
                where,
                in_run + rule_script_excludes(section),
                at_key=True,
            )
        return not present

    def check_script_file(self, config: ScriptRunConfig, where: KeyPath) -> str:
        """The script, resolved against the spec file's folder: it must be a readable file (never imported here)."""
        written = config.script.path
        path = Path(self.doc.path).parent / Path(written).expanduser()
        if not path.is_file():
            state = "is not a file" if path.exists() else "does not exist"
            self.report(where, f"script.path '{written}' {state} (looked for {path}; paths are relative to the spec)")
        elif not os.access(path, os.R_OK):
            self.report(where, f"script.path '{written}' is not readable (permissions of {path})")
        return str(path.resolve())

    def check_script_batch(self, run: ResolvedRun, config: ScriptRunConfig) -> None:
        """script.batch_size is passed as its option: the same option in script.args would pass two batches."""
        script = config.script
        option = script.batch_size_arg
        if script.batch_size is None or option is None:
            return
        for index, arg in enumerate(script.args):
            where = run.source(("script", "args", index))
            if arg == option or arg.startswith(f"{option}="):
                self.report(
                    where,
                    f"script.args passes {option} and so does script.batch_size ({script.batch_size}): remove "
                    f"{option} and its value from script.args (accel-run adds {option} {script.batch_size})",
                )
                self.claimed.add(where)  # said once, however many runs share these arguments
                return

    # -- semantic rules -----------------------------------------------------------------------

    def check_semantics(self, spec: ExperimentSpec, runs: dict[str, ResolvedRun]) -> None:
        for run in runs.values():
            if isinstance(run.config, ScriptRunConfig):  # its sizes are the script's: only the launch is checked
                self.check_launch(run)
                self.check_script_batch(run, run.config)
                if isinstance(run.config.engine, SlurmEngineSection):
                    self.check_slurm(run, run.config.engine)
            else:
                self.check_run(run)
        names = list(runs)
        for name in names:
            if name.lower() in RESULT_FOLDER_NAMES or name.lower().startswith(SUMMARY_FILE):
                self.report(("runs", name), f"run name '{name}' {RESULT_FOLDER_RULE}", at_key=True)
        if spec.baseline is not None and spec.baseline not in runs:
            hint = did_you_mean(spec.baseline, names)
            self.report(("baseline",), f"baseline names no run: '{spec.baseline}'{hint}; runs: {', '.join(names)}")
        builtin = [run for run in runs.values() if isinstance(run.config, RunConfig)]
        unacknowledged = [run for run in builtin if "warmup-too-long" not in self.acknowledged_by(run)]
        for run, found in advice.warmup_too_long(unacknowledged):
            self._advise(run, found)
        many = advice.many_launches(list(runs.values()))
        if many is not None:
            self._advise(next(iter(runs.values())), many)
        configs = {name: run.config for name, run in runs.items()}
        baseline = spec.baseline or next(iter(runs))  # as ValidatedSpec.baseline: the first run by default
        self.expectations = expand_expectations(spec.expect, configs, baseline, self.report)
        for index, expectation in self.expectations:
            self.check_expectation(index, expectation, runs)

    def _run_report(
        self,
        run: ResolvedRun,
        rel: KeyPath,
        message: str,
        *,
        severity: Severity = Severity.ERROR,
        also: tuple[KeyPath, ...] = (),
        code: str | None = None,
    ) -> None:
        """Report a rule broken inside a run: named after the run when an override is involved."""
        involved = (rel, *also)
        overridden = [p for p in involved if run.overridden(p)]
        written = [p for p in involved if p in run.sources]
        where = (overridden or written or [rel])[0]
        prefix = f"run '{run.name}': " if overridden else ""
        acknowledged = self.acknowledged_by(run)
        self.report(run.source(where), prefix + message, severity=severity, code=code, acknowledged=acknowledged)

    def acknowledged_by(self, run: ResolvedRun) -> list[str]:
        """The warnings a run acknowledges (`acknowledge:` in its own entry under runs)."""
        return _names(_child(_child(self.data.get("runs"), run.name), "acknowledge"))

    def _advise(self, run: ResolvedRun, found: advice.Advice | None) -> None:
        if found is not None:
            self._run_report(run, found.rel, found.message, severity=found.severity, also=found.also, code=found.code)

    def check_run(self, run: ResolvedRun) -> None:
        config, work = run.builtin, run.workload
        data = config.data
        self.check_model_fits_data(run)
        if work.memory_bytes > MEMORY_LIMIT_BYTES:
            size = f"{data.seq_len} tokens" if isinstance(data, SyntheticTokens) else f"{data.features} features"
            self._run_report(
                run,
                ("data", "samples"),
                f"this run needs about {human_bytes(work.memory_bytes)} of memory "
                f"({data.samples:,} samples x {size}, {work.params:,} parameters); "
                f"no machine has that (limit {human_bytes(MEMORY_LIMIT_BYTES)})",
            )
            return
        self.check_steps(run)
        self.check_launch(run)
        if isinstance(run.config.engine, SlurmEngineSection):
            self.check_slurm(run, run.config.engine)

    def check_model_fits_data(self, run: ResolvedRun) -> None:
        """The model takes the data: a transformer reads tokens, the others features; the sizes agree."""
        model, data = run.builtin.model, run.builtin.data
        language_model = isinstance(model, TransformerModel | HuggingFaceModel)
        if isinstance(model, HuggingFaceModel) and importlib.util.find_spec("transformers") is None:
            self._run_report(
                run,
                ("model", "kind"),
                "model kind 'huggingface' needs the transformers package, which is not installed here: "
                "pip install 'accel-run[hf]'",
            )
        if language_model != isinstance(data, SyntheticTokens):
            wants = "synthetic-tokens" if language_model else "synthetic-classification"
            self._run_report(
                run,
                ("model", "kind"),
                f"model kind '{model.kind}' trains on data kind '{wants}', but data.kind is '{data.kind}'",
                also=(("data", "kind"),),
            )
            return
        pairs = (
            (("vocab", "vocab"), ("seq_len", "seq_len"))
            if language_model
            else (("input_dim", "features"), ("classes", "classes"))
        )
        for model_key, data_key in pairs:
            model_value, data_value = getattr(model, model_key), getattr(data, data_key)
            if model_value != data_value:
                self._run_report(
                    run,
                    ("model", model_key),
                    f"model.{model_key} is {model_value} but data.{data_key} is {data_value}; they must be equal",
                    also=(("data", data_key),),
                )

    def check_steps(self, run: ResolvedRun) -> None:
        """The run makes optimizer steps, and timed ones; its schedule's warm-up fits in it."""
        config, work = run.builtin, run.workload
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

    def check_launch(self, run: ResolvedRun) -> None:
        """Launch settings that contradict each other (GPUs, precision on CPU, machines)."""
        launch = run.config.launch
        if launch.gpu_ids is not None and len(launch.gpu_ids) != launch.processes:
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
                RULE_FP16_ON_CPU,
                also=(("launch", "device"),),
            )
        if launch.gpu_ids is not None and launch.device == "cpu":
            self._run_report(
                run,
                ("launch", "gpu_ids"),
                "gpu_ids is set but device is cpu",
                severity=Severity.WARNING,
                code="gpu-ids-on-cpu",
            )
        self._advise(run, advice.cuda_visible_devices(run))

    def check_slurm(self, run: ResolvedRun, engine: SlurmEngineSection) -> None:
        """A SLURM run: the engine decides machines and GPUs, so the launch section must not contradict it."""
        launch = run.config.launch
        if launch.gpu_ids is not None:
            self._run_report(
                run,
                ("launch", "gpu_ids"),
                "launch.gpu_ids is set, but SLURM assigns GPUs to a job: set engine.gpus_per_node instead",
            )
        if launch.processes % engine.nodes:
            self._run_report(
                run,
                ("launch", "processes"),
                f"processes ({launch.processes}) must be a multiple of engine.nodes ({engine.nodes}): "
                "it counts processes on all nodes together",
                also=(("engine", "nodes"),),
            )
            return
        per_node = launch.processes // engine.nodes
        gpus = engine.gpus_per_node or 0
        if launch.device == "cuda" and gpus == 0:
            self._run_report(
                run,
                ("launch", "device"),
                "launch.device is cuda, but the SLURM job asks for no GPUs: set engine.gpus_per_node",
                also=(("engine", "gpus_per_node"),),
            )
        elif launch.device != "cpu" and gpus and per_node > gpus:
            self._run_report(
                run,
                ("engine", "gpus_per_node"),
                f"{per_node} processes per node ({launch.processes} on {engine.nodes} node(s)) need "
                f"{per_node} GPUs per node, but engine.gpus_per_node is {gpus}",
                also=(("launch", "processes"),),
            )
        elif launch.device == "cpu" and gpus:
            self._run_report(
                run,
                ("engine", "gpus_per_node"),
                f"engine.gpus_per_node asks for {gpus} GPU(s) per node, but launch.device is cpu: they stay idle",
                severity=Severity.WARNING,
            )
        cpus, threads = engine.cpus_per_node, launch.cpu_threads_per_process
        if cpus is not None and cpus < per_node:
            self._run_report(
                run,
                ("engine", "cpus_per_node"),
                f"engine.cpus_per_node ({cpus}) is fewer than the {per_node} processes per node",
            )
        elif cpus is not None and threads is not None and threads * per_node > cpus:
            self._run_report(
                run,
                ("launch", "cpu_threads_per_process"),
                f"{per_node} processes per node x {threads} threads need {per_node * threads} CPUs, "
                f"but engine.cpus_per_node is {cpus}",
                also=(("engine", "cpus_per_node"),),
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
            # after expand_expectations, run and baseline are run names
            self._check_comparable(path, runs[str(expectation.run)], runs[str(expectation.baseline)], expectation)
        if isinstance(expectation, BoundExpectation) and expectation.metric == "accuracy":
            bound = expectation.at_least if expectation.at_least is not None else expectation.at_most
            if bound is not None and bound > 1:
                field_name = "at_least" if expectation.at_least is not None else "at_most"
                self.report(
                    (*path, field_name),
                    f"{RULE_ACCURACY_FRACTION}; {bound} would be {bound:.0%} (write {bound / 100:g})",
                )

    def _check_comparable(self, path: KeyPath, run: ResolvedRun, base: ResolvedRun, expectation: Any) -> None:
        acknowledged = expectation.acknowledge
        mixed = advice.confounded(run, base)
        if mixed is not None:
            self.report(path, mixed, severity=Severity.WARNING, code="confounded", acknowledged=acknowledged)
        a, b = run.workload, base.workload
        differences = []
        if a.global_batch != b.global_batch and a.global_batch and b.global_batch:  # 0: a script's own batch
            steps = (
                f" ({a.optimizer_steps} vs {b.optimizer_steps} optimizer steps)"
                if a.optimizer_steps and b.optimizer_steps
                else ""
            )
            differences.append(f"global batch {a.global_batch} vs {b.global_batch}{steps}")
        if a.nominal_samples != b.nominal_samples:
            differences.append(f"samples trained {a.nominal_samples:,} vs {b.nominal_samples:,}")
        if differences:
            self.report(
                path,
                f"speedup of '{run.name}' over '{base.name}' compares different work: {'; '.join(differences)}; "
                "it is measured in samples/s, but the two runs do not train alike",
                severity=Severity.WARNING,
                code="different-work",
                acknowledged=acknowledged,
            )
