"""The GPU side of the Why: busy share, the launch-bound model, and MFU against the device's peak.

Pure arithmetic on summary.json's runs: the second clock the worker measured after training
(attribution's device_* keys: a synchronised wall per step, the GPU's kernel time in the same
steps, kernels per step, time by class), the timed step, and the observed precision facts.

Launch-bound model (dispatch-bound eager PyTorch): each step the CPU issues k kernels, taking c
seconds, and the GPU runs them in g seconds; the two overlap, so wall ~ max(c, g). While the GPU
idles most of the step (g < wall / 2), c ~ wall. A run R against a baseline B, issued the same
way (the same code), then has
  predicted speedup   = max(c, g_B) / max(c, g_R)
  kernel-only speedup = g_B / g_R      (what the dtype does to the GPU's own work)
and a declared speedup S needs g_B >= S x c: at least that much baseline GPU time per step.
A batch x times larger multiplies g (estimate: kernel time in proportion to the batch) and leaves
c, so S needs x >= S x c / g_B (possible only while S <= g_B / g_R); CUDA graphs and
torch.compile shrink c towards g.

MFU (PaLM's model FLOPs utilisation, as torchtitan reports it): 6 x parameters x samples per step
(x tokens per sample for token data: the dense 6·N·tokens approximation) over the step's wall,
over the peak dense FLOP/s of the precision the matmuls ran in, on every process's GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LAUNCH_BOUND_SHARE = 0.5  # "the GPU idles most of the step"


@dataclass(frozen=True)
class Peak:
    """Dense (no sparsity) peak FLOP/s of one GPU model, by precision, from its datasheet."""

    match: str  # a substring of torch.cuda.get_device_name()
    bf16: float  # bf16 and fp16 tensor cores
    tf32: float  # fp32 matmuls allowed TF32 (tensor cores)
    fp32: float  # true fp32 (no tensor cores)
    source: str


# NVIDIA's datasheets quote tensor-core rates "with sparsity": the dense rates are half. Matched in
# order, the more specific names first ('NVIDIA H200 NVL' before 'NVIDIA H200').
_H100 = "NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100/)"
_H200 = "NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200/)"
PEAKS = (
    Peak("H200 NVL", 835e12, 417.5e12, 60e12, _H200 + ", H200 NVL column"),
    Peak("H100 NVL", 835e12, 417.5e12, 60e12, _H100 + ", H100 NVL column"),
    Peak("H100 PCIe", 756e12, 378e12, 51e12, _H100 + ", H100 PCIe column"),
    # the SXM parts; torchtitan uses 989e12 bf16 for H100 SXM and H200 (torchtitan/tools/utils.py)
    Peak("H200", 989e12, 494.5e12, 67e12, _H200 + ", H200 SXM column"),
    Peak("H100", 989e12, 494.5e12, 67e12, _H100 + ", H100 SXM column"),
    Peak("A100", 312e12, 156e12, 19.5e12, "NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/a100/)"),
    Peak("L40S", 362e12, 183e12, 91.6e12, "NVIDIA L40S datasheet (nvidia.com/en-us/data-center/l40s/)"),
)


def find_peak(device_name: str) -> Peak | None:
    """The table's entry for a device name as torch reports it ('NVIDIA H200'), None if absent."""
    return next((peak for peak in PEAKS if peak.match.lower() in device_name.lower()), None)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms"


def _name(run: Mapping[str, Any]) -> str:
    return f"'{run.get('name', 'run')}'"


@dataclass(frozen=True)
class GpuClock:
    """One run's second clock, per optimizer step (summary.json's median over its repeats)."""

    wall_s: float  # synchronised wall of whole steps
    busy_s: float  # GPU kernel (and copy) time in the same kind of steps
    launches: float | None  # kernels, copies and memsets issued per step
    optimizer_launches: float | None
    by_class_s: dict[str, float]  # matmul, cast, optimizer, communication, other (may be empty)

    @property
    def busy_share(self) -> float:
        """The GPU's busy time over the step's wall."""
        return self.busy_s / self.wall_s

    @property
    def launch_bound(self) -> bool:
        """The GPU idles most of the step: the CPU issuing kernels sets the pace."""
        return self.busy_share < LAUNCH_BOUND_SHARE


