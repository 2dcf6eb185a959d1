"""`accel-run --explain`: the baseline resolved, every other run as its difference from it, without torch.

`--full` prints every run's full resolved YAML instead; `--only` picks runs; `--format json`
gives the same facts as data.
"""

from __future__ import annotations

import io
from typing import Any

from runner.spec.models import ScriptRunConfig
from runner.spec.resolved import ResolvedRun, ValidatedSpec, select_runs
from runner.spec.workload import human_bytes, human_count
from runner.yamlout import dump_yaml, yaml_tree

_MISSING = object()


def describe_run(run: ResolvedRun) -> list[str]:
    """Comment lines summarising what a run will do."""
    if run.script_file:
        w = run.workload
        accumulation = (
            f" x {w.accumulation} accumulation"
            if isinstance(run.config, ScriptRunConfig) and run.config.script.gradient_accumulation_steps
            else " (x the script's own gradient accumulation, if any)"
        )
        batch = (
            f"global batch: {w.global_batch} = script.batch_size {w.batch_size} x {w.processes} process(es)"
            + accumulation
            if w.batch_size
            else f"processes: {w.processes}; the batch is the script's own (declare it: script.batch_size)"
        )
        return [
            f"script: {run.script_file} (your own training loop; it reports through runner.track)",
            batch,
            "steps and memory are the script's own",
        ]
    w, c = run.workload, run.builtin
    length = f"{c.train.epochs} epoch(s)" if c.train.epochs is not None else f"max_steps {c.train.max_steps}"
    return [
        f"parameters: {w.params:,} ({human_count(w.params)})",
        f"global batch: {w.global_batch} = batch_size {w.batch_size} x {w.processes} process(es)"
        f" x {w.accumulation} accumulation",
        f"samples: {w.train_samples:,} train + {w.eval_samples:,} eval",
        f"optimizer steps: {w.optimizer_steps:,} ({w.steps_per_epoch:,} per epoch, {length})",
        f"memory estimate: {human_bytes(w.memory_bytes)} (data + weights, grads, optimizer state)",
        *compute_lines(run),
    ]


def compute_lines(run: ResolvedRun) -> list[str]:
    """How the step computes: compiled or eager, TF32 for fp32 matmuls, the optimizer's kernels."""
    launch = run.config.launch
    compiled = launch.compile
    lines = [
        f"compile: torch.compile with {compiled.backend}, mode {compiled.mode} (Accelerate's dynamo_config)"
        if compiled is not None and compiled.backend != "no"
        else "compile: none (eager)"
    ]
    if launch.tf32 is not None:
        tf32 = f"{'on' if launch.tf32 else 'off'} (launch.tf32)"
    elif compiled is not None and compiled.backend != "no" and launch.mixed_precision == "no":
        tf32 = "on where the run uses CUDA: Accelerate turns it on with a dynamo backend and fp32 (launch.tf32: null)"
    else:
        tf32 = "off, PyTorch's default (Accelerate turns it on only with a dynamo backend and fp32)"
    lines.append(f"TF32 for fp32 matmuls on CUDA: {tf32}")
    if not run.script_file:
        optimizer = run.builtin.train.optimizer
        how = (
            "fused where the device supports it, else foreach (auto)"
            if optimizer.implementation == "auto"
            else optimizer.implementation
        )
        lines.append(f"optimizer: {optimizer.kind}, {how}")
    if launch.processes > 1 or launch.fsdp is not None:
        lines.append(strategy_line(run))
    return lines


def strategy_line(run: ResolvedRun) -> str:
    """How several processes share the training, and what they exchange per optimizer step."""
    launch = run.config.launch
    fsdp = launch.fsdp
    if fsdp is None:
        return "processes share the training as DDP: each holds the whole model and all-reduces the gradients"
    wrap = {"none": "the whole model as one unit", "size": f"modules of {fsdp.min_params:,}+ parameters"}
    units = wrap.get(fsdp.auto_wrap, "each transformer layer (" + ", ".join(fsdp.layer_classes or ["Block"]) + ")")
    return (
        f"processes share the training as FSDP version {fsdp.version}, {fsdp.sharding} (launch.fsdp): each holds "
        f"1/{launch.processes} of the parameters, gradients and optimizer state and gathers {units} to compute it"
    )


