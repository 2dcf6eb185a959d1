"""`accel-run --explain`: every run fully resolved, with the numbers it implies, without torch."""

from __future__ import annotations

import io
from typing import Any

from runner.spec.validate import ResolvedRun, ValidatedSpec
from runner.spec.workload import human_bytes, human_count
from runner.yamlout import dump_yaml, yaml_tree


def describe_run(run: ResolvedRun) -> list[str]:
    """Comment lines summarising what a run will do."""
    w, c = run.workload, run.config
    length = f"{c.train.epochs} epoch(s)" if c.train.epochs is not None else f"max_steps {c.train.max_steps}"
    return [
        f"parameters: {w.params:,} ({human_count(w.params)})",
        f"global batch: {w.global_batch} = batch_size {w.batch_size} x {w.processes} process(es)"
        f" x {w.accumulation} accumulation",
        f"samples: {w.train_samples:,} train + {w.eval_samples:,} eval",
        f"optimizer steps: {w.optimizer_steps:,} ({w.steps_per_epoch:,} per epoch, {length})",
        f"memory estimate: {human_bytes(w.memory_bytes)} (data + weights, grads, optimizer state)",
    ]


def explain(spec: ValidatedSpec) -> str:
    """One YAML document per run: the merged config with defaults, headed by derived figures."""
    out = io.StringIO()
    runs = spec.runs
    out.write(f"# {spec.spec.name}: {len(runs)} run(s), baseline '{spec.baseline}'\n")
    for run in runs.values():
        out.write(f"---\n# run '{run.name}'" + (f": {run.description}" if run.description else "") + "\n")
        for line in describe_run(run):
            out.write(f"#   {line}\n")
        data: dict[str, Any] = {"run": run.name, **run.config.model_dump(mode="json")}
        out.write(dump_yaml(yaml_tree(data)))
    return out.getvalue()