def gpu_clock(run: Mapping[str, Any]) -> GpuClock | None:
    """The run's GPU clock, or None when it has none (a CPU run, an older accel-run, no trace)."""
    probe = run.get("attribution") or {}
    wall, busy = _number(probe.get("device_wall_s")), _number(probe.get("device_busy_s"))
    if probe.get("device_clock") != "cuda_kernels" or not wall or busy is None:
        return None
    classes = ("matmul", "cast", "optimizer", "communication", "other")
    by_class = {c: float(probe[f"device_{c}_s"]) for c in classes if _number(probe.get(f"device_{c}_s")) is not None}
    return GpuClock(
        wall_s=wall,
        busy_s=busy,
        launches=_number(probe.get("device_launches_per_step")),
        optimizer_launches=_number(probe.get("device_optimizer_launches_per_step")),
        by_class_s=by_class if len(by_class) == len(classes) else {},
    )


def predicted_speedup(issue_s: float, base_gpu_s: float, run_gpu_s: float) -> float:
    """Launch-bound model: max(c, g_B) / max(c, g_R)."""
    return max(issue_s, base_gpu_s) / max(issue_s, run_gpu_s)


def batch_factor_needed(declared: float, issue_s: float, base_gpu_s: float, run_gpu_s: float) -> float | None:
    """How many times the batch a declared speedup needs under the launch-bound model, None if none does.

    At x times the batch the ratio is x g_B / max(c, x g_R): it grows until x g_R = c, then stays
    at g_B / g_R. The smallest x with x g_B / c >= S is S c / g_B, valid while S <= g_B / g_R.
    """
    if run_gpu_s <= 0 or declared > base_gpu_s / run_gpu_s:
        return None
    return max(1.0, declared * issue_s / base_gpu_s)


def model_flops_per_step(params: float, samples: float, tokens_per_sample: float | None = None) -> float:
    """6 x parameters x samples (x tokens per sample): forward 2, backward 4 FLOPs per parameter and token."""
    return 6.0 * params * samples * (tokens_per_sample or 1.0)


def matmul_precision(run: Mapping[str, Any]) -> tuple[str, str]:
    """(peak key, words) for the precision the run's matmuls ran in, from what the worker observed."""
    precision = run.get("metrics", {}).get("mixed_precision")
    if precision in ("bf16", "fp16"):
        return "bf16", f"{precision} dense"
    observed = run.get("observed", {})
    setting, tf32 = observed.get("float32_matmul_precision"), observed.get("cuda_matmul_allow_tf32")
    if setting == "medium":
        return "bf16", "bf16 dense (float32 matmul precision 'medium' lets fp32 matmuls use bf16)"
    if tf32 is True or setting == "high":
        return "tf32", "TF32 dense (fp32 matmuls allowed TF32)"
    if setting is None and tf32 is None:
        return "fp32", "fp32 (TF32 not recorded; PyTorch's default, off, assumed)"
    return "fp32", "fp32 (TF32 off)"


def mfu(run: Mapping[str, Any]) -> dict[str, Any]:
    """MFU of a run's timed step, with what it rests on; 'reason' instead when it cannot be given."""
    metrics, observed = run.get("metrics", {}), run.get("observed", {})
    names = observed.get("device_names") or []
    if observed.get("device") != "cuda" or not names:
        return {"reason": "no MFU: the run did not compute on a GPU"}
    peak = find_peak(str(names[0]))
    if peak is None or len({find_peak(str(n)) for n in names}) > 1:
        return {"reason": f"no MFU: the peak FLOP/s of {', '.join(map(str, names))} is not in accel-run's table"}
    params, batch = _number(metrics.get("params")), _number(metrics.get("global_batch_size"))
    step_ms, processes = _number(metrics.get("step_time_ms")), _number(metrics.get("processes")) or 1.0
    if not params or not batch or not step_ms:
        return {"reason": "no MFU: parameters, batch or step time were not measured"}
    tokens, samples = _number(metrics.get("tokens_per_s")), _number(metrics.get("samples_per_s"))
    per_sample = round(tokens / samples) if tokens and samples else None
    key, words = matmul_precision(run)
    peak_flops = {"bf16": peak.bf16, "tf32": peak.tf32, "fp32": peak.fp32}[key]
    flops = model_flops_per_step(params, batch, per_sample)
    return {
        "mfu": flops / (step_ms / 1000) / (processes * peak_flops),
        "model_flops_per_step": flops,
        "peak_flops": peak_flops,
        "peak_precision": words,
        "device": str(names[0]),
        "tokens_per_sample": per_sample,
        "source": peak.source,
    }


