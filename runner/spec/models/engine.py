"""The `engine` section: where each launch runs, this machine or a SLURM cluster."""

from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StringConstraints,
    Tag,
    WithJsonSchema,
)

from runner.spec.models.base import Strict

# SLURM's own --time formats: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds (and UNLIMITED / INFINITE).
SLURM_TIME_PATTERN = (
    r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2}|UNLIMITED|INFINITE)$"
)
SLURM_TIME_RULE = "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"


def _minutes_as_text(value: Any) -> Any:
    """`time: 90` is SLURM's 90 minutes: a whole number is taken as its text."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else value


SlurmTime = Annotated[
    str,
    BeforeValidator(_minutes_as_text),
    StringConstraints(pattern=SLURM_TIME_PATTERN),
    WithJsonSchema({"type": ["string", "integer"], "minimum": 0, "pattern": SLURM_TIME_PATTERN}),
]


class LocalEngineSection(Strict):
    """Run on this machine: `accelerate launch` as a child process tree (the default)."""

    kind: Literal["local"] = Field(description="Run each launch on this machine.")


class SlurmEngineSection(Strict):
    """Submit each launch as a SLURM batch job: one srun task per node, each starting `accelerate launch`."""

    kind: Literal["slurm"] = Field(description="Submit each launch to SLURM with sbatch and watch it there.")
    nodes: int = Field(
        default=1, ge=1, le=4096, description="Machines per launch; launch.processes counts all of them.", examples=[2]
    )
    gpus_per_node: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description="GPUs to allocate on each node (sbatch --gpus-per-node). null or 0 = a CPU job: "
        "launch.device auto then means cpu.",
        examples=[8],
    )
    cpus_per_node: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="CPUs to allocate on each node (sbatch --cpus-per-task; one task per node). Torch threads "
        "per process = this / processes per node. null = launch.cpu_threads_per_process (or 1) per process.",
        examples=[16],
    )
    partition: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[A-Za-z0-9_.,-]+$",
        description="SLURM partition (sbatch --partition); null = the cluster's default.",
        examples=["gpu"],
    )
    time: SlurmTime = Field(
        default="01:00:00",
        description=f"Time limit of each job (sbatch --time): {SLURM_TIME_RULE}, or a number of minutes.",
        examples=["01:00:00", 30, "1-00:00:00"],
    )
    account: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Account to charge (sbatch --account); null = your default account.",
        examples=["myproject"],
    )
    setup: list[Annotated[str, StringConstraints(max_length=2000)]] = Field(
        default=[],
        max_length=100,
        description="Shell lines run in the batch script before srun (module loads, a virtualenv).",
        examples=[["module load cuda/12.4", "source .venv/bin/activate"]],
    )
    sbatch_args: list[Annotated[str, StringConstraints(pattern=r"^--?[A-Za-z]", max_length=500)]] = Field(
        default=[],
        max_length=100,
        description="Extra sbatch options, one per item, written as #SBATCH lines (an escape hatch).",
        examples=[["--qos=high"]],
    )


EngineSection = Annotated[
    Annotated[LocalEngineSection, Tag("local")] | Annotated[SlurmEngineSection, Tag("slurm")],
    Field(discriminator="kind"),
]
ENGINE_DOC = "Where each launch runs: `kind: local` (this machine, the default) or `kind: slurm` (a cluster)."


def default_engine() -> LocalEngineSection:
    """The engine of a spec that names none."""
    return LocalEngineSection(kind="local")
