"""Advice on a valid spec: settings that are legal but probably not what the user meant, with the fix.

Each function is pure: it reads resolved runs and returns `Advice` (a message, where it points, the
warning's name for `acknowledge:`); validate.py locates and reports it. Also here: recognising an
Accelerate config file given where a spec was expected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.errors import KeyPath, Severity
from runner.spec.models import RULE_VISIBLE_DEVICES_AND_GPU_IDS

if TYPE_CHECKING:
    from runner.spec.resolved import ResolvedRun

# Launches one `--validate`d spec may ask for before a warning says how many: 1,000 launches of even
# a 10-second run are three hours.
MANY_LAUNCHES = 1000


@dataclass(frozen=True)
class Advice:
    """One finding: `rel` is a path inside the run (or in the document, for spec-wide advice)."""

    message: str
    rel: KeyPath
    code: str | None = None  # the name `acknowledge:` takes; None: an error, not to be acknowledged
    severity: Severity = Severity.WARNING
    also: tuple[KeyPath, ...] = ()


# --- launch.env --------------------------------------------------------------------------------


def cuda_visible_devices(run: ResolvedRun) -> Advice | None:
    """CUDA_VISIBLE_DEVICES in launch.env hides GPUs from preflight and from gpu_ids."""
    launch = run.config.launch
    visible = launch.env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return None
    rel: KeyPath = ("launch", "env", "CUDA_VISIBLE_DEVICES")
    if launch.gpu_ids is not None:
        return Advice(RULE_VISIBLE_DEVICES_AND_GPU_IDS, rel, severity=Severity.ERROR)
    ids = visible.replace(" ", "")
    suggestion = f"launch.gpu_ids: '{ids}'" if ids else "launch.gpu_ids"
    return Advice(
        f"launch.env sets CUDA_VISIBLE_DEVICES, which bypasses launch.gpu_ids and the preflight check that the "
        f"GPUs exist; write {suggestion} instead",
        rel,
        "cuda-visible-devices",
    )


# --- learning-rate warm-up -----------------------------------------------------------------------


def warmup_too_long(runs: Sequence[ResolvedRun]) -> list[tuple[ResolvedRun, Advice]]:
    """train.warmup_steps longer than the run: one warning per place it is written, naming every run it spoils."""
    spoiled: dict[KeyPath, list[ResolvedRun]] = {}
    for run in runs:
        work = run.workload
        if run.builtin.train.warmup_steps > work.optimizer_steps > 0:
            spoiled.setdefault(run.source(("train", "warmup_steps")), []).append(run)
    found = []
    for group in spoiled.values():
        first = group[0]
        named = ", ".join(f"'{r.name}' ({r.workload.optimizer_steps} optimizer steps)" for r in group)
        message = (
            f"train.warmup_steps ({first.builtin.train.warmup_steps}) is longer than "
            f"{'run' if len(group) == 1 else 'runs'} {named}; the learning rate never reaches its peak"
        )
        found.append((first, Advice(message, ("train", "warmup_steps"), "warmup-too-long")))
    return found


# --- measurement ---------------------------------------------------------------------------------


def many_launches(runs: Sequence[ResolvedRun]) -> Advice | None:
    """Measure settings that allow a very large number of launches, with the count."""
    total = 0
    auto = 0
    for run in runs:
        measure = run.config.measure
        if measure.repeats == "auto":
            total += measure.max_repeats
            auto += 1
        else:
            total += measure.repeats
    if total <= MANY_LAUNCHES:
        return None
    first = runs[0].config.measure
    if auto == len(runs) and all(r.config.measure.max_repeats == first.max_repeats for r in runs):
        how = f"{len(runs)} runs x up to {first.max_repeats} repeats each, measure.max_repeats with repeats: auto"
        rel: KeyPath = ("measure", "max_repeats")
        fix = "lower measure.max_repeats"
    elif auto == 0 and all(r.config.measure.repeats == first.repeats for r in runs):
        how = f"{len(runs)} runs x {first.repeats} repeats each, measure.repeats"
        rel = ("measure", "repeats")
        fix = "lower measure.repeats"
    else:
        how = f"{len(runs)} runs, each with its measure.repeats or measure.max_repeats"
        rel = ("measure",)
        fix = "lower measure.repeats or measure.max_repeats"
    return Advice(
        f"these measure settings allow up to {total:,} launches: {how}; {fix}, or run fewer runs",
        rel,
        "many-launches",
    )


# --- comparisons -----------------------------------------------------------------------------------

# Settings that change neither what is computed nor how fast (or only through what they name).
_NOT_A_TREATMENT = {
    "launch.timeout_s",
    "launch.env",
    "launch.pass_env",
    "launch.main_process_port",
    "train.seed",
    "train.loss_every_steps",
    "train.eval_samples",
    "train.eval_split",
    "data.seed",
}
# Settings that split one global batch: changed together with the processes, they keep the work equal.
_BATCH_KEYS = (
    "train.batch_size",
    "train.gradient_accumulation_steps",
    "script.batch_size",
    "script.gradient_accumulation_steps",
)
# Settings compared as one (a model or an optimizer is one choice, however many keys it has).
_WHOLE = ("model", "data", "train.optimizer", "engine", "launch.compile", "launch.fsdp")


def _settings(run: ResolvedRun) -> dict[str, Any]:
    """The run's settings as dotted keys, a model/optimizer/engine as one value each."""
    dumped = run.config.model_dump(mode="json", exclude={"measure"})
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and prefix not in _WHOLE:
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        elif prefix not in _NOT_A_TREATMENT:
            flat[prefix] = node

    walk("", dumped)
    return flat


