"""The contract between the runner and a worker: the plan it reads, what it must be, what it was.

plan.json is the JSON form of WorkerPlan (written by plan.compile, read by the worker); Declared
is what a launch must be observed to be, Observed what the worker reports it was (in
metrics.json). JSON stays at the file boundary: inside a process these are typed. Light on
purpose (the spec models and the vocabulary only): every worker rank imports it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from runner.spec.models import RunConfig, ScriptRunConfig

PLAN_FORMAT = 1


@dataclass(frozen=True)
class Declared:
    """What a launch must be observed to be; the worker's observation is compared with this."""

    device: str  # "cpu" or "cuda"
    processes: int  # world size over all machines
    local_processes: int
    distributed_type: str  # as Accelerate names it: NO, MULTI_CPU, MULTI_GPU, FSDP
    mixed_precision: str  # Accelerate's value: no, fp16, bf16
    threads_per_process: int
    gradient_accumulation_steps: int | None  # None: a user script keeps its own (not checked)
    machines: int = 1  # machines (SLURM nodes) the processes span
    compile_backend: str = "no"  # the dynamo backend Accelerator.prepare compiles with (launch.compile)
    tf32: bool | None = None  # TF32 for fp32 matmuls on CUDA (launch.tf32); None: PyTorch's and Accelerate's own
    optimizer_implementation: str | None = None  # fused, foreach or for-loop; None: auto (or a script's own)
    strategy: str = "ddp"  # how several processes share the training: ddp or fsdp (runner.plan.strategies)
    fsdp_version: int | None = None  # launch.fsdp.version; None without FSDP
    fsdp_sharding: str | None = None  # FULL_SHARD, SHARD_GRAD_OP, NO_SHARD or HYBRID_SHARD (FsdpSection.sharding)

    def as_json(self) -> dict[str, Any]:
        """For plan.json and summary.json."""
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Declared:
        """From plan.json or summary.json (a field with a default may be missing from an older file)."""
        return Declared(**{f.name: data[f.name] for f in fields(Declared) if f.name in data})


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
    # whether an expectation that will be checked reads this run's timing: when none does, the worker adds
    # timing-only steps only up to measure.min_blocks, never to tighten an interval nobody judges
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


@dataclass(frozen=True)
class Observed:
    """What the worker saw of its launch (the main rank reports it in metrics.json)."""

    world_size: int | None = None
    distributed_type: str | None = None
    backend: str | None = None
    mixed_precision: str | None = None  # what Accelerate ran (its value: no, fp16, bf16)
    launcher_mixed_precision: str | None = None  # what `accelerate launch` passed to the process
    compute_dtype: str | None = None  # what the first layer really computed in: the autocast dtype on a matmul output
    param_dtype: str | None = None  # what the parameters are stored in (fp32 under autocast)
    # how fp32 matmuls ran: torch.get_float32_matmul_precision() ("highest" is true fp32, "high" allows TF32)
    # and the TF32 switches (off by default since PyTorch 1.12; Accelerate turns them on only with a dynamo
    # backend); None where the worker did not record them (a user script, an older accel-run)
    float32_matmul_precision: str | None = None
    cuda_matmul_allow_tf32: bool | None = None
    cudnn_allow_tf32: bool | None = None
    device: str | None = None
    main_process_port: int | None = None  # the rendezvous port the process group really used
    device_names: list[str] = field(default_factory=list)
    threads_per_process: list[int] = field(default_factory=list)
    gradient_accumulation_steps: int | None = None
    optimizer_implementation: str | None = None
    compiled: bool | None = None  # the prepared model is an OptimizedModule (torch.compile)
    dynamo_backend: str | None = None  # Accelerate's dynamo plugin backend, as the worker's Accelerator has it
    # FSDP: the version Accelerate's plugin ran, and the share of the parameters' elements the main rank
    # holds (1/world when everything is sharded evenly; 1.0 on one process or without sharding)
    fsdp_version: int | None = None
    local_parameter_share: float | None = None
    param_hashes: list[str] = field(default_factory=list)
    # where the ranks ran: each rank's machine rank (torchrun's GROUP_RANK) and its node's name
    # (SLURM's SLURMD_NODENAME, else the host name), in rank order
    machine_ranks: list[int] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    diverged: bool = False
    torch: str | None = None
    accelerate: str | None = None
    python: str | None = None

    def as_json(self) -> dict[str, Any]:
        """For metrics.json and summary.json."""
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Observed:
        """From metrics.json; keys this version does not know are ignored."""
        known = {f.name for f in fields(Observed)}
        return Observed(**{k: v for k, v in data.items() if k in known})
