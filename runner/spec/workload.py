"""What a run will do, computed from its config without torch: sizes, steps, parameters, memory.

The worker uses the same arithmetic (it imports this module), so what validation, --explain,
the report and the worker say about a run can never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from runner.spec.models import (
    HuggingFaceModel,
    LinearModel,
    MLPModel,
    RunConfig,
    ScriptRunConfig,
    SyntheticTokens,
    TransformerModel,
)

FLOAT_BYTES = 4
# Adam-family training keeps weights, gradients and two moment buffers: 4 copies of the parameters.
TRAINING_COPIES = 4


@dataclass(frozen=True)
class Workload:
    """Derived sizes of one run; everything a report or a check needs to reason about the work."""

    params: int
    train_samples: int
    eval_samples: int
    processes: int
    batch_size: int
    accumulation: int
    micro_batches_per_epoch: int  # per process
    steps_per_epoch: int  # optimizer steps
    optimizer_steps: int
    epochs: float
    memory_bytes: int  # host memory the data set and the training state need, estimated
    nominal_samples: int  # what the spec asks for: train samples x epochs, or max_steps x global batch
    tokens_per_sample: int = 0  # predicted tokens per sequence (token data), 0 for other data

    @property
    def global_batch(self) -> int:
        """Samples per optimizer step over all processes (batch x processes x accumulation)."""
        return self.batch_size * self.processes * self.accumulation


def parameter_count(model: MLPModel | LinearModel | TransformerModel | HuggingFaceModel) -> int:
    """Trainable parameters of the model (weights and biases)."""
    if isinstance(model, TransformerModel | HuggingFaceModel):
        d = model.d_model
        ffn = (model.ffn or 4 * d) if isinstance(model, TransformerModel) else 4 * d
        # per block: 2 LayerNorms, the fused q/k/v and output projections, the MLP's two layers (with biases)
        block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * ffn + ffn) + (ffn * d + d)
        # token and position embeddings, the blocks, the final LayerNorm, the output head (no bias;
        # GPT-2 ties it to the token embedding, so there it adds no parameters)
        head = d * model.vocab if isinstance(model, TransformerModel) else 0
        return model.vocab * d + model.seq_len * d + model.layers * block + 2 * d + head
    widths = [model.input_dim, *(model.hidden if isinstance(model, MLPModel) else []), model.classes]
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in zip(widths, widths[1:], strict=False))


def split_sizes(config: RunConfig) -> tuple[int, int]:
    """(training samples, eval samples) after applying eval_split or eval_samples."""
    samples = config.data.samples
    if config.train.eval_split is not None:
        held_out = round(samples * config.train.eval_split)
        return samples - held_out, held_out
    return samples, config.train.eval_samples


def workload_of(config: RunConfig | ScriptRunConfig) -> Workload:
    """Derive the workload of a run. Steps are 0 when one epoch cannot fill an optimizer step."""
    if isinstance(config, ScriptRunConfig):
        return script_workload(config)
    train_samples, eval_samples = split_sizes(config)
    processes = config.launch.processes
    batch = config.train.batch_size
    accumulation = config.train.gradient_accumulation_steps
    # Each process takes an equal shard of the epoch's permutation; remainders are dropped so
    # every optimizer step sees exactly a global batch.
    micro = (train_samples // processes) // batch
    steps_per_epoch = micro // accumulation
    if config.train.epochs is not None:
        steps = steps_per_epoch * config.train.epochs
        epochs = float(config.train.epochs)
    else:
        steps = config.train.max_steps or 0
        epochs = steps / steps_per_epoch if steps_per_epoch else math.inf
    nominal = (
        train_samples * config.train.epochs
        if config.train.epochs is not None
        else (config.train.max_steps or 0) * batch * processes * accumulation
    )
    params = parameter_count(config.model)
    if isinstance(config.data, SyntheticTokens):  # int64 token ids: inputs and their next tokens
        data_bytes = (train_samples + eval_samples) * config.data.seq_len * 2 * 8
    else:
        data_bytes = (train_samples + eval_samples) * (config.data.features * FLOAT_BYTES + 8)
    memory = data_bytes + params * FLOAT_BYTES * TRAINING_COPIES
    return Workload(
        params=params,
        train_samples=train_samples,
        eval_samples=eval_samples,
        processes=processes,
        batch_size=batch,
        accumulation=accumulation,
        micro_batches_per_epoch=micro,
        steps_per_epoch=steps_per_epoch,
        optimizer_steps=steps if steps_per_epoch else 0,
        epochs=epochs,
        memory_bytes=memory,
        nominal_samples=nominal,
        tokens_per_sample=config.data.seq_len if isinstance(config.data, SyntheticTokens) else 0,
    )


def script_workload(config: ScriptRunConfig) -> Workload:
    """A user script's workload: only its process count, accumulation and (when declared) batch are known.

    Sizes, steps and memory are the script's own (0 here: nothing to estimate or compare up front);
    the script reports its steps and samples while it runs (runner.track). With script.batch_size
    the global batch is known (0 otherwise: unknown); accumulation left to the script counts as 1,
    the same for every run of one script.
    """
    return Workload(
        params=0,
        train_samples=0,
        eval_samples=0,
        processes=config.launch.processes,
        batch_size=config.script.batch_size or 0,
        accumulation=config.script.gradient_accumulation_steps or 1,
        micro_batches_per_epoch=0,
        steps_per_epoch=0,
        optimizer_steps=0,
        epochs=0.0,
        memory_bytes=0,
        nominal_samples=0,
    )


def human_bytes(count: float) -> str:
    """1536 -> '1.5 KiB'; works up to absurd sizes (a spec asking for 1e30 samples)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    value = float(count)
    for unit in units:
        if value < 1024 or unit == units[-1]:
            return f"{value:.3g} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.3g} EiB"


def human_count(count: float) -> str:
    """31_500_000 -> '31.5M'."""
    for factor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= factor:
            return f"{count / factor:.3g}{suffix}"
    return str(int(count))
