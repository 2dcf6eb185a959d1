"""The metrics table: every metric metrics.json holds, with its unit, kind, help and how it is compared.

One row per metric; the schema's description of `metric` (spec/models.py), the checks (timings
and noisy metrics), the Why (speed and memory metrics), compare (which way is better) and the
plots read it. Standard library only and cheap to import (a NamedTuple, no dataclass code
generation): `accel-run --validate` imports it through the spec models.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

MIB = 2**20  # bytes in a MiB: every *_mb metric is in MiB, as torch.cuda and /proc count

MetricKind = Literal[
    "speed",  # a step time or a rate: the Why explains it by the step's parts
    "startup",  # launch to first step
    "loss",
    "quality",  # measured on the held-out eval set
    "memory",  # the training's peak memory
    "memory_part",  # one part of that peak
    "count",
    "blocks",  # how the timed blocks of steps behaved (runner.timing)
    "setting",  # what the launch was: processes, precision, sizes
]


class Metric(NamedTuple):
    """One metric of metrics.json: what it means and how it is compared."""

    name: str
    unit: str  # "" where it has none (a loss, a fraction, a count of things)
    kind: MetricKind
    help: str = ""  # what it means; for a metric an expectation may name, the schema's hover text
    timing: bool = False  # varies with the machine's load; a busy machine or a short window spoils it
    noisy: bool = False  # varies from launch to launch (timings, and the peak memory); the rest is fixed by seeds
    higher_is_better: bool = False
    expectable: bool = False  # an expectation may name it (the spec's `metric`)
    comparable: bool = False  # `accel-run compare --metrics` accepts it
    from_blocks: Literal["rate", "time"] | None = None  # timed by the blocks: its interval is the block rate's


def _timing(name: str, unit: str, help: str = "", **more: Any) -> Metric:
    return Metric(name, unit, more.pop("kind", "speed"), help, timing=True, noisy=True, **more)


# The metrics an expectation may name first: their help, in this order, is the schema's description of
# `metric` (metric_doc); then the rest of what metrics.json holds.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        _timing("train_time_s", "s", "training wall time", expectable=True, comparable=True),
        _timing("startup_s", "s", "launch to first step", kind="startup", expectable=True, comparable=True),
        _timing(
            "samples_per_s",
            "samples/s",
            "global samples per second, the median over the launch's timed blocks of steps",
            higher_is_better=True,
            expectable=True,
            comparable=True,
            from_blocks="rate",
        ),
        _timing(
            "tokens_per_s",
            "tokens/s",
            "the same in tokens (transformer runs)",
            higher_is_better=True,
            expectable=True,
            comparable=True,
            from_blocks="rate",
        ),
        _timing(
            "step_time_ms",
            "ms",
            "time per optimizer step, from the same blocks",
            expectable=True,
            comparable=True,
            from_blocks="time",
        ),
        Metric(
            "final_loss", "", "loss", "mean training loss of the last epoch/window", expectable=True, comparable=True
        ),
        Metric("eval_loss", "", "quality", "on the held-out eval set", expectable=True, comparable=True),
        Metric(
            "accuracy",
            "",
            "quality",
            "on the held-out eval set",
            higher_is_better=True,
            expectable=True,
            comparable=True,
        ),
        Metric(
            "peak_memory_mb",
            "MiB",
            "memory",
            "training memory at its peak (parameters, gradients, optimizer state and activations; the resident "
            "data set is measured apart), on CPU and GPU alike, of the largest process",
            noisy=True,
            expectable=True,
            comparable=True,
        ),
        Metric("optimizer_steps", "steps", "count", "optimizer updates done", expectable=True, comparable=True),
        Metric(
            "first_step_at",
            "s",
            "setting",
            "wall clock (epoch seconds) of the first step: submit to first step on a cluster",
        ),
        _timing("timed_time_s", "s", "seconds of the blocks of steps kept to time the launch", comparable=True),
        Metric("timed_steps", "steps", "count", "optimizer steps in those blocks"),
        Metric(
            "extra_steps", "steps", "count", "timing-only steps after training, run while the blocks could not decide"
        ),
        Metric("extra_time_s", "s", "blocks", "seconds of those timing-only blocks"),
        Metric("timed_blocks", "blocks", "blocks", "blocks of steps kept to time the launch"),
        Metric("warmup_blocks", "blocks", "blocks", "leading blocks left out: the speed was not yet stationary"),
        Metric("block_spread", "", "blocks", "interquartile range of the block rates over their median"),
        Metric(
            "block_drift",
            "",
            "blocks",
            "how far the medians of the first and second half of the blocks part, over the median",
        ),
        Metric("rate_ci_low", "", "blocks", "low end of the median block rate's interval, as a factor of it"),
        Metric("rate_ci_high", "", "blocks", "high end of that interval, as a factor of it"),
        Metric("peak_memory_source", "", "setting", "how peak_memory_mb was measured (training_peak, peak_rss, ...)"),
        Metric("memory_parameters_mb", "MiB", "memory_part", "parameters, in the peak"),
        Metric("memory_gradients_mb", "MiB", "memory_part", "gradients, in the peak"),
        Metric("memory_optimizer_mb", "MiB", "memory_part", "optimizer state, in the peak"),
        Metric("memory_activations_mb", "MiB", "memory_part", "activations, in the peak"),
        Metric("memory_data_mb", "MiB", "memory_part", "the data set kept in memory (not in the peak)"),
        Metric("processes", "", "setting", "processes the launch ran (its world size)"),
        Metric("mixed_precision", "", "setting", "the precision Accelerate ran: no (fp32), fp16 or bf16"),
        Metric("global_batch_size", "samples", "setting", "samples per optimizer step over all processes"),
        Metric("params", "", "setting", "parameters of the model"),
    )
}

TIMING_METRICS = frozenset(m.name for m in METRICS.values() if m.timing)
NOISY_METRICS = frozenset(m.name for m in METRICS.values() if m.noisy)
HIGHER_IS_BETTER = frozenset(m.name for m in METRICS.values() if m.higher_is_better)
COMPARABLE_METRICS = frozenset(m.name for m in METRICS.values() if m.comparable)
BLOCK_RATES = frozenset(m.name for m in METRICS.values() if m.from_blocks == "rate")
BLOCK_TIMES = frozenset(m.name for m in METRICS.values() if m.from_blocks == "time")
SPEED_METRICS = frozenset(m.name for m in METRICS.values() if m.kind == "speed")
MEMORY_METRICS = frozenset(m.name for m in METRICS.values() if m.kind == "memory")
MEMORY_PART_METRICS = tuple(m.name for m in METRICS.values() if m.kind == "memory_part")


def metric_doc() -> str:
    """The metrics an expectation may name, each with its help: the schema's description of `metric`.

    Neighbours with the same help share it ("eval_loss and accuracy: on the held-out eval set").
    """
    groups: list[tuple[list[str], str]] = []
    for metric in METRICS.values():
        if not metric.expectable:
            continue
        if groups and groups[-1][1] == metric.help:
            groups[-1][0].append(metric.name)
        else:
            groups.append(([metric.name], metric.help))
    return "; ".join(f"{' and '.join(names)}: {help}" for names, help in groups) + "."


def unit_of(metric: str) -> str:
    """The unit a metric is measured in ('' when it has none or is not in the table)."""
    found = METRICS.get(metric)
    return found.unit if found else ""
