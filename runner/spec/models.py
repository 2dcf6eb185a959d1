"""Stage 2, spec: the experiment spec as Pydantic models, the single source of truth.

The JSON Schema editors use (`schemas/experiment.schema.json`) is generated from these models, so
every `description` here is hover text in an editor: write it for the person typing the spec.
This module must stay free of torch and accelerate imports (`accel-run --validate` starts fast).
"""

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from runner.metrics import metric_doc

FORMAT_VERSION: Literal[1] = 1
# '.', ',', '=' and '+' are allowed for matrix cells (`processes=2,mixed_precision=bf16`, `lr=0.001`):
# they are ordinary characters in file names on Linux, macOS and Windows and need no quoting in a shell
# word. A name starts with a letter or digit, so it is never '.', '..' or an option ('-x').
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.,=+-]{0,127}$"
NAME_RULE = "1-128 letters, digits, '-', '_', '.', ',', '=' or '+', starting with a letter or digit"
# A setting as a matrix key or a --set path: `launch.processes`, or a key of one section (`processes`).
SETTING_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
MAX_CELLS = 1024  # cells of one matrix: each is validated, and run, as a run of its own

Name = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN),
    Field(description=f"A name that becomes a folder name: {NAME_RULE}.", examples=["single"]),
]


def rule_broken(message: str, field: str | None = None) -> PydanticCustomError:
    """An error from a cross-field rule; `field` names the key the message should point at."""
    context: dict[str, Any] = {"message": message}
    if field is not None:
        context["field"] = field
    return PydanticCustomError("spec_rule", "{message}", context)


# Cross-field rules, worded once: the validators raise these, and the editor schema (schema.py)
# carries the same words as its error messages, so the editor and the CLI say the same thing.
RULE_LENGTH_BOTH = (
    "set exactly one of epochs and max_steps, not both "
    "(a run that sets max_steps over top-level epochs must also set epochs: null)"
)
RULE_LENGTH_NEITHER = "set exactly one of epochs and max_steps (neither is set)"
RULE_EVAL_BOTH = "set only one of eval_samples and eval_split"
RULE_NO_BOUND = "give at_least, at_most or both"
RULE_NO_TOLERANCE = "give rel_tol, abs_tol or both"
RULE_FP16_ON_CPU = "fp16 mixed precision needs a GPU; on device cpu use bf16 or no"
RULE_ACCURACY_FRACTION = "accuracy is a fraction between 0 and 1"
RULE_VISIBLE_DEVICES_AND_GPU_IDS = (
    "launch.env sets CUDA_VISIBLE_DEVICES and launch.gpu_ids is set too: the processes would see the GPUs "
    "of one and be placed by the other; remove CUDA_VISIBLE_DEVICES and keep gpu_ids"
)


def rule_script_excludes(section: str) -> str:
    """Why a script workload has no model, data or train section."""
    return (
        f"{section} does not apply to a script workload: your script builds its own model, data and training "
        f"loop; remove {section} (in a run, `{section}: null` removes a top-level one)"
    )


# A field that names a run (`extends`, `baseline`, an expectation's `run`): the editor schema gives it
# no example names (the editor offers the file's own runs) and, with "settings", the settings mapping.
REFERENCE_MARK = "x-accel-run-reference"


