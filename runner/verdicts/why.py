"""The "Why" of a missed speedup or ratio, from measurements: where each step's time (or memory) went.

Pure arithmetic on the per-step attribution the worker measured (compute under no_sync, the
extra time of a synchronised step, data, optimizer, the profiler's matmul and cast shares), on
measured step times and peak memory, and on the machine's recorded facts (summary.json's
"environment": cores, the CPU's bf16 flags from /proc/cpuinfo). Estimates are labelled as such:
they assume time or memory scales the way the models below say, nothing more.

Model for processes (a run R with N processes against a baseline B):
  per-sample time t = step time / global batch; speedup = t_B / t_R (throughput ratio)
  R's step = compute + communication + data + optimizer + other (waiting, Python, launch glue)
  If per-step compute grew by a factor x (a bigger model or batch) and communication stayed:
      speedup(x) = (G_R / G_B) * x * T_B / (x * (T_R - comm) + comm)
  so the declared speedup S needs x = S * comm / ((G_R/G_B) * T_B - S * (T_R - comm)), and is out
  of reach even for x -> infinity when (G_R/G_B) * T_B / (T_R - comm) < S (the processes compute
  slower than the single one, as when they share the same CPU cores).

Model for precision (Amdahl): lower precision speeds up at best the baseline's matrix
multiplications, M = matmul share x forward+backward per step. The rest of the step (other
compute, communication, data, optimizer) stays, so the speedup is capped at T_B / (T_B - M).
Communication stays for a reason worth saying: under Accelerate's autocast the parameters, and
so the gradients the all-reduce moves, are fp32 in both runs.

Model for memory: the peak is training state (parameters, gradients, optimizer state) plus
activations, each measured (runner.worker.memory), the resident data set apart. Under autocast the
training state stays fp32; at best the activations halve, and autocast adds a low-precision copy of
the weights (parameters x 2 bytes). The estimate and the measurement are compared part by part, so
the gap between them is located. Older results without parts: weights, gradients and Adam's two
moments at 4 bytes a parameter, and on CPU peak RSS also carries the runtime that was resident
before training began.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from runner.metrics import MEMORY_METRICS, MEMORY_PART_METRICS, MIB, SPEED_METRICS
from runner.results.entries import with_unfit
from runner.verdicts.gpu import explain_gpu_precision, gpu_notes
from runner.verdicts.why_comm import communication_sentence
from runner.verdicts.why_settings import differs as settings_differ
from runner.verdicts.why_settings import explain_compute_settings
from runner.vocab import Outcome, precision_name

# The /proc/cpuinfo flags that give a CPU native bf16 arithmetic (dot products), by architecture;
# avx_ne_convert and amx_tile alone are conversions and tile registers, not bf16 matmuls.
NATIVE_BF16 = {"x86": ("avx512_bf16", "amx_bf16"), "arm": ("bf16",)}
_SOURCES = {
    "peak_rss": "peak RSS (the process's resident memory: Python, torch's libraries and every buffer, not only "
    "tensors)",
    "cuda_allocator_peak": "the CUDA allocator's peak (tensors only; the CUDA context and cached free blocks are "
    "not counted)",
    "tensor_peak": "the peak of live CPU tensor memory (tensors only, no runtime)",
    "training_peak": "training memory at the peak of one training step (parameters, gradients, optimizer state and "
    "activations, measured by part; the data set kept in memory is not counted)",
}
# metrics.json's memory parts (runner.metrics' MEMORY_PART_METRICS) but the data, in the order the Why names them
MEMORY_PARTS = (
    ("memory_parameters_mb", "parameters"),
    ("memory_gradients_mb", "gradients"),
    ("memory_optimizer_mb", "optimizer state"),
    ("memory_activations_mb", "activations"),
)
NO_ATTRIBUTION = "no attribution was measured (measure.attribution: false, or a run failed)"
NO_GPU_CLOCK = (
    "these runs have no GPU clock (an older accel-run, or the profiler could not trace the GPU): the times above "
    "are synchronised host-side timings, which on a GPU include the CPU's time to issue the kernels"
)
UNFIT_NOTE = (
    "no verdict: the timed parts were unfit to decide (the message above says why); what the runs measured all the "
    "same, as an indication"
)


def no_attribution(run: dict[str, Any], base: dict[str, Any]) -> str:
    """Why a Why has no step split: a user script (attribution is the built-in worker's), or none was measured."""
    scripts = [f"'{r.get('name', 'run')}'" for r in (run, base) if r.get("workload") == "script"]
    if not scripts:
        return NO_ATTRIBUTION
    return (
        "no step split (compute, communication, data, optimizer): attribution is measured for built-in runs only, "
        f"and {' and '.join(scripts)} {'runs' if len(scripts) == 1 else 'run'} your own script, whose steps accel-run "
        "times but cannot take apart"
    )


def step_seconds(run: dict[str, Any]) -> float | None:
    value = run.get("metrics", {}).get("step_time_ms")
    return value / 1000 if isinstance(value, int | float) and value > 0 else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def step_parts(run: dict[str, Any], step: float) -> dict[str, float]:
    """Seconds per optimizer step by phase, from the run's attribution probe."""
    probe = run.get("attribution") or {}
    accumulation = probe.get("accumulation", 1) or 1
    parts = {
        "compute": accumulation * float(probe.get("compute_s", 0.0)),
        "communication": float(probe.get("sync_s", 0.0)),
        "data": accumulation * float(probe.get("data_s", 0.0)),
        "optimizer": float(probe.get("optimizer_s", 0.0)),
    }
    parts["other"] = max(0.0, step - sum(parts.values()))
    return parts


def _split_sentence(name: str, step: float, parts: dict[str, float]) -> str:
    items = ", ".join(f"{k} {v * 1000:.3g} ms ({v / step:.0%})" for k, v in parts.items())
    return f"per optimizer step of '{name}' ({step * 1000:.3g} ms): {items}"


# Each explain_* keeps its sentences next to the figures they quote: long, but read top to bottom.
def explain_processes(
    run: dict[str, Any], base: dict[str, Any], declared: float | None, cores: int | None
) -> dict[str, Any]:
    """Figures and sentences for a speedup of a multi-process run over a baseline with fewer processes."""
    t_run, t_base = step_seconds(run), step_seconds(base)
    if t_run is None or t_base is None or not run.get("attribution") or not base.get("attribution"):
        return {"sentences": [no_attribution(run, base)]}
    g_run = run["metrics"]["global_batch_size"]
    g_base = base["metrics"]["global_batch_size"]
    n_run, n_base = run["metrics"]["processes"], base["metrics"]["processes"]
    speedup = (t_base / g_base) / (t_run / g_run)
    ideal = n_run / n_base
    parts = step_parts(run, t_run)
    base_parts = step_parts(base, t_base)
    comm = parts["communication"]
    per_process_batch_run = g_run / n_run
    per_process_batch_base = g_base / n_base
    compute_per_sample_run = parts["compute"] / per_process_batch_run
    compute_per_sample_base = base_parts["compute"] / per_process_batch_base if base_parts["compute"] else None
    slowdown = compute_per_sample_run / compute_per_sample_base if compute_per_sample_base else None
    scale = g_run / g_base
    no_comm_limit = scale * t_base / (t_run - comm) if t_run > comm else None
    figures: dict[str, Any] = {
        "speedup": speedup,
        "ideal_speedup": ideal,
        "scaling_efficiency": speedup / ideal,
        "step_time_s": t_run,
        "baseline_step_time_s": t_base,
        "parts_s": parts,
        "communication_share": comm / t_run,
        "compute_slowdown_per_process": slowdown,
        "speedup_without_communication": no_comm_limit,
        "startup_s": run["metrics"].get("startup_s"),
        "baseline_startup_s": base["metrics"].get("startup_s"),
    }
    sentences = [
        f"speedup {speedup:.2f}x of an ideal {ideal:.0f}x: scaling efficiency {speedup / ideal:.0%}",
        _split_sentence(run.get("name", "run"), t_run, parts),
        communication_sentence(run, comm, t_run),
    ]
    compute_cap = None
    if slowdown is not None and slowdown > 1.15:
        compute_cap = ideal / slowdown
        cause = (
            f" (the {n_run} processes share {cores} CPU cores)"
            if cores and run.get("declared", {}).get("device") == "cpu"
            else ""
        )
        sentences.append(
            f"each process computes {slowdown:.2f}x slower per sample than the baseline's process{cause}, "
            f"which alone caps the speedup at {compute_cap:.2f}x"
        )
    # One cap, not two: the what-if's (the whole step but communication) and forward+backward's, the lower
    # of them, with why they differ when the what-if's is lower.
    cap = min(no_comm_limit, compute_cap) if no_comm_limit is not None and compute_cap else no_comm_limit
    figures["speedup_cap"] = cap
    if declared is not None and cap is not None:
        figures["declared_speedup"] = declared
        if cap <= declared:
            sentences.append(
                f"even with free communication and a much larger model the speedup would stay below {cap:.2f}x, "
                f"short of the declared {declared:.3g}x: the work of each process, not the communication, is the "
                "limit" + _rest_of_step(run, base, parts, base_parts, compute_cap, cap)
            )
            figures["compute_factor_needed"] = None
        else:
            denominator = scale * t_base - declared * (t_run - comm)
            factor = declared * comm / denominator if denominator > 0 else None
            figures["compute_factor_needed"] = factor
            if factor is not None and factor > 1:
                sentences.append(
                    f"estimate: with this communication cost, {declared:.3g}x needs about {factor:.1f}x more compute "
                    f"per step (a larger model or per-process batch) than this run has"
                )
    startup_run, startup_base = run["metrics"].get("startup_s"), base["metrics"].get("startup_s")
    if isinstance(startup_run, int | float) and isinstance(startup_base, int | float):
        sentences.append(
            f"start-up (launch to first step) costs {startup_run:.1f} s here vs {startup_base:.1f} s for the baseline, "
            f"against {run['metrics'].get('train_time_s', 0):.2f} s of training"
        )
    figures["sentences"] = sentences
    return figures


def _rest_of_step(
    run: dict[str, Any],
    base: dict[str, Any],
    parts: dict[str, float],
    base_parts: dict[str, float],
    compute_cap: float | None,
    cap: float,
) -> str:
    """Why the whole step's cap lies below forward+backward's: what else costs the run more per sample."""
    if compute_cap is None or cap >= compute_cap * 0.995:
        return ""
    g_run, g_base = run["metrics"]["global_batch_size"], base["metrics"]["global_batch_size"]
    costlier = [
        f"{part} {parts[part] / g_run * 1e6:.3g} µs vs {base_parts[part] / g_base * 1e6:.3g} µs"
        for part in ("data", "optimizer", "other")
        if parts[part] / g_run > base_parts[part] / g_base
    ]
    if not costlier:
        return ""
    return (
        f"; it is lower than the {compute_cap:.2f}x of forward+backward alone because the rest of the step costs "
        f"'{run.get('name', 'run')}' more per sample than '{base.get('name', 'baseline')}' too ("
        + ", ".join(costlier)
        + " per sample; other: waiting for the slower rank, Python, DDP bookkeeping), and a larger model grows "
        "those with the compute in this estimate"
    )


def _device(run: dict[str, Any]) -> str | None:
    """Where the run computed: what the worker observed, else what was declared."""
    observed = run.get("observed", {}).get("device")
    return str(observed) if observed else run.get("declared", {}).get("device")


def _faster(ratio: float) -> str:
    """1.25 -> '1.25x faster', 0.8 -> '1.25x slower'."""
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


def cpu_bf16_sentence(environment: Mapping[str, Any], measured: str) -> str:
    """What this CPU offers bf16, as /proc/cpuinfo recorded it in the environment, then `measured`."""
    if "cpu_bf16_flags" not in environment:
        return (
            "whether this CPU has native bf16 instructions is unknown: this summary.json does not record "
            f"/proc/cpuinfo's flags (an older accel-run wrote it); {measured}"
        )
    flags = environment["cpu_bf16_flags"]
    if flags is None:
        return f"whether this CPU has native bf16 instructions is unknown: /proc/cpuinfo could not be read; {measured}"
    model = environment.get("cpu_model") or ""
    cpu = f"this CPU ({model})" if model else "this CPU"
    arch = "arm" if any(a in str(environment.get("platform", "")) for a in ("aarch64", "arm64")) else "x86"
    native = [flag for flag in flags if flag in NATIVE_BF16[arch]]
    if native:
        return f"{cpu} has native bf16 instructions ({', '.join(native)} in /proc/cpuinfo), and {measured}"
    wanted = " nor ".join(NATIVE_BF16[arch])
    others = f"lists {', '.join(flags)} but neither {wanted}" if flags else f"lists neither {wanted}"
    if arch == "arm":
        others = "lacks bf16 in its Features"
    return (
        f"{cpu} has no native bf16 instructions: /proc/cpuinfo {others}, so bf16 matmuls run through "
        f"conversions to fp32; {measured}"
    )


# See explain_processes: sentences beside their figures.
def explain_precision(
    run: dict[str, Any],
    base: dict[str, Any],
    declared: float | None,
    environment: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Figures and sentences for a mixed-precision run against a full-precision (or other) baseline."""
    environment = environment or {}
    precision = precision_name(run.get("metrics", {}).get("mixed_precision", "?"))
    base_precision = precision_name(base.get("metrics", {}).get("mixed_precision", "?"))
    gpu = explain_gpu_precision(run, base, declared, precision, base_precision) if _device(run) == "cuda" else None
    if gpu is not None:  # the GPU's own clock says more than host-side timings of a launch-bound step
        if "bf16" in (precision, base_precision) and environment.get("cuda_bf16") is False:
            gpu["sentences"].insert(0, "this GPU reports no native bf16 (torch.cuda.is_bf16_supported() was false)")
        return gpu
    t_run, t_base = step_seconds(run), step_seconds(base)
    probe_run, probe_base = run.get("attribution") or {}, base.get("attribution") or {}
    if t_run is None or t_base is None or "matmul_share" not in probe_base or "compute_s" not in probe_run:
        return {"sentences": [no_attribution(run, base)]}
    matmul = float(probe_base["matmul_share"])
    compute_base = float(probe_base.get("compute_s", 0.0))
    compute_run = float(probe_run["compute_s"])
    matmul_step = min(t_base, matmul * compute_base * (probe_base.get("accumulation", 1) or 1))
    rest = t_base - matmul_step
    cap = t_base / rest if rest > 0 else float("inf")
    compute_cap = 1 / (1 - matmul) if matmul < 1 else float("inf")
    compute_speedup = compute_base / compute_run if compute_run and compute_base else None
    comm_run, comm_base = float(probe_run.get("sync_s", 0.0)), float(probe_base.get("sync_s", 0.0))
    multi = max(run["metrics"].get("processes", 1), base["metrics"].get("processes", 1)) > 1
    figures: dict[str, Any] = {
        "speedup": t_base / t_run,
        "baseline_matmul_share": matmul,
        "matmul_share": probe_run.get("matmul_share"),
        "cast_share": probe_run.get("cast_share"),
        "compute_speedup": compute_speedup,
        "amdahl_cap": cap,
        "amdahl_cap_compute": compute_cap,
        "communication_s": comm_run,
        "baseline_communication_s": comm_base,
    }
    sentences = []
    if base_precision == "fp32" and precision != "fp32":
        among = f" (communication {comm_base * 1000:.3g} ms among them)" if multi else ""
        base_name = base.get("name", "baseline")
        named = f"'{base_name}'" if base_name == base_precision else f"'{base_name}' ({base_precision})"
        sentences.append(
            f"in {named} matrix multiplications are {matmul:.0%} of "
            f"forward+backward, {matmul_step * 1000:.3g} ms of its {t_base * 1000:.3g} ms step; the other "
            f"{rest * 1000:.3g} ms{among} stay, so even infinitely fast {precision} matmuls would cap the speedup at "
            f"{cap:.2f}x ({compute_cap:.2f}x for forward+backward alone)"
        )
    measured = ""
    if compute_speedup is not None:
        measured = (
            f"forward+backward measured {_faster(compute_speedup)} in {precision} than in {base_precision} "
            f"({compute_run * 1000:.3g} ms vs {compute_base * 1000:.3g} ms per micro-batch)"
        )
    device = _device(run)
    if device == "cpu" and "bf16" in (precision, base_precision):
        sentences.append(cpu_bf16_sentence(environment, measured or "forward+backward was not measured"))
    elif measured:
        sentences.append(measured)
        if device == "cuda" and "bf16" in (precision, base_precision) and environment.get("cuda_bf16") is False:
            sentences.append("this GPU reports no native bf16 (torch.cuda.is_bf16_supported() was false)")
    if isinstance(probe_run.get("matmul_share"), int | float) and compute_run and compute_base and matmul:
        run_mm, base_mm = float(probe_run["matmul_share"]) * compute_run, matmul * compute_base
        figures["matmul_speedup"] = base_mm / run_mm if run_mm else None
        if run_mm:
            sentences.append(
                f"estimate from the profiled shares: matrix multiplications take about {run_mm * 1000:.3g} ms per "
                f"micro-batch in {precision} vs {base_mm * 1000:.3g} ms in {base_precision} "
                f"({_faster(base_mm / run_mm)})"
            )
    if probe_run.get("cast_share"):
        sentences.append(
            f"dtype casts (autocast copying weights and activations) take {float(probe_run['cast_share']):.0%} of "
            f"the {precision} run's forward+backward"
        )
    if multi:
        sentences.append(
            "communication (the gradient all-reduce) per optimizer step: "
            f"'{run.get('name', 'run')}' {comm_run * 1000:.3g} ms ({comm_run / t_run:.0%} of its "
            f"{t_run * 1000:.3g} ms step), '{base.get('name', 'baseline')}' {comm_base * 1000:.3g} ms "
            f"({comm_base / t_base:.0%} of {t_base * 1000:.3g} ms)"
        )
        params = _number(run["metrics"].get("params"))
        volume = f" (the gradients of {int(params):,} parameters, {params * 4 / MIB:.3g} MB)" if params else ""
        sentences.append(
            f"{precision} does not shorten it: under Accelerate's autocast the parameters and their gradients stay "
            f"fp32, so each step all-reduces the same volume in both runs{volume}"
        )
    if declared is not None and base_precision == "fp32" and declared > cap:
        sentences.append(
            f"the declared {declared:.3g}x exceeds that cap: it is out of reach for this model on this device"
        )
    if run.get("observed", {}).get("device") == "cuda":  # measured on a GPU, without the second clock
        sentences.append(NO_GPU_CLOCK)
    figures["sentences"] = sentences
    return figures


def _rss_at_start(run: dict[str, Any]) -> float | None:
    """Resident MB before training, of the rank with the highest peak, median over the ok repeats."""
    values = []
    for repeat in run.get("repeats", []):
        ranks = [r for r in repeat.get("ranks") or [] if _number(r.get("rss_at_start_mb")) is not None]
        if repeat.get("status", "ok") != "ok" or not ranks:
            continue
        top = max(ranks, key=lambda r: _number(r.get("peak_memory_mb")) or 0.0)
        values.append(float(top["rss_at_start_mb"]))
    return statistics.median(values) if values else None


def _mb(value: float) -> str:
    return f"{value:,.0f} MB" if value >= 10 else f"{value:.3g} MB"


# See explain_processes: sentences beside their figures.
def explain_memory(
    run: dict[str, Any], base: dict[str, Any], at_least: float | None, at_most: float | None
) -> dict[str, Any]:
    """Figures and sentences for a ratio of peak memory: what the measure includes and what cannot shrink."""
    m_run, m_base = _number(run["metrics"].get("peak_memory_mb")), _number(base["metrics"].get("peak_memory_mb"))
    if not m_run or not m_base:
        return {"sentences": ["no peak memory was measured"]}
    name, base_name = run.get("name", "run"), base.get("name", "baseline")
    source, base_source = run["metrics"].get("peak_memory_source"), base["metrics"].get("peak_memory_source")
    figures: dict[str, Any] = {"ratio": m_run / m_base, "peak_memory_mb": m_run, "baseline_peak_memory_mb": m_base}
    described = _SOURCES.get(str(source), f"'{source}'")
    sentences = [
        f"peak memory of '{name}' is {_mb(m_run)} vs {_mb(m_base)} for '{base_name}' ({m_run / m_base:.2f}x), "
        f"measured as {described}"
    ]
    if source != base_source:
        sentences.append(
            f"the two runs measured peak memory differently ('{source}' vs '{base_source}'): the ratio compares "
            "unlike quantities"
        )
        figures["sentences"] = sentences
        return figures
    run_parts, base_parts = _memory_parts(run), _memory_parts(base)
    if run_parts is not None and base_parts is not None:
        figures.update(parts_mb=run_parts, baseline_parts_mb=base_parts)
        sentences += _memory_part_sentences(run, base, run_parts, base_parts, at_most, figures)
        figures["sentences"] = sentences
        return figures
    resident = 0.0
    if source == "peak_rss":
        start_run, start_base = _rss_at_start(run), _rss_at_start(base)
        if start_run is not None and start_base is not None:
            resident = start_base
            added_run, added_base = m_run - start_run, m_base - start_base
            figures.update(rss_at_start_mb=start_run, baseline_rss_at_start_mb=start_base)
            sentences.append(
                f"on CPU peak RSS includes what was resident before training began (Python, torch and its libraries, "
                f"the process group): {_mb(start_run)} in '{name}' and {_mb(start_base)} in '{base_name}', "
                f"{start_base / m_base:.0%} of the baseline's peak; a constant both runs carry pulls the ratio "
                "towards 1x, so the ratio of RSS understates any saving"
            )
            if added_base > 0:
                figures["added_ratio"] = added_run / added_base
                sentences.append(
                    f"what data, model and training added on top is {_mb(added_run)} vs {_mb(added_base)} "
                    f"({added_run / added_base:.2f}x)"
                )
    processes = run["metrics"].get("processes", 1), base["metrics"].get("processes", 1)
    if processes[0] != processes[1]:
        sentences.append(
            "peak_memory_mb is the largest of the ranks' peaks: each process holds its own full copy of the "
            "weights, gradients and optimizer state"
        )
    precisions = run["metrics"].get("mixed_precision"), base["metrics"].get("mixed_precision")
    params = _number(run["metrics"].get("params"))
    if precisions[0] != precisions[1] and "no" in precisions and params:
        low = precision_name(precisions[0] if precisions[1] == "no" else precisions[1])
        state = params * 4 * 4 / MIB
        copy = params * 2 / MIB
        figures.update(fp32_state_mb=state, autocast_weight_copy_mb=copy)
        sentences.append(
            f"under autocast the weights, gradients and optimizer state stay fp32 in both runs: {int(params):,} "
            f"parameters x 4 bytes x (1 weight + 1 gradient + 2 Adam moments) = {_mb(state)} that {low} does not "
            f"shrink; only activations are kept in {low}, and autocast holds a {low} copy of the weights "
            f"({_mb(copy)}) during each step"
        )
        fixed = resident + state
        if precisions[1] == "no" and m_base > fixed:
            best = fixed + copy + (m_base - fixed) / 2
            figures["best_ratio_estimate"] = best / m_base
            sentences.append(
                f"estimate: even if everything else in the peak of '{base_name}' ({_mb(m_base - fixed)}: activations, "
                f"data, buffers) took half the memory, the {low} peak would be about {_mb(best)}, "
                f"{best / m_base:.2f}x of {precision_name('no')}'s (optimistic: the data stays fp32)"
            )
            if at_most is not None and at_most < best / m_base:
                sentences.append(
                    f"the declared <= {at_most:g}x is below that estimate: out of reach for this model under autocast"
                )
    figures["sentences"] = sentences
    return figures


def _memory_parts(run: dict[str, Any]) -> dict[str, float] | None:
    """The run's measured memory parts in MB (parameters, gradients, optimizer, activations, data), if recorded."""
    metrics = run.get("metrics", {})
    values = {key: _number(metrics.get(key)) for key in MEMORY_PART_METRICS}
    if any(value is None for value in values.values()):
        return None
    return {key.removeprefix("memory_").removesuffix("_mb"): float(value or 0.0) for key, value in values.items()}


def _state(parts: dict[str, float]) -> float:
    """Training state: parameters, gradients and optimizer state."""
    return parts["parameters"] + parts["gradients"] + parts["optimizer"]


def _memory_part_sentences(
    run: dict[str, Any],
    base: dict[str, Any],
    parts: dict[str, float],
    base_parts: dict[str, float],
    at_most: float | None,
    figures: dict[str, Any],
) -> list[str]:
    """The peak by part in both runs, where they differ, the floor the training state sets, and the estimate."""
    name, base_name = run.get("name", "run"), base.get("name", "baseline")
    peak, base_peak = _state(parts) + parts["activations"], _state(base_parts) + base_parts["activations"]
    listed = ", ".join(
        f"{label} {_mb(parts[key.removeprefix('memory_').removesuffix('_mb')])} vs "
        f"{_mb(base_parts[key.removeprefix('memory_').removesuffix('_mb')])}"
        for key, label in MEMORY_PARTS
    )
    sentences = [f"by part, '{name}' vs '{base_name}': {listed}"]
    data, base_data = parts["data"], base_parts["data"]
    if data or base_data:
        with_data = (peak + data) / (base_peak + base_data)
        figures["ratio_with_data"] = with_data
        sentences.append(
            f"not counted: the data set kept in memory, {_mb(data)} in '{name}' and {_mb(base_data)} in "
            f"'{base_name}' (a real job streams its batches); counted, it would pull the ratio to {with_data:.2f}x"
        )
    state, base_state = _state(parts), _state(base_parts)
    same_state = abs(state - base_state) <= 0.01 * base_state
    change = peak - base_peak
    where = (
        f"the training state (parameters, gradients, optimizer state) is {_mb(state)} in both, so the "
        f"{_mb(abs(change))} {'less' if change < 0 else 'more'} is all activations "
        f"({parts['activations'] / base_parts['activations']:.2f}x)"
        if same_state and base_parts["activations"]
        else f"the training state is {_mb(state)} vs {_mb(base_state)}, the activations {_mb(parts['activations'])} "
        f"vs {_mb(base_parts['activations'])}"
    )
    sentences.append(where)
    if run["metrics"].get("processes", 1) != base["metrics"].get("processes", 1):
        sentences.append(
            "peak_memory_mb is the rank with the highest peak: each process holds its own full training state "
            "(and, on CPU, DDP's gradient buckets, resident from the start, are not counted)"
        )
    floor = state / base_peak
    figures["state_floor_ratio"] = floor
    floored = at_most is not None and floor > at_most
    if floored:
        sentences.append(
            f"even with no activations at all, '{name}' holds its training state, {_mb(state)}, {floor:.2f}x the "
            f"peak of '{base_name}': the declared <= {at_most:g}x is out of reach without a smaller training state "
            "(fewer parameters, or an optimizer that keeps less)"
        )
    precisions = run["metrics"].get("mixed_precision"), base["metrics"].get("mixed_precision")
    params = _number(run["metrics"].get("params"))
    if precisions[1] == "no" and precisions[0] in ("bf16", "fp16") and params:
        low = precision_name(precisions[0])
        copy = params * 2 / MIB
        activations = base_parts["activations"] / 2 + copy
        estimate = (base_state + activations) / base_peak
        figures.update(autocast_weight_copy_mb=copy, activations_estimate_mb=activations, best_ratio_estimate=estimate)
        gap = parts["activations"] - activations
        state_gap = "" if same_state else f", and in the training state ({_mb(state)} vs {_mb(base_state)})"
        sentences.append(
            f"estimate: autocast keeps the training state fp32 (the same {_mb(base_state)}), halves the activations "
            f"at best and adds a {low} copy of the weights ({_mb(copy)}): activations of about {_mb(activations)}, "
            f"a peak of {estimate:.2f}x; measured {peak / base_peak:.2f}x, with activations of "
            f"{_mb(parts['activations'])}: the estimate and the measurement part in the activations, "
            f"{_mb(abs(gap))} {'more' if gap > 0 else 'less'} than estimated{state_gap}"
        )
        if at_most is not None and at_most < estimate and not floored:  # the floor said it already
            sentences.append(
                f"the declared <= {at_most:g}x is below that estimate: out of reach for this model under autocast"
            )
    return sentences


def _ratio_as_speedup(
    expectation: dict[str, Any], run: dict[str, Any], base: dict[str, Any]
) -> tuple[float | None, str | None]:
    """A timing ratio's bound as the throughput speedup the timing Why compares with, and a note saying so."""
    metric = expectation.get("metric")
    at_least, at_most = _number(expectation.get("at_least")), _number(expectation.get("at_most"))
    if metric == "samples_per_s" and at_least is not None:
        return at_least, None  # a throughput ratio is the speedup itself
    if metric == "tokens_per_s" and at_least is not None and _seq_len(run) == _seq_len(base):
        return at_least, None  # so is a token throughput ratio, at equal tokens per sample
    if metric == "step_time_ms" and at_most:
        g_run, g_base = (
            _number(run["metrics"].get("global_batch_size")),
            _number(base["metrics"].get("global_batch_size")),
        )
        if g_run and g_base:
            speedup = (g_run / g_base) / at_most
            batches = (
                f"at the same global batch of {int(g_run)}"
                if g_run == g_base
                else f"with global batches of {int(g_run)} vs {int(g_base)}"
            )
            return (
                speedup,
                f"a step_time_ms ratio <= {at_most:g}x is a throughput speedup >= {speedup:.3g}x ({batches})",
            )
    return None, None


def _seq_len(run: dict[str, Any]) -> float | None:
    """Tokens per sample of a token-data run (tokens/s over samples/s), None for other data."""
    tokens, samples = _number(run["metrics"].get("tokens_per_s")), _number(run["metrics"].get("samples_per_s"))
    return round(tokens / samples) if tokens and samples else None


def explain(
    expectation: dict[str, Any], runs: dict[str, dict[str, Any]], environment: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The Why of a failed or inconclusive speedup or ratio (None when there is nothing to explain).

    An inconclusive verdict whose timings were unfit (too short, disturbed) still has measurements:
    its Why gives them, under a first sentence saying they did not decide. One resting on
    measurements known to mislead (beyond the physical ceiling, peak RSS) gets none: its message
    says why. `environment` is summary.json's: cpu_count and the CPU's bf16 flags (absent in old
    summaries, which the sentences then call unknown).
    """
    kind, metric = expectation.get("kind"), expectation.get("metric") or "samples_per_s"
    if expectation.get("verdict") not in (Outcome.FAIL, Outcome.INCONCLUSIVE) or kind not in ("speedup", "ratio"):
        return None
    cause = expectation.get("cause") or ""
    if cause not in ("", "unfit"):
        return None
    if kind == "ratio" and metric not in SPEED_METRICS | MEMORY_METRICS:
        return None
    name, base_name = expectation["runs"]
    run, base = runs.get(name), runs.get(base_name)
    if not run or not base or not run.get("metrics") or not base.get("metrics"):
        return None
    run, base = {**run, "name": name}, {**base, "name": base_name}
    if cause == "unfit":  # what the unfit repeats measured, marked as such by UNFIT_NOTE below
        run, base = with_unfit(run), with_unfit(base)
    if kind == "ratio" and metric in MEMORY_METRICS:
        return explain_memory(run, base, _number(expectation.get("at_least")), _number(expectation.get("at_most")))
    declared, note = (
        (_declared_bound(expectation), None) if kind == "speedup" else _ratio_as_speedup(expectation, run, base)
    )
    why = _explain_timing(run, base, declared, environment)
    if why is not None and note:
        why["sentences"].insert(0, note)
    if why is not None and cause == "unfit":
        why["sentences"].insert(0, UNFIT_NOTE)
    return why


def _explain_timing(
    run: dict[str, Any], base: dict[str, Any], declared: float | None, environment: Mapping[str, Any]
) -> dict[str, Any] | None:
    if run["metrics"].get("processes", 1) != base["metrics"].get("processes", 1):
        cores = environment.get("cpu_count")
        why = explain_processes(run, base, declared, cores if isinstance(cores, int) else None)
        why["sentences"] += gpu_notes(run, base)
        return why
    if run["metrics"].get("mixed_precision") != base["metrics"].get("mixed_precision"):
        return explain_precision(run, base, declared, environment)
    if settings_differ(run, base):
        found = explain_compute_settings(run, base)
        if found is not None:
            return found
    t_run, t_base = step_seconds(run), step_seconds(base)
    if t_run is None or t_base is None:
        return None
    if not run.get("attribution") or not base.get("attribution"):  # a split of zeros would say nothing true
        return {"sentences": [no_attribution(run, base)]}
    return {
        "sentences": [
            _split_sentence(run["name"], t_run, step_parts(run, t_run)),
            _split_sentence(base["name"], t_base, step_parts(base, t_base)),
            *gpu_notes(run, base),
        ]
    }


def _declared_bound(expectation: dict[str, Any]) -> float | None:
    """The speedup the user declared (at_least of a speedup expectation)."""
    bound = expectation.get("at_least")
    return float(bound) if isinstance(bound, int | float) else None
