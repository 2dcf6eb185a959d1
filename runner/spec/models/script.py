"""The `script` section: your own Accelerate training script as the workload."""

from typing import Annotated

from pydantic import (
    Field,
    StringConstraints,
)

from runner.spec.models.base import Strict

OPTION_PATTERN = r"^-"  # a command-line option: --batch-size, -b

SCRIPT_DOC = (
    "Your own Accelerate training script as the workload, instead of the built-in model/data/train "
    "(leave those out). It reports through runner.track; launch, measure, runs and expect apply as usual."
)


class ScriptSection(Strict):
    """Your own Accelerate training script, launched on every process in place of the built-in worker."""

    path: str = Field(
        min_length=1,
        max_length=4096,
        description="The script (a .py file), relative to the spec file's folder. Validation checks that it exists "
        "and is readable; it never imports or runs it.",
        examples=["my_train.py"],
    )
    args: list[Annotated[str, StringConstraints(max_length=10_000)]] = Field(
        default=[],
        max_length=10_000,
        description="Arguments for the script (its sys.argv[1:]), passed as a list, never through a shell.",
        examples=[["--epochs", "3"]],
    )
    gradient_accumulation_steps: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Gradient accumulation your script's Accelerator must use: passed as "
        "ACCELERATE_GRADIENT_ACCUMULATION_STEPS (as `accelerate launch --gradient_accumulation_steps` does) and "
        "checked against what the script reports. null = the script's own choice, not checked.",
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Samples per process per forward pass (micro-batch) of your script, passed to it as "
        "`batch_size_arg` (--batch-size 32) and checked against what it trains. With it accel-run knows the "
        "global batch (batch_size x processes x gradient_accumulation_steps), so 2 processes x 32 vs 1 x 64 is a "
        "fair comparison, not a confounded one. null = the script's own batch, unknown to accel-run.",
        examples=[64],
    )
    batch_size_arg: str | None = Field(
        default="--batch-size",
        min_length=1,
        max_length=200,
        pattern=OPTION_PATTERN,
        description="The option that passes script.batch_size to your script: `batch_size_arg` and the value "
        "are added after script.args. null = not passed (your script uses that batch on its own; still checked).",
        examples=["--batch-size", "--per_device_train_batch_size"],
    )