class Strict(BaseModel):
    """Base of every section: unknown keys are errors, NaN and infinity are not numbers, and nothing is coerced.

    Strict mode refuses text and booleans where numbers or booleans belong (`batch_size: "64"`,
    `processes: true`, `nesterov: "yes"`), as the editor schema does; a whole number written as a
    float (`samples: 1e4`) is still a whole number (see `whole_numbers`).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, strict=True)


def whole_numbers(node: Any) -> Any:
    """The data with every float that is a whole number (1e4, 64.0) as an int, as JSON Schema reads it.

    Strict models take no 64.0 for an int; the editor's schema does (in JSON Schema 64.0 is an
    integer), so the data is normalised once before validation and the two agree.
    """
    if isinstance(node, float) and node.is_integer() and abs(node) < 2**53:
        return int(node)
    if isinstance(node, dict):
        return {key: whole_numbers(value) for key, value in node.items()}
    if isinstance(node, list):
        return [whole_numbers(value) for value in node]
    return node


# --- model -------------------------------------------------------------------------------------


class MLPModel(Strict):
    """A multi-layer perceptron: Linear -> activation (-> dropout) for each hidden width, then a Linear head."""

    kind: Literal["mlp"] = Field(description="Built-in model: a multi-layer perceptron.")
    input_dim: int = Field(
        ge=1, le=1_000_000, description="Width of the input; must equal data.features.", examples=[128]
    )
    hidden: list[Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        default=[256, 256],
        max_length=64,
        description="Widths of the hidden layers, in order. [4096, 4096, 2560] with input 1024 is ~31.5M parameters.",
        examples=[[256, 256], [4096, 4096, 2560]],
    )
    classes: int = Field(
        ge=2, le=1_000_000, description="Number of output classes; must equal data.classes.", examples=[10]
    )
    activation: Literal["relu", "gelu", "silu", "tanh"] = Field(
        default="relu", description="Activation after each hidden layer."
    )
    dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Dropout probability after each activation (0 disables it)."
    )


class LinearModel(Strict):
    """A single Linear layer (the Day 5 smoke-test model)."""

    kind: Literal["linear"] = Field(description="Built-in model: one Linear layer from input to classes.")
    input_dim: int = Field(
        ge=1, le=1_000_000, description="Width of the input; must equal data.features.", examples=[10]
    )
    classes: int = Field(ge=2, le=1_000_000, description="Number of outputs; must equal data.classes.", examples=[10])


class TransformerModel(Strict):
    """A decoder-only transformer (pre-norm blocks of causal self-attention and an MLP) over token ids."""

    kind: Literal["transformer"] = Field(
        description="Built-in model: a decoder-only (GPT-style) transformer predicting each next token."
    )
    vocab: int = Field(
        ge=2, le=1_000_000, description="Vocabulary size (token ids 0..vocab-1); must equal data.vocab.", examples=[256]
    )
    seq_len: int = Field(
        ge=2, le=65536, description="Context length in tokens; must equal data.seq_len.", examples=[64, 1024]
    )
    d_model: int = Field(
        ge=1, le=65536, description="Width of the embeddings and of every block; a multiple of heads.", examples=[128]
    )
    layers: int = Field(ge=1, le=256, description="Number of transformer blocks.", examples=[2, 12])
    heads: int = Field(ge=1, le=1024, description="Attention heads per block; must divide d_model.", examples=[4])
    ffn: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Hidden width of each block's MLP (default: 4 x d_model, as in GPT-2).",
    )
    dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Dropout probability in every block (0 disables it)."
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "TransformerModel":
        if self.d_model % self.heads:
            raise rule_broken(
                f"d_model {self.d_model} is not a multiple of heads {self.heads}: each head gets d_model / heads "
                "dimensions",
                "heads",
            )
        return self


class HuggingFaceModel(Strict):
    """A Hugging Face `transformers` causal language model built from a config (random weights, nothing downloaded)."""

    kind: Literal["huggingface"] = Field(
        description="A `transformers` model from its config class and from_config (needs: pip install 'accel-run[hf]')."
    )
    family: Literal["gpt2"] = Field(
        default="gpt2", description="The model family: its config class (GPT2Config) and architecture."
    )
    vocab: int = Field(ge=2, le=1_000_000, description="vocab_size; must equal data.vocab.", examples=[50257])
    seq_len: int = Field(
        ge=2, le=65536, description="n_positions, the context length; must equal data.seq_len.", examples=[1024]
    )
    d_model: int = Field(ge=1, le=65536, description="n_embd; a multiple of heads.", examples=[768])
    layers: int = Field(ge=1, le=256, description="n_layer: number of transformer blocks.", examples=[12])
    heads: int = Field(ge=1, le=1024, description="n_head; must divide d_model.", examples=[12])
    dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="resid_pdrop, embd_pdrop and attn_pdrop (0 disables dropout)."
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "HuggingFaceModel":
        if self.d_model % self.heads:
            raise rule_broken(f"d_model {self.d_model} is not a multiple of heads {self.heads}", "heads")
        return self


ModelSection = Annotated[
    MLPModel | LinearModel | TransformerModel | HuggingFaceModel,
    Field(
        discriminator="kind",
        description="The network to train. `kind` picks a built-in model; its fields follow.",
    ),
]


# --- data --------------------------------------------------------------------------------------


class SyntheticClassification(Strict):
    """Gaussian inputs labelled by a fixed random teacher network, so accuracy can really rise."""

    kind: Literal["synthetic-classification"] = Field(
        description="Random inputs with labels from a fixed random teacher network (learnable, reproducible)."
    )
    samples: int = Field(
        ge=1,
        le=1_000_000_000,
        description="Training samples (eval samples come on top, see train.eval_samples).",
        examples=[10000, 50000],
    )
    features: int = Field(ge=1, le=1_000_000, description="Input width; must equal model.input_dim.", examples=[128])
    classes: int = Field(
        ge=2, le=1_000_000, description="Number of label classes; must equal model.classes.", examples=[10]
    )
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Seed of the inputs and of the teacher network.")
    teacher_hidden: int = Field(
        default=64,
        ge=0,
        le=65536,
        description="Hidden width of the teacher that assigns labels; 0 makes a linear teacher (an easier task).",
    )
    label_noise: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Fraction of labels replaced by random classes (0 = clean labels)."
    )


class SyntheticTokens(Strict):
    """Token sequences that follow a fixed random next-token rule, with noise, so a language model's loss can fall."""

    kind: Literal["synthetic-tokens"] = Field(
        description="Random token sequences in which each token follows from the one before by a fixed seeded "
        "rule (a permutation of the vocabulary), except a `noise` share of random tokens (learnable, reproducible)."
    )
    samples: int = Field(
        ge=1,
        le=1_000_000_000,
        description="Training sequences (eval sequences come on top, see train.eval_samples).",
        examples=[2048],
    )
    vocab: int = Field(ge=2, le=1_000_000, description="Vocabulary size; must equal model.vocab.", examples=[256])
    seq_len: int = Field(ge=2, le=65536, description="Tokens per sequence; must equal model.seq_len.", examples=[64])
    noise: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Share of tokens drawn at random instead of by the rule (the loss cannot fall below its entropy).",
    )
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Seed of the sequences and of the rule.")


