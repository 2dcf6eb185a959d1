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
from pydantic_core import PydanticCustomError

FORMAT_VERSION: Literal[1] = 1
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
NAME_RULE = "1-64 letters, digits, '-' or '_', starting with a letter or digit"

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


class Strict(BaseModel):
    """Base of every section: unknown keys are errors, NaN and infinity are not numbers."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


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


ModelSection = Annotated[
    MLPModel | LinearModel,
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


DataSection = Annotated[
    SyntheticClassification,
    Field(description="The training data. `kind` picks a built-in data set; its fields follow."),
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
    Field(default=(0.9, 0.999), description="Coefficients of the running averages of gradient and its square."),
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
                raise rule_broken(
                    "set exactly one of epochs and max_steps, not both "
                    "(a run that sets max_steps over top-level epochs must also set epochs: null)",
                    "max_steps",
                )
            raise rule_broken("set exactly one of epochs and max_steps (neither is set)")
        if "eval_samples" in self.model_fields_set and self.eval_split is not None:
            raise rule_broken("set only one of eval_samples and eval_split", "eval_split")
        return self


# --- launch ------------------------------------------------------------------------------------

_GPU_IDS_PATTERN = r"^ *(all|[0-9]+( *, *[0-9]+)*) *$"


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
    if not re.fullmatch(_GPU_IDS_PATTERN, text):
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
                {"type": "string", "pattern": _GPU_IDS_PATTERN},
                {"type": "integer", "minimum": 0, "maximum": 1023},
                {"type": "null"},
            ]
        }
    ),
]


class LaunchSection(Strict):
    """How `accelerate launch` starts the run: processes, precision, device, machines."""

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
    num_machines: int = Field(default=1, ge=1, le=4096, description="Machines taking part (Accelerate num_machines).")
    machine_rank: int = Field(default=0, ge=0, le=4095, description="This machine's rank, 0 on the main machine.")
    main_process_ip: str | None = Field(
        default=None,
        max_length=253,
        description="Address of the main machine; required when num_machines > 1.",
        examples=["10.0.0.1"],
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
    min_duration_s: float = Field(
        default=1.0,
        gt=0,
        le=86400,
        description="A repeat whose timed part is shorter than this cannot decide a timing verdict (it is "
        "inconclusive): below about a second, scheduler ticks and one-off stalls are a large share of it.",
    )
    max_disturbance: float = Field(
        default=0.10,
        ge=0,
        le=1,
        description="A repeat during whose timed part other processes took more than this share of the CPU "
        "cores (0.10 = 10%), or whose timed step took over 3x the same step probed after training, is disturbed: "
        "it is repeated, never averaged in. 1 accepts any load.",
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


# --- runs and expectations ----------------------------------------------------------------------


_TRAIN_DOC = "How to train: epochs or max_steps, batch, accumulation, optimizer, schedule, evaluation."
_LAUNCH_DOC = "How `accelerate launch` starts each run: processes, mixed precision, device, GPUs, machines."
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


Metric = Literal[
    "train_time_s",
    "startup_s",
    "samples_per_s",
    "step_time_ms",
    "final_loss",
    "eval_loss",
    "accuracy",
    "peak_memory_mb",
    "optimizer_steps",
]
METRIC_DOC = (
    "train_time_s: training wall time; startup_s: launch to first step; samples_per_s: global samples per "
    "second after warm-up; step_time_ms: time per optimizer step after warm-up; final_loss: mean training "
    "loss of the last epoch/window; eval_loss and accuracy: on the eval set; peak_memory_mb: CUDA allocator "
    "peak on GPU, peak RSS on CPU (largest process); optimizer_steps: optimizer updates done."
)


class _Expectation(Strict):
    title: str | None = Field(
        default=None,
        max_length=200,
        description="How the report names this expectation.",
        examples=["2 processes >= 1.8x faster"],
    )


class _Bounded(_Expectation):
    at_least: float | None = Field(default=None, description="Lower bound (inclusive).")
    at_most: float | None = Field(default=None, description="Upper bound (inclusive).")

    @model_validator(mode="after")
    def _one_bound(self) -> "_Bounded":
        if self.at_least is None and self.at_most is None:
            raise rule_broken("give at_least, at_most or both")
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise rule_broken(f"at_least ({self.at_least}) is larger than at_most ({self.at_most})", "at_least")
        return self


class SpeedupExpectation(_Bounded):
    """`run` is at least/at most N times faster than `baseline` for the same work (throughput ratio)."""

    kind: Literal["speedup"] = Field(
        description="Speedup of run over baseline: samples/s of run / samples/s of baseline."
    )
    run: Name = Field(description="The run expected to be faster.", examples=["dual"])
    baseline: Name = Field(description="The run it is compared with.", examples=["single"])


class BoundExpectation(_Bounded):
    """A metric of one run lies within bounds."""

    kind: Literal["bound"] = Field(description="An absolute bound on one run's metric.")
    run: Name = Field(description="The run measured.", examples=["single"])
    metric: Metric = Field(description=METRIC_DOC, examples=["accuracy"])


class RatioExpectation(_Bounded):
    """metric(run) / metric(baseline) lies within bounds."""

    kind: Literal["ratio"] = Field(description="metric of run divided by metric of baseline, bounded.")
    run: Name = Field(description="Numerator run.", examples=["bf16"])
    baseline: Name = Field(description="Denominator run.", examples=["fp32"])
    metric: Metric = Field(description=METRIC_DOC, examples=["peak_memory_mb"])


class CloseExpectation(_Expectation):
    """Two runs reach the same value of a metric within a tolerance."""

    kind: Literal["close"] = Field(description="metric of run is within a tolerance of metric of baseline.")
    run: Name = Field(description="The run checked.", examples=["dual-b64"])
    baseline: Name = Field(description="The run it should match.", examples=["single-b128"])
    metric: Metric = Field(description=METRIC_DOC, examples=["final_loss"])
    rel_tol: float | None = Field(
        default=None, ge=0, le=100, description="Allowed |run - baseline| / |baseline| (0.05 = 5%).", examples=[0.05]
    )
    abs_tol: float | None = Field(default=None, ge=0, description="Allowed |run - baseline|.")

    @model_validator(mode="after")
    def _one_tolerance(self) -> "CloseExpectation":
        if self.rel_tol is None and self.abs_tol is None:
            raise rule_broken("give rel_tol, abs_tol or both")
        return self


Expectation = Annotated[
    SpeedupExpectation | BoundExpectation | RatioExpectation | CloseExpectation,
    Field(discriminator="kind"),
]


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


class ExperimentSpec(Strict):
    """An accel-run experiment: the base configuration, the runs that vary it, the results expected."""

    model_config = ConfigDict(title="accel-run experiment spec")

    version: Literal[1] = Field(default=FORMAT_VERSION, description="Spec format version. This is version 1.")
    name: Name = Field(description=f"Experiment name; results go to results/<name>/. {NAME_RULE}.", examples=["day6"])
    description: str = Field(default="", max_length=10_000, description="What the experiment is for.")
    model: ModelSection
    data: DataSection
    train: TrainSection = Field(description=_TRAIN_DOC)
    launch: LaunchSection = Field(
        default_factory=LaunchSection, description=_LAUNCH_DOC, json_schema_extra={"default": {}}
    )
    measure: MeasureSection = Field(
        default_factory=MeasureSection, description=_MEASURE_DOC, json_schema_extra={"default": {}}
    )
    baseline: Name | None = Field(
        default=None, description="The run other runs' speedups are reported against (default: the first run)."
    )
    runs: dict[Name, RunOverride] = Field(
        default={},
        description="Run name -> overrides of model/data/train/launch/measure. "
        "No runs = one run named 'main' with the top-level sections.",
        examples=[{"single": {}, "dual": {"launch": {"processes": 2}}}],
    )
    expect: list[Expectation] = Field(
        default=[], max_length=1000, description="Results you expect; each is checked and reported."
    )
