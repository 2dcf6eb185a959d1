"""Rules on sizes: sample counts no machine holds, the model against the data, the steps a run makes."""

from __future__ import annotations

import importlib.util
from typing import Any, TypeGuard

from runner.errors import KeyPath
from runner.spec.models import HuggingFaceModel, SyntheticTokens, TransformerModel
from runner.spec.resolved import ResolvedRun
from runner.spec.rules.context import Checker
from runner.spec.workload import human_bytes

# No synthetic experiment needs a terabyte; anything above is a typo (samples: 1e30) and is refused
# before a process starts. Preflight compares smaller estimates with the machine's memory.
MEMORY_LIMIT_BYTES = 1 << 40


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def check_absurd_sizes(checker: Checker) -> None:
    """A sample count no machine could hold (samples: 1e30) is refused with a memory estimate."""
    data = checker.data
    top: dict[str, Any] = data["data"] if isinstance(data.get("data"), dict) else {}
    places: list[tuple[KeyPath, dict[str, Any]]] = [(("data",), top)]
    runs = data.get("runs")
    for name, run in runs.items() if isinstance(runs, dict) else []:
        if isinstance(run, dict) and isinstance(run.get("data"), dict):
            places.append((("runs", name, "data"), run["data"]))
    for path, section in places:
        samples, features = section.get("samples"), section.get("features", top.get("features", 1))
        if not (_is_number(samples) and _is_number(features)) or float(samples) <= 1e9:
            continue
        needed = float(samples) * (max(float(features), 1.0) * 4 + 8)
        if needed > MEMORY_LIMIT_BYTES:
            checker.report(
                (*path, "samples"),
                f"data.samples {float(samples):.3g} is beyond any machine: {float(samples):.3g} samples x "
                f"{features} features need about {human_bytes(needed)} of memory "
                f"(limit {human_bytes(MEMORY_LIMIT_BYTES)})",
            )
            checker.claimed.add((*path, "samples"))


def check_memory(checker: Checker, run: ResolvedRun) -> bool:
    """A resolved run's data and training state fit some machine; False after reporting that they do not."""
    config, work = run.builtin, run.workload
    data = config.data
    if work.memory_bytes > MEMORY_LIMIT_BYTES:
        size = f"{data.seq_len} tokens" if isinstance(data, SyntheticTokens) else f"{data.features} features"
        checker.run_report(
            run,
            ("data", "samples"),
            f"this run needs about {human_bytes(work.memory_bytes)} of memory "
            f"({data.samples:,} samples x {size}, {work.params:,} parameters); "
            f"no machine has that (limit {human_bytes(MEMORY_LIMIT_BYTES)})",
        )
        return False
    return True


def check_model_fits_data(checker: Checker, run: ResolvedRun) -> None:
    """The model takes the data: a transformer reads tokens, the others features; the sizes agree."""
    model, data = run.builtin.model, run.builtin.data
    language_model = isinstance(model, TransformerModel | HuggingFaceModel)
    if isinstance(model, HuggingFaceModel) and importlib.util.find_spec("transformers") is None:
        checker.run_report(
            run,
            ("model", "kind"),
            "model kind 'huggingface' needs the transformers package, which is not installed here: "
            "pip install 'accel-run[hf]'",
        )
    if language_model != isinstance(data, SyntheticTokens):
        wants = "synthetic-tokens" if language_model else "synthetic-classification"
        checker.run_report(
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
            checker.run_report(
                run,
                ("model", model_key),
                f"model.{model_key} is {model_value} but data.{data_key} is {data_value}; they must be equal",
                also=(("data", data_key),),
            )


def check_steps(checker: Checker, run: ResolvedRun) -> None:
    """The run makes optimizer steps, and timed ones; its schedule's warm-up fits in it."""
    config, work = run.builtin, run.workload
    if work.train_samples < 1:
        checker.run_report(run, ("train", "eval_split"), "eval_split leaves no training samples")
    elif work.steps_per_epoch == 0:
        per_step = work.global_batch
        checker.run_report(
            run,
            ("train", "batch_size"),
            f"zero optimizer steps: batch_size {work.batch_size} x {work.processes} process(es) x "
            f"{work.accumulation} accumulation step(s) = {per_step:,} samples per optimizer step, "
            f"but there are only {work.train_samples:,} training samples",
            also=(("launch", "processes"), ("train", "gradient_accumulation_steps")),
        )
    elif config.measure.warmup_steps >= work.optimizer_steps:
        checker.run_report(
            run,
            ("measure", "warmup_steps"),
            f"measure.warmup_steps ({config.measure.warmup_steps}) leaves no timed steps: "
            f"the run makes only {work.optimizer_steps} optimizer step(s)",
            also=(("train", "epochs"), ("train", "max_steps")),
        )