DataSection = Annotated[
    SyntheticClassification | SyntheticTokens,
    Field(
        discriminator="kind",
        description="The training data. `kind` picks a built-in data set; its fields follow.",
    ),
]


# --- train -------------------------------------------------------------------------------------

OptimizerImpl = Literal["auto", "fused", "foreach", "for-loop"]
_IMPL_DOC = (
    "PyTorch kernel for the update: 'auto' picks 'fused' where the device supports it "
    "(measured here: halves the step time of a 31.5M-parameter model on CPU), else 'foreach'."
)


# Fields the Adam family shares (Annotated with their defaults, so each optimizer lists them once).
_AdamLR = Annotated[float, Field(default=1e-3, gt=0, le=10, description="Peak learning rate.", examples=[1e-3])]
_Betas = Annotated[
    tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]],
    Field(
        default=(0.9, 0.999),
        strict=False,  # a YAML list is a tuple here; the numbers in it stay strict
        description="Coefficients of the running averages of gradient and its square.",
    ),
]
_Eps = Annotated[float, Field(default=1e-8, gt=0, le=1, description="Term added to the denominator for stability.")]
_Implementation = Annotated[OptimizerImpl, Field(default="auto", description=_IMPL_DOC)]


class AdamWOptimizer(Strict):
    """AdamW: Adam with decoupled weight decay."""

    kind: Literal["adamw"] = Field(default="adamw", description="torch.optim.AdamW (the default optimizer).")
    lr: _AdamLR
    weight_decay: float = Field(default=0.01, ge=0, le=10, description="Decoupled weight decay.")
    betas: _Betas
    eps: _Eps
    implementation: _Implementation


class AdamOptimizer(Strict):
    """Adam with L2 weight decay."""

    kind: Literal["adam"] = Field(description="torch.optim.Adam.")
    lr: _AdamLR
    weight_decay: float = Field(default=0.0, ge=0, le=10, description="L2 penalty added to the gradient.")
    betas: _Betas
    eps: _Eps
    implementation: _Implementation


class SGDOptimizer(Strict):
    """Stochastic gradient descent, optionally with momentum."""

    kind: Literal["sgd"] = Field(description="torch.optim.SGD.")
    lr: float = Field(default=0.01, gt=0, le=100, description="Peak learning rate.", examples=[0.01])
    momentum: float = Field(default=0.0, ge=0, lt=1, description="Momentum factor (0 = plain SGD).")
    nesterov: bool = Field(default=False, description="Use Nesterov momentum (needs momentum > 0).")
    weight_decay: float = Field(default=0.0, ge=0, le=10, description="L2 penalty added to the gradient.")
    implementation: _Implementation

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> "SGDOptimizer":
        if self.nesterov and self.momentum == 0:
            raise rule_broken("nesterov: true needs momentum > 0", "nesterov")
        return self