def mfu_sentence(run: Mapping[str, Any]) -> str:
    """One run's MFU in words (or why there is none)."""
    figures = mfu(run)
    if "reason" in figures:
        return f"{_name(run)}: {figures['reason']}"
    params = int(run["metrics"]["params"])
    batch = int(run["metrics"]["global_batch_size"])
    tokens = figures["tokens_per_sample"]
    work = f"{batch:,} samples x {tokens} tokens" if tokens else f"{batch:,} samples"
    approximation = " (the dense 6·N·tokens approximation)" if tokens else ""
    low = ": under 10%, so the GPU's arithmetic is not what limits this step" if figures["mfu"] < 0.1 else ""
    return (
        f"MFU of {_name(run)}: {_percent(figures['mfu'])} of the {figures['device']}'s {figures['peak_precision']} "
        f"peak ({figures['peak_flops'] / 1e12:g} TFLOP/s per GPU), from 6 x {params:,} parameters x {work} = "
        f"{_figure(figures['model_flops_per_step'] / 1e9)} GFLOP per step in its "
        f"{_ms(float(run['metrics']['step_time_ms']) / 1000)} step{approximation}{low}"
    )


def busy_sentence(run: Mapping[str, Any], clock: GpuClock, *, first: bool = True) -> str:
    """The GPU's busy share of a run's step, with the figures it rests on (`first` says how they were taken)."""
    launches = f", {clock.launches:,.0f} kernels per step" if clock.launches else ""
    how = " (whole steps after training: the profiler's kernel time against the synchronised wall)" if first else ""
    # kernels from the profiled steps, wall from the unprofiled ones: a GPU-bound step can read a little over 100%
    return (
        f"the GPU was busy {min(clock.busy_share, 1.0):.0%} of a step of {_name(run)}: {_ms(clock.busy_s)} of kernels "
        f"in a {_ms(clock.wall_s)} step{launches}{how}"
    )


def _percent(share: float) -> str:
    """0.4177 -> '42%', 0.0279 -> '2.8%', 0.00052 -> '0.052%', below 0.001% -> 'under 0.001%'."""
    percent = share * 100
    if percent < 0.001:
        return "under 0.001%"
    return f"{percent:.0f}%" if percent >= 10 else f"{percent:.2g}%"


def _faster(ratio: float) -> str:
    """2.55 -> '2.55x faster', 0.5 -> '2.00x slower'."""
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


def _figure(value: float) -> str:
    """3 significant digits, never in exponent form: 48.4, 3,096."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:#.3g}".rstrip(".")


def split_sentence(run: Mapping[str, Any], clock: GpuClock) -> str | None:
    """The GPU's time per step by class, when the trace classified it."""
    if not clock.by_class_s:
        return None
    parts = ", ".join(f"{name} {_ms(value)}" for name, value in clock.by_class_s.items() if value > 0)
    return f"GPU time per step of {_name(run)} by kind: {parts}"


def launch_bound_sentence(clock: GpuClock) -> str:
    """What a mostly idle GPU means."""
    return (
        f"the step is bound by launching kernels: the GPU idles {_ms(clock.wall_s - clock.busy_s)} of each "
        f"{_ms(clock.wall_s)} step waiting for the CPU to issue work, so the step takes about the CPU's issue time "
        "whatever the kernels cost"
    )