def figures(run: ResolvedRun) -> dict[str, int | float]:
    """The derived figures of describe_run, as data."""
    w = run.workload
    return {
        "params": w.params,
        "global_batch": w.global_batch,
        "batch_size": w.batch_size,
        "processes": w.processes,
        "accumulation": w.accumulation,
        "train_samples": w.train_samples,
        "eval_samples": w.eval_samples,
        "optimizer_steps": w.optimizer_steps,
        "steps_per_epoch": w.steps_per_epoch,
        "memory_bytes": w.memory_bytes,
    }


def _leaves(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Dotted key paths to values; lists and empty mappings are single values."""
    if isinstance(value, dict) and value:
        out: dict[tuple[str, ...], Any] = {}
        for key, item in value.items():
            out.update(_leaves(item, (*prefix, str(key))))
        return out
    return {prefix: value}


def differences(run: ResolvedRun, baseline: ResolvedRun) -> list[dict[str, Any]]:
    """Every resolved value of `run` that differs from the baseline's: key, value, baseline value."""
    mine, theirs = _leaves(run.config.model_dump(mode="json")), _leaves(baseline.config.model_dump(mode="json"))
    out = []
    for key in [*mine, *(k for k in theirs if k not in mine)]:
        value, base = mine.get(key, _MISSING), theirs.get(key, _MISSING)
        if value != base:
            out.append(
                {
                    "key": ".".join(key),
                    "value": None if value is _MISSING else value,
                    "baseline": None if base is _MISSING else base,
                    "absent": "run" if value is _MISSING else "baseline" if base is _MISSING else None,
                }
            )
    return out


def _difference_yaml(diffs: list[dict[str, Any]], baseline: str) -> str:
    """The differences as a nested YAML mapping, each value with the baseline's in a comment."""
    tree: dict[str, Any] = {}
    comments: dict[tuple[str, ...], str] = {}
    for diff in diffs:
        path = tuple(diff["key"].split("."))
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = diff["value"]
        base = "(not set)" if diff["absent"] == "baseline" else dump_yaml(yaml_tree([diff["baseline"]]))[1:-2]
        comments[path] = f"{baseline}: {base}" + (" (not in this run)" if diff["absent"] == "run" else "")
    data = yaml_tree(tree)
    for path, comment in comments.items():
        node = data
        for part in path[:-1]:
            node = node[part]
        node.yaml_add_eol_comment(comment, path[-1], column=40)
    return dump_yaml(data)


def explain(spec: ValidatedSpec, *, only: tuple[str, ...] = (), full: bool = False) -> str:
    """One YAML document per run, headed by derived figures: the baseline in full, the others as differences."""
    names = select_runs(spec, only)
    out = io.StringIO()
    out.write(f"# {spec.spec.name}: {len(spec.runs)} run(s), baseline '{spec.baseline}'\n")
    if not full:
        out.write(
            f"# the baseline in full, every other run as what differs from '{spec.baseline}' "
            "(--full: every run resolved)\n"
        )
    if only:
        out.write(f"# --only: {', '.join(names)}\n")
    for name in names:
        out.write("---\n" + explain_run(spec, name, full=full))
    return out.getvalue()


def explain_run(spec: ValidatedSpec, name: str, *, full: bool = False) -> str:
    """One run as --explain shows it: its figures, then the baseline in full or this run's differences from it."""
    run, base = spec.runs[name], spec.runs[spec.baseline]
    out = io.StringIO()
    out.write(f"# run '{run.name}'" + (f": {run.description}" if run.description else "") + "\n")
    for line in describe_run(run):
        out.write(f"#   {line}\n")
    if full or name == spec.baseline:
        data: dict[str, Any] = {"run": run.name, **run.config.model_dump(mode="json")}
        out.write(dump_yaml(yaml_tree(data)))
        return out.getvalue()
    diffs = differences(run, base)
    out.write(f"run: {run.name}\n")
    out.write(_difference_yaml(diffs, spec.baseline) if diffs else f"# identical to '{spec.baseline}'\n")
    return out.getvalue()


def explain_json(spec: ValidatedSpec, *, only: tuple[str, ...] = (), full: bool = False) -> dict[str, Any]:
    """--explain --format json: per run its figures and differences (and, with --full, its resolved config)."""
    base = spec.runs[spec.baseline]
    runs = []
    for name in select_runs(spec, only):
        run = spec.runs[name]
        entry: dict[str, Any] = {
            "name": name,
            "description": run.description,
            "baseline": name == spec.baseline,
            "figures": figures(run),
            "differences": differences(run, base),
        }
        if full:
            entry["config"] = run.config.model_dump(mode="json")
        runs.append(entry)
    return {"spec": spec.spec.name, "path": spec.path, "baseline": spec.baseline, "runs": runs}