def _optimizer_kind(value: Any) -> str | None:
    """The optimizer's tag; `kind` may be left out and means adamw."""
    if isinstance(value, dict):
        kind = value.get("kind", "adamw")
        return kind if isinstance(kind, str) else None
    return getattr(value, "kind", None)


OptimizerSection = Annotated[
    Annotated[AdamWOptimizer, Tag("adamw")]
    | Annotated[AdamOptimizer, Tag("adam")]
    | Annotated[SGDOptimizer, Tag("sgd")],
    Discriminator(
        _optimizer_kind,
        custom_error_type="optimizer_kind",
        custom_error_message="unknown optimizer kind",
        custom_error_context={"discriminator": "kind", "expected_tags": "'adamw', 'adam', 'sgd'"},
    ),
]


class TrainSection(Strict):
    """How to train: length, batch, accumulation, optimizer, schedule, evaluation."""

    epochs: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Passes over the training data. Set exactly one of epochs and max_steps.",
        examples=[10],
    )
    max_steps: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000_000,
        description="Optimizer steps to train for, cycling over the data. Set exactly one of epochs and max_steps.",
        examples=[200],
    )
    batch_size: int = Field(
        default=64,
        ge=1,
        le=1_000_000,
        description="Samples per process per forward pass (micro-batch). "
        "Global batch per optimizer step = batch_size x processes x gradient_accumulation_steps.",
        examples=[64, 256],
    )
    gradient_accumulation_steps: int = Field(
        default=1,
        ge=1,
        le=100_000,
        description="Forward/backward passes per optimizer step (Accelerator(gradient_accumulation_steps=...)).",
        examples=[1, 4, 8],
    )
    optimizer: OptimizerSection = Field(
        default_factory=lambda: AdamWOptimizer.model_validate({}),
        description="The optimizer. `kind` picks it (adamw, adam, sgd); its settings follow.",
        json_schema_extra={"default": {"kind": "adamw"}},
    )
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        default="constant",
        description="Learning-rate schedule over the optimizer steps, after warm-up: "
        "constant, linear decay to 0, or cosine decay to 0.",
    )
    warmup_steps: int = Field(
        default=0, ge=0, le=1_000_000_000, description="Optimizer steps of linear learning-rate warm-up from 0."
    )
    max_grad_norm: float | None = Field(
        default=None, gt=0, le=1e6, description="Clip the gradient norm to this value (null = no clipping)."
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seed of model initialisation and data order.")
    eval_samples: int = Field(
        default=1000,
        ge=0,
        le=1_000_000_000,
        description="Extra samples from the same teacher for evaluation (0 = no evaluation). "
        "Ignored when eval_split is set; set only one of the two.",
    )
    eval_split: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Hold out this fraction of data.samples for evaluation instead of drawing eval_samples extra.",
        examples=[0.1],
    )
    loss_every_steps: int = Field(
        default=10,
        ge=1,
        le=1_000_000,
        description="Record the training loss curve every this many optimizer steps (mean loss of each window).",
    )

    @model_validator(mode="after")
    def _exactly_one_length(self) -> "TrainSection":
        if (self.epochs is None) == (self.max_steps is None):
            if self.epochs is not None:
                raise rule_broken(RULE_LENGTH_BOTH, "max_steps")
            raise rule_broken(RULE_LENGTH_NEITHER)
        if "eval_samples" in self.model_fields_set and self.eval_split is not None:
            raise rule_broken(RULE_EVAL_BOTH, "eval_split")
        return self


# --- launch ------------------------------------------------------------------------------------

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


# --- measure -----------------------------------------------------------------------------------