def precision_facts_sentence(run: Mapping[str, Any]) -> str | None:
    """How a run's matmuls ran, from the observed precision facts (None when not recorded).

    For an fp32 run, whether its matmuls used TF32; for a mixed-precision run, the dtype autocast
    gave the first matmul's output and the dtype the parameters stayed in.
    """
    observed = run.get("observed", {})
    stored, computed = observed.get("param_dtype"), observed.get("compute_dtype")
    if run.get("metrics", {}).get("mixed_precision") not in (None, "no"):
        if not computed:
            return None
        kept = f", with its parameters stored in {stored}" if stored else ""
        return f"{_name(run)} computed its first matmul in {computed} (the dtype autocast gave its output){kept}"
    setting, tf32 = observed.get("float32_matmul_precision"), observed.get("cuda_matmul_allow_tf32")
    if setting is None and tf32 is None:
        return None
    if tf32 or setting in ("high", "medium"):
        return (
            f"{_name(run)} let fp32 matmuls use tensor cores (float32 matmul precision '{setting}', cuBLAS TF32 "
            f"{'on' if tf32 else 'off'}): its matmuls ran faster than true fp32, so what a lower precision can win "
            "over it is smaller"
        )
    return (
        f"{_name(run)} ran its matmuls in true fp32 (float32 matmul precision '{setting}', TF32 off: PyTorch's "
        "default, which Accelerate changes only with a dynamo backend)"
    )


def gpu_notes(run: Mapping[str, Any], base: Mapping[str, Any]) -> list[str]:
    """The second clock's sentences for any timing Why on a GPU: busy shares, and a launch-bound step."""
    sentences: list[str] = []
    clocks = [(who, gpu_clock(who)) for who in (run, base)]
    for who, clock in clocks:
        if clock is not None:
            sentences.append(busy_sentence(who, clock, first=not sentences))
    first = clocks[0][1]
    if first is not None and first.launch_bound:
        sentences.append(launch_bound_sentence(first))
    return sentences


def explain_gpu_precision(
    run: Mapping[str, Any], base: Mapping[str, Any], declared: float | None, precision: str, base_precision: str
) -> dict[str, Any] | None:
    """Figures and sentences for a precision speedup on a GPU from both runs' second clocks (None without them)."""
    clock, base_clock = gpu_clock(run), gpu_clock(base)
    if clock is None or base_clock is None:
        return None
    metrics, base_metrics = run.get("metrics", {}), base.get("metrics", {})
    step, base_step = _number(metrics.get("step_time_ms")), _number(base_metrics.get("step_time_ms"))
    kernel_ratio = base_clock.busy_s / clock.busy_s if clock.busy_s else None
    figures: dict[str, Any] = {
        "busy_share": clock.busy_share,
        "baseline_busy_share": base_clock.busy_share,
        "gpu_s": clock.busy_s,
        "baseline_gpu_s": base_clock.busy_s,
        "wall_s": clock.wall_s,
        "baseline_wall_s": base_clock.wall_s,
        "kernel_speedup": kernel_ratio,
        "launch_bound": clock.launch_bound,
    }
    if step and base_step:
        figures["speedup"] = base_step / step
    sentences = [busy_sentence(run, clock), busy_sentence(base, base_clock, first=False)]
    for who, its_clock in ((run, clock), (base, base_clock)):
        split = split_sentence(who, its_clock)
        if split:
            sentences.append(split)
    if clock.launch_bound:
        sentences.append(launch_bound_sentence(clock))
        issue = clock.wall_s  # c ~ wall while the GPU idles: the CPU's issue time per step
        predicted = predicted_speedup(issue, base_clock.busy_s, clock.busy_s)
        figures.update(issue_s=issue, predicted_speedup=predicted)
        if declared is not None:
            needed = declared * issue
            figures["baseline_gpu_s_needed"] = needed
            sentences.append(
                f"a launch-bound step takes about max(CPU issue time, GPU time): {precision} >= {declared:g}x "
                f"{base_precision} would need at least {_ms(needed)} of {base_precision} GPU time per step against "
                f"the {_ms(clock.wall_s)} wall; {_name(base)} has {_ms(base_clock.busy_s)}"
            )
        measured = f" (measured {figures['speedup']:.2f}x)" if "speedup" in figures else ""
        kernels = ""
        if kernel_ratio:
            kernels = f"; the kernels alone run {_faster(kernel_ratio)} in {precision} ({_ms(base_clock.busy_s)} vs "
            kernels += f"{_ms(clock.busy_s)} per step)"
            if kernel_ratio > 1:
                kernels += f": {precision} speeds up the GPU's work, and the launches hide it"
        sentences.append(
            f"predicted speedup max({issue * 1000:.3g}, {base_clock.busy_s * 1000:.3g}) / max({issue * 1000:.3g}, "
            f"{clock.busy_s * 1000:.3g}) ms = {predicted:.2f}x{measured}{kernels}"
        )
    elif kernel_ratio:
        sentences.append(
            f"the GPU sets the pace (busy {min(clock.busy_share, 1.0):.0%}): its kernels run {_faster(kernel_ratio)} "
            f"in {precision} than in {base_precision} ({_ms(clock.busy_s)} vs {_ms(base_clock.busy_s)} per step)"
        )
    for who in (run, base):
        facts = precision_facts_sentence(who)
        if facts:
            sentences.append(facts)
    for who in (run, base):
        figures.setdefault("mfu", {})[str(who.get("name", "run"))] = mfu(who).get("mfu")
        sentences.append(mfu_sentence(who))
    if clock.launch_bound:
        sentences += what_would_help(run, base, clock, base_clock, declared, precision, base_precision, figures)
    figures["sentences"] = sentences
    return figures