def _without_nodes(engine: Any) -> Any:
    return {k: v for k, v in engine.items() if k != "nodes"} if isinstance(engine, dict) else engine


def _shown(value: Any) -> str:
    if isinstance(value, dict):  # a whole choice: named by its kind (compile by its backend, FSDP by its version)
        if "version" in value and "auto_wrap" in value:
            return f"FSDP version {value['version']}"
        return str(value.get("kind", value.get("backend", "...")))
    if value is None:
        return "none"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def confounded(run: ResolvedRun, base: ResolvedRun) -> str | None:
    """Why a speedup of `run` over `base` cannot be credited to one change: the settings that differ.

    A change of batch size or accumulation that keeps the global batch is the fair way to compare
    process counts, not a second treatment; nor are the GPUs listed for a different process count.
    """
    mine, theirs = _settings(run), _settings(base)
    differing = [key for key in sorted(set(mine) | set(theirs)) if mine.get(key) != theirs.get(key)]
    if run.workload.global_batch == base.workload.global_batch > 0:  # 0: a script's batch, not declared
        differing = [k for k in differing if k not in _BATCH_KEYS]
    if "launch.processes" in differing:  # one GPU per process: the GPUs listed follow the process count
        differing = [k for k in differing if k != "launch.gpu_ids"]
        # more processes on more nodes is one change: scaling out (processes count all nodes)
        if "engine" in differing and _without_nodes(mine.get("engine")) == _without_nodes(theirs.get("engine")):
            differing.remove("engine")
    if len(differing) < 2:
        return None
    parts = [f"{key} ({_shown(mine.get(key))} vs {_shown(theirs.get(key))})" for key in differing]
    listed = ", ".join(parts[:-1]) + f" and {parts[-1]}"
    hint = (
        " (a batch size in script.args? declare it as script.batch_size, and accel-run knows the global batch)"
        if "script.args" in differing
        else ""
    )
    return (
        f"speedup of '{run.name}' over '{base.name}' is confounded: the runs differ in {listed}, so the speedup "
        f"cannot be credited to one of them; compare runs that differ in one setting{hint}"
    )


# --- a file that is not a spec -------------------------------------------------------------------

# Keys `accelerate config` writes (default_config.yaml) and a spec never has at its top level.
_ACCELERATE_KEYS = {
    "compute_environment",
    "distributed_type",
    "num_processes",
    "main_training_function",
    "downcast_bf16",
    "use_cpu",
    "rdzv_backend",
    "same_network",
    "tpu_env",
    "tpu_use_cluster",
    "tpu_use_sudo",
    "enable_cpu_affinity",
    "debug",
    "deepspeed_config",
    "fsdp_config",
    "megatron_lm_config",
}
# Accelerate's key -> the spec's launch key, and the value that needs no carrying over (its default).
_TO_LAUNCH: dict[str, tuple[str, Any]] = {
    "num_processes": ("processes", 1),
    "mixed_precision": ("mixed_precision", "no"),
    "gpu_ids": ("gpu_ids", "all"),
    "main_process_port": ("main_process_port", None),
}


def accelerate_config(data: Mapping[str, Any]) -> str | None:
    """The message for an Accelerate config file given as a spec, or None when it does not look like one."""
    if len(_ACCELERATE_KEYS & set(data)) < 2 or {"model", "script"} & set(data):
        return None
    launch = [
        f"{key}: {_yaml(data[source])}"
        for source, (key, default) in _TO_LAUNCH.items()
        if data.get(source) is not None and data.get(source) != default
    ]
    carry = f"; carry its settings over as launch: {{{', '.join(launch)}}}" if launch else ""
    machines = data.get("num_machines")
    if isinstance(machines, int) and machines > 1:
        carry += f" and engine: {{kind: slurm, nodes: {machines}}} (several machines run through SLURM)"
    return (
        "this is an Accelerate config file (what `accelerate config` writes), not an accel-run spec: accel-run "
        "writes one for each run from the spec's launch section. Start a spec from examples/minimal.yaml "
        f"(name, model, data, train){carry}"
    )


def _yaml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"'{value}'" if value in ("no", "yes", "") or "," in value else value
    return str(value)
