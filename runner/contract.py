"""The launch contract: what a launch must be (Declared), what it was (Observed), what it measured (metrics.json).

Both writers of metrics.json, the built-in worker (runner.worker.train) and a user script's
reports (runner.worker.reports, behind runner.track), build a MetricsRecord; results/ reads the
file back once, into the same record. The names in its `metrics` are runner.metrics' table.

Standard library only: every worker rank and every user script's process import it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# --- declared and observed ----------------------------------------------------------------------


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
    # The fields its writer recorded, in the order written; None: all of them. A user script sees less
    # than the built-in worker (SCRIPT_OBSERVED), and a file from an older accel-run held fewer: written
    # back, an observation holds what was recorded, so summary.json keeps metrics.json's keys.
    recorded: tuple[str, ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        unknown = [name for name in self.recorded or () if name not in _OBSERVED_FIELDS]
        if unknown:
            raise ValueError(f"Observed has no field(s) {', '.join(unknown)} to record")

    def as_json(self) -> dict[str, Any]:
        """For metrics.json and summary.json: the fields recorded."""
        names = self.recorded if self.recorded is not None else _OBSERVED_FIELDS
        return {name: _copy(getattr(self, name)) for name in names}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Observed:
        """From metrics.json or summary.json; keys this version does not know are ignored."""
        known = [k for k in data if k in _OBSERVED_FIELDS]
        return Observed(**{k: data[k] for k in known}, recorded=tuple(known))

    @staticmethod
    def nothing() -> Observed:
        """No observation (a launch that did not finish): written as {}."""
        return Observed(recorded=())

    def __bool__(self) -> bool:
        """Whether anything was recorded."""
        return self.recorded != ()


_OBSERVED_FIELDS = tuple(f.name for f in fields(Observed) if f.name != "recorded")
# What a user script's reports observe (runner.worker.reports), in the order its metrics.json writes them:
# the Accelerator's state, then what its training showed.
SCRIPT_STATE = (
    "world_size",
    "distributed_type",
    "backend",
    "mixed_precision",
    "launcher_mixed_precision",
    "device",
    "main_process_port",
    "threads_per_process",
    "gradient_accumulation_steps",
    "torch",
    "accelerate",
    "python",
)
SCRIPT_TRAINING = ("compute_dtype", "device_names", "diverged")
SCRIPT_OBSERVED = SCRIPT_STATE + SCRIPT_TRAINING


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


# --- metrics.json -------------------------------------------------------------------------------

METRICS_FORMAT = 1
MetricValue = float | int | str | None


@dataclass(frozen=True)
class MetricsRecord:
    """metrics.json: one launch's measurements, written by its main process, read back by results/.

    `metrics` maps METRICS' names to values (a spec's expectation names them, so they stay keyed by
    name); the built-in worker adds its timed blocks and the launch's phases, a user script says
    it is one (`workload`).
    """

    run: str
    repeat: int
    metrics: dict[str, MetricValue]
    loss_curve: list[list[float]]
    observed: Observed
    ranks: list[dict[str, Any]]
    attribution: dict[str, Any] = field(default_factory=dict)
    disturbance: dict[str, Any] = field(default_factory=dict)
    workload: str | None = None  # "script" for a user script's record; the built-in worker's leaves it out
    blocks: dict[str, Any] | None = None  # the built-in worker's timed blocks (steps, seconds, device seconds)
    phases: dict[str, Any] = field(default_factory=dict)  # seconds per phase of the launch (the built-in worker)
    format: int = METRICS_FORMAT

    def as_json(self) -> dict[str, Any]:
        """metrics.json's content (the writers' key order kept: a user script's has no blocks or phases)."""
        data: dict[str, Any] = {"format": self.format, "run": self.run, "repeat": self.repeat}
        if self.workload is not None:
            data["workload"] = self.workload
        data["metrics"] = self.metrics
        if self.blocks is not None:
            data["blocks"] = self.blocks
        if self.phases:
            data["phases"] = self.phases
        data["loss_curve"] = self.loss_curve
        data["observed"] = self.observed.as_json()
        data["ranks"] = self.ranks
        data["attribution"] = self.attribution
        data["disturbance"] = self.disturbance
        return data

    @staticmethod
    def from_json(data: Any) -> MetricsRecord:
        """metrics.json parsed; ValueError when it is not a launch's record (a missing or mistyped part).

        A part an older accel-run did not write (disturbance, phases) is empty.
        """
        if not isinstance(data, dict):
            raise ValueError("metrics.json does not hold a JSON object")
        try:
            record = MetricsRecord(
                run=str(data.get("run", "")),
                repeat=int(data.get("repeat", 0)),
                metrics=_mapping(data["metrics"], "metrics"),
                loss_curve=list(data["loss_curve"]),
                observed=Observed.from_json(_mapping(data["observed"], "observed")),
                ranks=list(data["ranks"]),
                attribution=_mapping(data["attribution"], "attribution"),
                disturbance=_mapping(data.get("disturbance") or {}, "disturbance"),
                workload=data.get("workload"),
                blocks=data.get("blocks"),
                phases=_mapping(data.get("phases") or {}, "phases"),
                format=int(data.get("format", METRICS_FORMAT)),
            )
        except KeyError as exc:
            raise ValueError(f"metrics.json has no {exc.args[0]!r}") from None
        except TypeError as exc:
            raise ValueError(f"metrics.json holds a part accel-run cannot read: {exc}") from None
        return record


def _mapping(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"metrics.json's {name!r} is not a JSON object")
    return value