def what_would_help(
    run: Mapping[str, Any],
    base: Mapping[str, Any],
    clock: GpuClock,
    base_clock: GpuClock,
    declared: float | None,
    precision: str,
    base_precision: str,
    figures: dict[str, Any],
) -> list[str]:
    """Estimates, from the measurements, of what would let a launch-bound run show its speedup."""
    issue, sentences = clock.wall_s, []
    batch = _number(run.get("metrics", {}).get("global_batch_size"))
    room = issue / clock.busy_s if clock.busy_s else None
    if room and batch:
        figures["batch_room"] = room
        sentence = (
            f"estimate: a larger batch (train.batch_size) costs the CPU the same launches, so about {room:.2f}x the "
            f"batch ({room * batch:,.0f} samples per step instead of {batch:,.0f}) would fit in about the same "
            f"{_ms(issue)}"
        )
        if declared is not None:
            factor = batch_factor_needed(declared, issue, base_clock.busy_s, clock.busy_s)
            figures["batch_factor_needed"] = factor
            if factor is None:
                sentence += (
                    f"; but no batch reaches {declared:g}x: even when the kernels set the pace, {precision}'s are only "
                    f"{base_clock.busy_s / clock.busy_s:.2f}x faster"
                )
            elif factor > 1:
                sentence += (
                    f"; {precision} >= {declared:g}x needs about {factor:.2f}x ({factor * batch:,.0f} samples), where "
                    f"the kernels of {_name(base)} reach {_ms(declared * issue)} (kernel time in proportion to the "
                    "batch)"
                )
        sentences.append(sentence)
    implementation = run.get("observed", {}).get("optimizer_implementation")
    if implementation == "fused":
        sentences.append("the optimizer is already fused (its update in a few kernels, not a few per parameter)")
    elif implementation and clock.optimizer_launches and clock.launches:
        per_launch = issue / clock.launches
        figures["optimizer_issue_s"] = clock.optimizer_launches * per_launch
        sentences.append(
            f"a fused optimizer (train.optimizer.implementation: fused; this run's is {implementation}) issues its "
            f"update in a few kernels instead of {clock.optimizer_launches:,.0f} per step: at about "
            f"{per_launch * 1e6:.3g} µs of CPU per launch, up to {_ms(clock.optimizer_launches * per_launch)} less "
            "per step (estimate)"
        )
    figures["graph_speedup_limit"] = issue / clock.busy_s if clock.busy_s else None
    launches = f" ({clock.launches:,.0f} now)" if clock.launches else ""
    tf32 = ""
    if base_precision == "fp32":
        tf32 = f"; with a dynamo backend Accelerate also turns TF32 on for the {base_precision} run"
    sentences.append(
        "CUDA graphs or torch.compile would cut the CPU's part: a graph (torch.compile with mode='reduce-overhead') "
        f"replays the whole step at once, and compiling fuses kernels into fewer launches{launches}; the step could "
        f"approach its {_ms(clock.busy_s)} of kernels, up to {issue / clock.busy_s:.2f}x the steps per second "
        f"(estimate{tf32}). accel-run's built-in worker runs eagerly; a user script can compile"
    )
    return sentences