class MeasureSection(Strict):
    """How timings are taken: repeats, warm-up, what makes a repeat fit to time, noise floor."""

    repeats: Annotated[int, Field(ge=1, le=1000)] | Literal["auto"] = Field(
        default="auto",
        description="Separate launches of each run. auto (the default): launch interleaved repeats until every "
        "timing verdict is decided, or max_repeats or max_time_s is spent; a number fixes the count. "
        "Runs compared by an expectation are interleaved (A B A B ...).",
        examples=["auto", 5],
    )
    max_repeats: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="With repeats: auto, the most launches of one run (disturbed ones count).",
    )
    max_time_s: float = Field(
        default=600,
        gt=0,
        le=7 * 86400,
        description="With repeats: auto, no new repeat of a run starts once its launches took this long in all "
        "(seconds, launch to exit).",
    )
    warmup_steps: int = Field(
        default=3, ge=0, le=1_000_000, description="Optimizer steps at the start excluded from the timed part."
    )
    block_s: float = Field(
        default=0.02,
        gt=0,
        le=3600,
        description="The timed part is cut into blocks of whole optimizer steps at least this long (seconds), "
        "each closed by one device synchronisation; the launch's speed is the median block rate.",
    )
    min_blocks: int = Field(
        default=10,
        ge=2,
        le=100_000,
        description="A launch with fewer blocks than this cannot decide a timing verdict (it is unfit to time).",
    )
    max_spread: float = Field(
        default=0.5,
        gt=0,
        le=100,
        description="A launch whose block rates spread more than this (IQR/median, 0.5 = 50%), or whose two "
        "halves differ by more than this, is unfit to time: the machine changed while it was timed (halves "
        "closer than that widen the launch's interval instead).",
    )
    extend_share: float = Field(
        default=0.5,
        ge=0,
        le=100,
        description="When the declared training gives too few blocks (or too loose an estimate), timing-only "
        "steps after it (same data and settings, never in loss or accuracy) extend the timed part: up to "
        "measure.min_blocks whatever they cost, beyond that for at most this share of what the launch has cost "
        "so far (another launch would cost all of it again). 0 = never.",
    )
    min_duration_s: float | None = Field(
        default=None,
        gt=0,
        le=86400,
        description="A launch whose timed part is shorter than this (seconds) is unfit to time. null: the blocks "
        "decide (measure.min_blocks); a script run, which reports no blocks, needs 1 s.",
    )
    max_session_s: float | None = Field(
        default=None,
        gt=0,
        le=30 * 86400,
        description="With repeats: auto, no new round of repeats starts once the session has run this long "
        "(seconds); the report says which verdicts were left undecided by it. null = no session limit.",
        examples=[300],
    )
    max_disturbance: float = Field(
        default=0.10,
        ge=0,
        le=1,
        description="A repeat during whose timed part other processes took more than this share of the CPU "
        "cores (0.10 = 10%), or whose timed step took over 3x the same step probed after training, is disturbed: "
        "it is repeated, never averaged in. 1 accepts any load (and the spread and drift it causes: "
        "measure.max_spread is not applied then).",
    )
    noise_floor: float = Field(
        default=0.03,
        ge=0,
        lt=1,
        description="Relative noise assumed beyond the measured spread (0.03 = 3%); a bound closer than this "
        "to the measurement is 'inconclusive'.",
    )
    attribution: bool = Field(
        default=True,
        description="After training, time compute, gradient sync, data and optimizer per step, "
        "so a missing speedup comes with its reason.",
    )


# --- engine ------------------------------------------------------------------------------------

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
_ENGINE_DOC = "Where each launch runs: `kind: local` (this machine, the default) or `kind: slurm` (a cluster)."


def default_engine() -> LocalEngineSection:
    """The engine of a spec that names none."""
    return LocalEngineSection(kind="local")


# --- runs and expectations ----------------------------------------------------------------------


_TRAIN_DOC = "How to train: epochs or max_steps, batch, accumulation, optimizer, schedule, evaluation."
_LAUNCH_DOC = "How `accelerate launch` starts each run: processes, mixed precision, device, GPUs, threads."
_MEASURE_DOC = "How timings are taken: repeats, warm-up steps, noise floor, attribution."


class RunConfig(Strict):
    """One run fully resolved: the top-level sections deep-merged with the run's overrides."""

    model: ModelSection
    data: DataSection
    train: TrainSection = Field(description=_TRAIN_DOC)
    launch: LaunchSection = Field(
        default_factory=LaunchSection, description=_LAUNCH_DOC, json_schema_extra={"default": {}}
    )
    measure: MeasureSection = Field(
        default_factory=MeasureSection, description=_MEASURE_DOC, json_schema_extra={"default": {}}
    )
    engine: EngineSection = Field(
        default_factory=default_engine, description=_ENGINE_DOC, json_schema_extra={"default": {"kind": "local"}}
    )


