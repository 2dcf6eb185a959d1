"""The `launch` section: how `accelerate launch` starts a run (processes, precision, device, GPUs, compile)."""

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from runner.spec.models.base import Strict, rule_broken

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


FSDP_RULE_VERSION_1 = (
    "sharding_strategy is FSDP version 1's; with version 2 set reshard_after_forward "
    "(true shards as FULL_SHARD, false as SHARD_GRAD_OP)"
)
FSDP_RULE_VERSION_2 = "reshard_after_forward is FSDP version 2's; with version 1 set sharding_strategy"
FSDP_RULE_LAYERS = "layer_classes names the layers auto_wrap: transformer wraps; set auto_wrap: transformer or drop it"
FSDP_ON_CPU = (
    "FSDP needs CUDA GPUs: Accelerate runs no FSDP on a CPU (with use_cpu each process trains alone, with "
    "ACCELERATE_USE_CPU it becomes MULTI_CPU DDP), so its numbers would not be FSDP's"
)


class FsdpSection(Strict):
    """Fully sharded data parallel (Accelerate's fsdp_config): each process keeps a shard of the parameters,
    gradients and optimizer state, and gathers whole layers only while it computes them."""

    version: Literal[1, 2] = Field(
        default=2,
        description="FSDP version (fsdp_config.fsdp_version): 2 is PyTorch's fully_shard (DTensor parameters), "
        "1 the FullyShardedDataParallel wrapper.",
    )
    sharding_strategy: Literal["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD"] | None = Field(
        default=None,
        description="FSDP version 1 only (fsdp_sharding_strategy). FULL_SHARD shards parameters, gradients and "
        "optimizer state; SHARD_GRAD_OP keeps parameters whole between forward and backward; NO_SHARD is DDP. "
        "null = FULL_SHARD.",
    )
    reshard_after_forward: bool | None = Field(
        default=None,
        description="FSDP version 2 only (fsdp_reshard_after_forward): free the gathered parameters after "
        "forward and gather them again for backward (true, like FULL_SHARD), or keep them (false, like "
        "SHARD_GRAD_OP: less communication, more memory). null = true.",
    )
    auto_wrap: Literal["none", "size", "transformer"] = Field(
        default="none",
        description="What becomes its own FSDP unit (fsdp_auto_wrap_policy): none = the whole model is one unit; "
        "size = every module of at least min_params parameters; transformer = each transformer layer "
        "(the built-in transformer's Block, or layer_classes).",
    )
    min_params: int = Field(
        default=100_000_000,
        ge=1,
        description="With auto_wrap: size, the parameters a module needs to be wrapped (fsdp_min_num_params).",
    )
    layer_classes: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default=[],
        description="With auto_wrap: transformer, the layer class names to wrap "
        "(fsdp_transformer_layer_cls_to_wrap); empty = the built-in transformer's Block, or a Hugging Face "
        "model's own _no_split_modules.",
        examples=[["LlamaDecoderLayer"]],
    )
    state_dict_type: Literal["FULL_STATE_DICT", "SHARDED_STATE_DICT"] = Field(
        default="SHARDED_STATE_DICT",
        description="How a checkpoint is saved (fsdp_state_dict_type): whole on the main process, or a shard "
        "per process.",
    )

    @model_validator(mode="after")
    def _one_version(self) -> "FsdpSection":
        if self.version == 2 and self.sharding_strategy is not None:
            raise rule_broken(FSDP_RULE_VERSION_1, "sharding_strategy")
        if self.version == 1 and self.reshard_after_forward is not None:
            raise rule_broken(FSDP_RULE_VERSION_2, "reshard_after_forward")
        if self.layer_classes and self.auto_wrap != "transformer":
            raise rule_broken(FSDP_RULE_LAYERS, "layer_classes")
        return self

    @property
    def sharding(self) -> str:
        """The sharding in version 1's words, for both versions (version 2's reshard_after_forward: false
        shards as SHARD_GRAD_OP does)."""
        if self.version == 2:
            return "SHARD_GRAD_OP" if self.reshard_after_forward is False else "FULL_SHARD"
        return self.sharding_strategy or "FULL_SHARD"


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
    fsdp: FsdpSection | None = Field(
        default=None,
        description="Train with FSDP instead of DDP (Accelerate's distributed_type FSDP and fsdp_config). Needs "
        "CUDA GPUs: Accelerate runs no FSDP on a CPU. null = DDP when there are several processes.",
        examples=[{"version": 2, "auto_wrap": "transformer"}],
    )
    launcher: Literal["fork", "accelerate"] | None = Field(
        default=None,
        description="How a local launch starts its processes. fork: from a warm process that imported torch and "
        "accelerate once (never CUDA), running accelerate's own launch code in a fresh child per launch, so torch "
        "is not imported twice per launch. accelerate: the real `accelerate launch` command, as command.txt shows "
        "it. null = fork on this machine; a SLURM job always uses accelerate launch.",
    )
