"""The `launch` section: how `accelerate launch` starts a run (processes, precision, device, GPUs, compile)."""

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from runner.spec.models.base import Strict

GPU_IDS_PATTERN = r"^ *(all|[0-9]+( *, *[0-9]+)*) *$"


def _parse_gpu_ids(value: Any) -> Any:
    """Accept `[6, 7]`, `"6,7"` or `"all"`; explain the full-width comma the seed's author hit."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, str):
        return value
    text = value
    if "，" in text or "、" in text:
        fixed = text.replace("，", ",").replace("、", ",").replace(" ", "")
        raise ValueError(
            f"gpu_ids {value!r} uses a full-width comma '，' (typed with a Chinese input method); "
            f"write '{fixed}' or [{fixed.replace(',', ', ')}]"
        )
    if not re.fullmatch(GPU_IDS_PATTERN, text):
        raise ValueError(f"gpu_ids {value!r} is not a list of GPU indices; write e.g. '0,1' or [0, 1]")
    if text.strip() == "all":
        return None
    return [int(part) for part in text.split(",")]


GpuIds = Annotated[
    Annotated[list[Annotated[int, Field(ge=0, le=1023)]], Field(min_length=1)] | None,
    BeforeValidator(_parse_gpu_ids),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 1023}, "minItems": 1},
                {"type": "string", "pattern": GPU_IDS_PATTERN},
                {"type": "integer", "minimum": 0, "maximum": 1023},
                {"type": "null"},
            ]
        }
    ),
]


class CompileSection(Strict):
    """torch.compile through Accelerate's dynamo_config: Accelerator.prepare compiles the model."""

    backend: Literal["inductor", "aot_eager", "eager", "no"] = Field(
        default="inductor",
        description="The dynamo backend (dynamo_config.dynamo_backend). inductor generates fused kernels (C++/OpenMP "
        "on CPU, Triton on GPU); aot_eager and eager trace without generating code (to tell compile's own cost "
        "from its kernels); no compiles nothing.",
    )
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        default="default",
        description="torch.compile's mode (dynamo_config.dynamo_mode). reduce-overhead replays CUDA graphs on a GPU; "
        "max-autotune also benchmarks kernel choices (a long first step).",
    )
    fullgraph: bool = Field(
        default=False,
        description="Fail instead of splitting the model into several graphs (dynamo_config.dynamo_use_fullgraph).",
    )
    dynamic: bool = Field(
        default=False,
        description="Trace with dynamic shapes (dynamo_config.dynamo_use_dynamic).",
    )


class LaunchSection(Strict):
    """How `accelerate launch` starts the run: processes, precision, device, GPUs."""

    processes: int = Field(
        default=1, ge=1, le=4096, description="Processes in total (one per GPU on a GPU machine).", examples=[1, 2]
    )
    mixed_precision: Literal["no", "fp16", "bf16"] = Field(
        default="no",
        description="Accelerate mixed precision. 'no' is the string no (accel-run reads YAML 1.2, "
        "where an unquoted no is text, not false). fp16 needs a GPU.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="auto: the GPUs when CUDA is available, else the CPU (several processes on CPU use gloo).",
    )
    gpu_ids: GpuIds = Field(
        default=None,
        description="GPUs to use, as a list [6, 7] or Accelerate's text '6,7' (ASCII commas); "
        "null or 'all' = every visible GPU. Their count must equal processes.",
        examples=[[0, 1], "6,7"],
    )
    main_process_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Rendezvous port. null = a free port picked for each launch (so concurrent runs never collide).",
        examples=[29500],
    )
    cpu_threads_per_process: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Torch threads per process (--num_cpu_threads_per_process). "
        "null = available cores divided by processes on this machine.",
    )
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        le=7 * 24 * 3600,
        description="Stop each launch of the run (every process) after this many seconds and mark the run "
        "'timeout'; with repeats the limit applies to each repeat. null = no limit.",
        examples=[600],
    )
    env: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] = Field(
        default={},
        description="Environment variables set for the launched processes.",
        examples=[{"NCCL_DEBUG": "INFO"}],
    )
    pass_env: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default=[],
        description="ACCELERATE_* variables of your shell to pass through; others are dropped so runs are hermetic.",
        examples=[["ACCELERATE_DEBUG_MODE"]],
    )
    compile: CompileSection | None = Field(
        default=None,
        description="torch.compile the model, as Accelerate's dynamo_config does it in Accelerator.prepare. "
        "null = eager. The first steps then include compiling: they are warm-up, never timed.",
        examples=[{"backend": "inductor"}, {"backend": "inductor", "mode": "reduce-overhead"}],
    )
    tf32: bool | None = Field(
        default=None,
        description="TF32 tensor cores for fp32 matmuls and convolutions on CUDA (torch.backends.cuda.matmul and "
        "cudnn allow_tf32). null = what PyTorch and Accelerate set by themselves: matmuls true fp32, except that "
        "Accelerate turns TF32 on with a dynamo backend and no mixed precision. No effect on CPU.",
    )
    launcher: Literal["fork", "accelerate"] | None = Field(
        default=None,
        description="How a local launch starts its processes. fork: from a warm process that imported torch and "
        "accelerate once (never CUDA), running accelerate's own launch code in a fresh child per launch, so torch "
        "is not imported twice per launch. accelerate: the real `accelerate launch` command, as command.txt shows "
        "it. null = fork on this machine; a SLURM job always uses accelerate launch.",
    )
