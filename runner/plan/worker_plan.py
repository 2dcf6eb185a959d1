"""The plan a worker reads (plan.json): the resolved run, what it must be and where to write.

plan.json is the JSON form of WorkerPlan (written by plan.compile, read by the worker). What a
launch must be observed to be (Declared) and what it was (Observed) are the launch contract's
(runner.contract), imported from here too. JSON stays at the file boundary: inside a process these
are typed. Light on purpose (the spec models and the contract only): every worker rank imports it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from runner.contract import Declared, Observed
from runner.spec.models import RunConfig, ScriptRunConfig

__all__ = ["PLAN_FORMAT", "Declared", "Observed", "Outputs", "WorkerPlan"]

PLAN_FORMAT = 1


@dataclass(frozen=True)
class Outputs:
    """Where a worker writes: metrics (main rank), progress, one heartbeat and one done marker per rank."""

    metrics: str
    progress: str
    heartbeat_prefix: str
    done_prefix: str


def _config_json(config: BaseModel) -> dict[str, Any]:
    """The resolved config in full, for the worker and any reader; it must validate again when read.

    eval_samples is ignored beside eval_split, and written out (as its default) it would break the
    rule that only one of them is set: it is left out then.
    """
    data: dict[str, Any] = config.model_dump(mode="json")
    train = data.get("train")
    if isinstance(train, dict) and train.get("eval_split") is not None:
        train.pop("eval_samples", None)
    return data


@dataclass(frozen=True)
class WorkerPlan:
    """One launch as its worker sees it: the resolved run, what it must be and where to write."""

    spec: str
    run: str
    repeat: int
    repeats: int
    config: RunConfig | ScriptRunConfig
    declared: Declared
    outputs: Outputs
    workload: dict[str, Any] = field(default_factory=dict)  # for a reader of plan.json; the worker recomputes it
    machine: dict[str, Any] = field(default_factory=dict)  # the host it was compiled on, for a rebuilt summary
    # whether a verdict may rest on this launch's own interval (a checked expectation reads the run's timing
    # and no earlier launch of it was fit to time): when not, the worker adds timing-only steps only up to
    # measure.min_blocks, never to tighten an interval nobody judges
    timing_judged: bool = True

    @property
    def builtin(self) -> RunConfig:
        """The config of a built-in worker's launch (a user script's plan has no model, data or train)."""
        if not isinstance(self.config, RunConfig):
            raise TypeError(f"the plan of run '{self.run}' runs a user script, not the built-in worker")
        return self.config

    def to_json(self) -> str:
        """plan.json's text."""
        data = {
            "format": PLAN_FORMAT,
            "spec": self.spec,
            "run": self.run,
            "repeat": self.repeat,
            "repeats": self.repeats,
            "config": _config_json(self.config),
            "workload": self.workload,
            "declared": self.declared.as_json(),
            "outputs": asdict(self.outputs),
            "machine": self.machine,
            "timing_judged": self.timing_judged,
        }
        return json.dumps(data, indent=2) + "\n"

    @staticmethod
    def read(path: str | Path) -> WorkerPlan:
        """plan.json, parsed and typed (the config validated by the spec models again)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return WorkerPlan(
            spec=data["spec"],
            run=data["run"],
            repeat=data["repeat"],
            repeats=data["repeats"],
            config=(ScriptRunConfig if "script" in data["config"] else RunConfig).model_validate(data["config"]),
            declared=Declared.from_json(data["declared"]),
            outputs=Outputs(**data["outputs"]),
            workload=data.get("workload", {}),
            machine=data.get("machine", {}),
            timing_judged=data.get("timing_judged", True),
        )