# --- script: your own training script as the workload ----------------------------------------

OPTION_PATTERN = r"^-"  # a command-line option: --batch-size, -b

_SCRIPT_DOC = (
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


class ScriptRunConfig(Strict):
    """One run of a user script, fully resolved: the script, how it is launched and measured."""

    script: ScriptSection = Field(description=_SCRIPT_DOC)
    launch: LaunchSection = Field(
        default_factory=LaunchSection, description=_LAUNCH_DOC, json_schema_extra={"default": {}}
    )
    measure: MeasureSection = Field(
        default_factory=MeasureSection, description=_MEASURE_DOC, json_schema_extra={"default": {}}
    )
    engine: EngineSection = Field(
        default_factory=default_engine, description=_ENGINE_DOC, json_schema_extra={"default": {"kind": "local"}}
    )


# The sections of the built-in worker, which a script run leaves out (its script builds its own).
BUILTIN_SECTIONS = ("model", "data", "train")


Metric = Literal[
    "train_time_s",
    "startup_s",
    "samples_per_s",
    "tokens_per_s",
    "step_time_ms",
    "final_loss",
    "eval_loss",
    "accuracy",
    "peak_memory_mb",
    "optimizer_steps",
]
METRIC_DOC = metric_doc()  # each metric's help, from runner.metrics' table (tests pin Metric to its names)


# Warnings a spec can acknowledge where they are intended, so `--strict` stays usable: each
# warning's text ends with its name ("[acknowledge: confounded]").
WarningName = Literal[
    "different-work", "confounded", "warmup-too-long", "cuda-visible-devices", "gpu-ids-on-cpu", "many-launches"
]
ACKNOWLEDGE_DOC = (
    "Warnings you intend, by name, so they are not reported (and --strict passes): different-work (a speedup "
    "between runs that train differently), confounded (a speedup between runs that differ in two or more "
    "settings), warmup-too-long, cuda-visible-devices, gpu-ids-on-cpu, many-launches. "
    "Each warning's text ends with its name."
)


def _acknowledge_field(scope: str) -> Any:
    """The `acknowledge` list of a scope: the spec, a run or an expectation."""
    return Field(
        default=[], max_length=10, description=f"{ACKNOWLEDGE_DOC} Applies to {scope}.", examples=[["confounded"]]
    )


class _Expectation(Strict):
    title: str | None = Field(
        default=None,
        max_length=200,
        description="How the report names this expectation.",
        examples=["2 processes >= 1.8x faster"],
    )
    acknowledge: list[WarningName] = _acknowledge_field("this expectation")


class _Bounded(_Expectation):
    at_least: float | None = Field(default=None, description="Lower bound (inclusive).")
    at_most: float | None = Field(default=None, description="Upper bound (inclusive).")

    @model_validator(mode="after")
    def _one_bound(self) -> "_Bounded":
        if self.at_least is None and self.at_most is None:
            raise rule_broken(RULE_NO_BOUND)
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise rule_broken(f"at_least ({self.at_least}) is larger than at_most ({self.at_most})", "at_least")
        return self


def _ref_kind(value: Any) -> str:
    return "cells" if isinstance(value, dict) else "name"


_CELLS_DOC = (
    "A run's name, or a mapping of settings to values (launch.processes: 2) that selects every run that has them: "
    "the expectation then applies to each, one verdict per run."
)
_TWIN_DOC = (
    "A run's name, or a mapping of settings to values (launch.processes: 1): the twin of each run, i.e. the run "
    "with the same settings except these. Default: the top-level baseline."
)
Cells = Annotated[
    dict[Annotated[str, StringConstraints(pattern=SETTING_PATTERN)], Any],
    Field(min_length=1, title="Settings", description="Settings and their values, e.g. {launch.processes: 2}."),
]
RunRef = Annotated[
    Annotated[Name, Tag("name")] | Annotated[Cells, Tag("cells")],
    Discriminator(_ref_kind),
]
_SETTINGS_REF: dict[str, Any] = {REFERENCE_MARK: "settings"}


class SpeedupExpectation(_Bounded):
    """`run` is at least/at most N times faster than `baseline` for the same work (throughput ratio)."""

    kind: Literal["speedup"] = Field(
        description="Speedup of run over baseline: samples/s of run / samples/s of baseline."
    )
    run: RunRef = Field(description=f"The run expected to be faster. {_CELLS_DOC}", json_schema_extra=_SETTINGS_REF)
    baseline: RunRef | None = Field(
        default=None, description=f"The run it is compared with. {_TWIN_DOC}", json_schema_extra=_SETTINGS_REF
    )


class BoundExpectation(_Bounded):
    """A metric of one run lies within bounds."""

    kind: Literal["bound"] = Field(description="An absolute bound on one run's metric.")
    run: RunRef = Field(description=f"The run measured. {_CELLS_DOC}", json_schema_extra=_SETTINGS_REF)
    metric: Metric = Field(description=METRIC_DOC, examples=["accuracy"])


class RatioExpectation(_Bounded):
    """metric(run) / metric(baseline) lies within bounds."""

    kind: Literal["ratio"] = Field(description="metric of run divided by metric of baseline, bounded.")
    run: RunRef = Field(description=f"Numerator run. {_CELLS_DOC}", json_schema_extra=_SETTINGS_REF)
    baseline: RunRef | None = Field(
        default=None, description=f"Denominator run. {_TWIN_DOC}", json_schema_extra=_SETTINGS_REF
    )
    metric: Metric = Field(description=METRIC_DOC, examples=["peak_memory_mb"])


class CloseExpectation(_Expectation):
    """Two runs reach the same value of a metric within a tolerance."""

    kind: Literal["close"] = Field(description="metric of run is within a tolerance of metric of baseline.")
    run: RunRef = Field(description=f"The run checked. {_CELLS_DOC}", json_schema_extra=_SETTINGS_REF)
    baseline: RunRef | None = Field(
        default=None, description=f"The run it should match. {_TWIN_DOC}", json_schema_extra=_SETTINGS_REF
    )
    metric: Metric = Field(description=METRIC_DOC, examples=["final_loss"])
    rel_tol: float | None = Field(
        default=None, ge=0, le=100, description="Allowed |run - baseline| / |baseline| (0.05 = 5%).", examples=[0.05]
    )
    abs_tol: float | None = Field(default=None, ge=0, description="Allowed |run - baseline|.")

    @model_validator(mode="after")
    def _one_tolerance(self) -> "CloseExpectation":
        if self.rel_tol is None and self.abs_tol is None:
            raise rule_broken(RULE_NO_TOLERANCE)
        return self


# Every kind of expectation; the checks match on it exhaustively (verdicts.check), so a new kind
# that nobody handles is a type error, not a silent fall-through.
AnyExpectation = SpeedupExpectation | BoundExpectation | RatioExpectation | CloseExpectation
Expectation = Annotated[AnyExpectation, Field(discriminator="kind")]


# An override is checked after merging, against the full section, so errors in it are located at
# the override's own lines. Its editor schema is the section's schema with every key optional
# (schema.py derives it), marked here by OVERRIDE_MARK.
Override = dict[str, Any] | None
OVERRIDE_MARK = "x-accel-run-override-of"


def _override_of(section: str) -> dict[str, Any]:
    return {OVERRIDE_MARK: section}


class RunOverride(Strict):
    """A run: partial sections deep-merged over the top-level ones (null removes a key)."""

    description: str = Field(default="", max_length=1000, description="What this run varies, for the report.")
    acknowledge: list[WarningName] = _acknowledge_field("this run")
    extends: Name | None = Field(
        default=None,
        description="Another run this one starts from: that run's overrides apply first, this run's on top "
        "(chains allowed, cycles not).",
        json_schema_extra={REFERENCE_MARK: "name"},
    )
    model: Override = Field(
        default=None,
        description="Overrides of the top-level model section (a different `kind` replaces it).",
        json_schema_extra=_override_of("model"),
    )
    data: Override = Field(
        default=None, description="Overrides of the top-level data section.", json_schema_extra=_override_of("data")
    )
    train: Override = Field(
        default=None, description="Overrides of the top-level train section.", json_schema_extra=_override_of("train")
    )
    launch: Override = Field(
        default=None, description="Overrides of the top-level launch section.", json_schema_extra=_override_of("launch")
    )
    measure: Override = Field(
        default=None,
        description="Overrides of the top-level measure section.",
        json_schema_extra=_override_of("measure"),
    )
    engine: Override = Field(
        default=None,
        description="Overrides of the top-level engine section (a different `kind` replaces it).",
        json_schema_extra=_override_of("engine"),
    )
    script: Override = Field(
        default=None,
        description="Overrides of the top-level script section (its args, say); null removes it.",
        json_schema_extra=_override_of("script"),
    )


class MatrixSection(BaseModel):
    """A grid of runs, as in a CI matrix: every combination of the listed values is a run (a cell)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True, title="Matrix")
    __pydantic_extra__: dict[
        str, Annotated[list[Any], Field(min_length=1, max_length=MAX_CELLS, title="Values of a setting")]
    ] = Field(init=False)

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        title="Cell name template",
        description="How cells are named, with {key} for a value, e.g. 'accum-{gradient_accumulation_steps}'. "
        "Default: key=value for each matrix key, joined by commas ('processes=2,mixed_precision=bf16').",
        examples=["p{processes}-{mixed_precision}"],
    )
    include: list[Cells] = Field(
        default=[],
        max_length=MAX_CELLS,
        title="Cells to add or extend",
        description="Each entry adds its values to every cell whose matrix values it matches (its other keys "
        "are added, never overwriting a matrix value); an entry that matches no cell is a new cell.",
        examples=[[{"train.gradient_accumulation_steps": 4, "train.batch_size": 16}]],
    )
    exclude: list[Cells] = Field(
        default=[],
        max_length=MAX_CELLS,
        title="Cells to leave out",
        description="Each entry removes every cell whose matrix values match all of its values.",
        examples=[[{"launch.processes": 2, "launch.mixed_precision": "bf16"}]],
    )


_MATRIX_DOC = (
    f"Runs as a grid: settings (launch.processes, or a key of one section such as mixed_precision) -> lists of "
    f"values; every combination becomes a run over the top-level sections (at most {MAX_CELLS})."
)


class ExperimentSpec(Strict):
    """An accel-run experiment: the base configuration, the runs that vary it, the results expected."""

    # Either the built-in worker's sections or a script: each run is then checked as a RunConfig or a
    # ScriptRunConfig (validate.py), which is where a missing section is reported.
    model_config = ConfigDict(
        title="accel-run experiment spec",
        json_schema_extra={"anyOf": [{"required": ["model", "data", "train"]}, {"required": ["script"]}]},
    )

    version: Literal[1] = Field(default=FORMAT_VERSION, description="Spec format version. This is version 1.")
    name: Name = Field(description=f"Experiment name; results go to results/<name>/. {NAME_RULE}.", examples=["day6"])
    description: str = Field(default="", max_length=10_000, description="What the experiment is for.")
    script: ScriptSection | SkipJsonSchema[None] = Field(default=None, description=_SCRIPT_DOC)
    model: ModelSection | SkipJsonSchema[None] = None
    data: DataSection | SkipJsonSchema[None] = None
    train: TrainSection | SkipJsonSchema[None] = Field(default=None, description=_TRAIN_DOC)
    launch: LaunchSection = Field(
        default_factory=LaunchSection, description=_LAUNCH_DOC, json_schema_extra={"default": {}}
    )
    measure: MeasureSection = Field(
        default_factory=MeasureSection, description=_MEASURE_DOC, json_schema_extra={"default": {}}
    )
    engine: EngineSection = Field(
        default_factory=default_engine, description=_ENGINE_DOC, json_schema_extra={"default": {"kind": "local"}}
    )
    baseline: Name | None = Field(
        default=None,
        description="The run other runs are reported against (default: the first run), and the baseline of "
        "every expectation that names none.",
        json_schema_extra={REFERENCE_MARK: "name"},
    )
    matrix: MatrixSection | None = Field(default=None, description=_MATRIX_DOC)
    runs: dict[Name, RunOverride] = Field(
        default={},
        description="Run name -> overrides of model/data/train/launch/measure. "
        "No runs = one run named 'main' with the top-level sections.",
        examples=[{"single": {}, "dual": {"launch": {"processes": 2}}}],
    )
    expect: list[Expectation] = Field(
        default=[], max_length=1000, description="Results you expect; each is checked and reported."
    )
    acknowledge: list[WarningName] = _acknowledge_field("the whole spec: every run and expectation")
