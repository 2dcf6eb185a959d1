"""The Why: scaling efficiency, communication share, the compute a declared speedup needs, what bf16 can
win on this CPU, and what a peak-memory ratio measures."""

from __future__ import annotations

from typing import Any

import pytest

from runner.plan.machine import Machine, cpu_facts, parse_cpuinfo
from runner.verdicts.why import NO_GPU_CLOCK, explain, explain_memory, explain_precision, explain_processes

# /proc/cpuinfo lines as these CPUs write them (flags shortened to the neighbourhood of the bf16 ones).
EPYC_GENOA = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512dq avx512_bf16 avx512vl avx512_vnni vaes
"""
XEON_NO_BF16 = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu vme sse sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl
processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu vme sse sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl
"""
SAPPHIRE_RAPIDS = """model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8 avx_vnni
"""
GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid sve bf16 i8mm
CPU implementer\t: 0x41
"""


def run(step_ms: float, batch: int, processes: int, **probe: float) -> dict[str, Any]:
    return {
        "metrics": {"step_time_ms": step_ms, "global_batch_size": batch, "processes": processes, "startup_s": 5.0},
        "attribution": {"accumulation": 1, **probe},
        "declared": {"device": "cuda", "processes": processes},
    }


def precision_pair(device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One process: fp32 computes in 8 ms per step of 10 ms; bf16 computes 3x slower (a CPU without bf16)."""
    fp32 = run(10.0, 64, 1, compute_s=0.008, matmul_share=0.6)
    bf16 = run(26.0, 64, 1, compute_s=0.024, matmul_share=0.7, cast_share=0.2)
    for r, precision in ((fp32, "no"), (bf16, "bf16")):
        r["metrics"].update(mixed_precision=precision, params=1000)
        r["declared"]["device"] = device
        r["observed"] = {"device": device}
    return {**bf16, "name": "bf16"}, {**fp32, "name": "fp32"}


def test_communication_share_and_the_compute_needed_for_the_declared_speedup() -> None:
    # baseline: 10 ms per step of 64 samples. Two processes, 128 samples per step in 8 ms, of which
    # 3 ms all-reduce and 5 ms compute (the same per-sample compute as the baseline).
    base = run(10.0, 64, 1, compute_s=0.010, sync_s=0.0, data_s=0.0, optimizer_s=0.0)
    dual = run(8.0, 128, 2, compute_s=0.005, sync_s=0.003, data_s=0.0, optimizer_s=0.0)
    why = explain_processes(dual, base, declared=1.8, cores=None)
    assert why["speedup"] == pytest.approx(2.5)  # (10/64) / (8/128)
    assert why["scaling_efficiency"] == pytest.approx(1.25)
    assert why["communication_share"] == pytest.approx(3 / 8)
    assert why["speedup_without_communication"] == pytest.approx(2 * 10 / 5)
    # Already faster than declared: no "needs more compute" estimate below 1x.
    assert why["compute_factor_needed"] == pytest.approx(1.8 * 3 / (20 - 1.8 * 5))
    assert not any("more compute per step" in s for s in why["sentences"])


def test_what_if_more_compute() -> None:
    base = run(10.0, 64, 1, compute_s=0.010, sync_s=0.0, data_s=0.0, optimizer_s=0.0)
    dual = run(14.0, 128, 2, compute_s=0.010, sync_s=0.004, data_s=0.0, optimizer_s=0.0)
    why = explain_processes(dual, base, declared=1.8, cores=None)
    # speedup(x) = 2 * x * 10 / (x * 10 + 4) = 1.8  ->  x = 1.8 * 4 / (20 - 18) = 3.6
    assert why["speedup"] == pytest.approx(20 / 14)
    assert why["compute_factor_needed"] == pytest.approx(3.6)
    assert any("about 3.6x more compute per step" in s for s in why["sentences"])


def test_shared_cores_make_the_declared_speedup_unreachable() -> None:
    base = run(10.0, 64, 1, compute_s=0.010, sync_s=0.0, data_s=0.0, optimizer_s=0.0)
    cpu_dual = run(24.0, 128, 2, compute_s=0.020, sync_s=0.004, data_s=0.0, optimizer_s=0.0)
    cpu_dual["declared"]["device"] = "cpu"
    why = explain_processes(cpu_dual, base, declared=1.8, cores=2)
    assert why["compute_slowdown_per_process"] == pytest.approx(2.0)
    assert why["speedup_without_communication"] == pytest.approx(1.0)
    assert why["compute_factor_needed"] is None
    assert any("share 2 CPU cores" in s for s in why["sentences"])
    assert any("stay below 1.00x" in s for s in why["sentences"])


def test_one_cap_and_why_the_whole_step_caps_below_forward_backward() -> None:
    """Two caps without a word on why the second is lower read as a contradiction: the Why gives one, and why."""
    base = run(10.0, 64, 1, compute_s=0.008, sync_s=0.0, data_s=0.0005, optimizer_s=0.0015)  # no 'other'
    cpu_dual = run(24.0, 128, 2, compute_s=0.016, sync_s=0.002, data_s=0.001, optimizer_s=0.002)  # 'other' 3 ms
    cpu_dual["declared"]["device"] = "cpu"
    why = explain_processes({**cpu_dual, "name": "dual"}, {**base, "name": "single"}, declared=1.8, cores=2)
    # forward+backward alone: 2x slower per sample, a cap of 2 / 2 = 1.00x; the whole step but communication:
    # 22 ms for 128 samples against 10 ms for 64, a cap of 2 x 10 / 22 = 0.91x, the one the verdict is given
    assert why["speedup_without_communication"] == pytest.approx(20 / 22)
    assert why["speedup_cap"] == pytest.approx(20 / 22)
    assert why["sentences"][3] == (
        "each process computes 2.00x slower per sample than the baseline's process (the 2 processes share 2 CPU "
        "cores), which alone caps the speedup at 1.00x"
    )
    assert why["sentences"][4] == (
        "even with free communication and a much larger model the speedup would stay below 0.91x, short of the "
        "declared 1.8x: the work of each process, not the communication, is the limit; it is lower than the 1.00x of "
        "forward+backward alone because the rest of the step costs 'dual' more per sample than 'single' too (other "
        "23.4 µs vs 0 µs per sample; other: waiting for the slower rank, Python, DDP bookkeeping), and a larger "
        "model grows those with the compute in this estimate"
    )
    # where the whole step's cap is above forward+backward's, forward+backward's is the one given
    lean = run(21.0, 128, 2, compute_s=0.016, sync_s=0.002, data_s=0.001, optimizer_s=0.002)
    lean["declared"]["device"] = "cpu"
    why = explain_processes({**lean, "name": "dual"}, {**base, "name": "single"}, declared=1.8, cores=2)
    assert why["speedup_without_communication"] == pytest.approx(20 / 19)
    assert why["speedup_cap"] == pytest.approx(1.0)
    assert why["sentences"][4] == (
        "even with free communication and a much larger model the speedup would stay below 1.00x, short of the "
        "declared 1.8x: the work of each process, not the communication, is the limit"
    )


def test_the_cores_come_from_the_environment() -> None:
    base = run(10.0, 64, 1, compute_s=0.010, sync_s=0.0, data_s=0.0, optimizer_s=0.0)
    cpu_dual = run(24.0, 128, 2, compute_s=0.020, sync_s=0.004, data_s=0.0, optimizer_s=0.0)
    cpu_dual["declared"]["device"] = "cpu"
    expectation = {"kind": "speedup", "verdict": "fail", "runs": ["dual", "single"], "at_least": 1.8}
    why = explain(expectation, {"dual": cpu_dual, "single": base}, {"cpu_count": 2})
    assert why is not None
    assert (
        "each process computes 2.00x slower per sample than the baseline's process (the 2 processes share 2 CPU "
        "cores), which alone caps the speedup at 1.00x" in why["sentences"]
    )


def test_mixed_precision_is_capped_by_the_matmul_share_of_the_whole_step() -> None:
    fp32 = run(10.0, 64, 1, compute_s=0.008, matmul_share=0.6)
    bf16 = run(8.0, 64, 1, compute_s=0.0064, matmul_share=0.45, cast_share=0.12)
    fp32["metrics"]["mixed_precision"], bf16["metrics"]["mixed_precision"] = "no", "bf16"
    why = explain_precision({**bf16, "name": "bf16"}, {**fp32, "name": "single"}, declared=2.0)
    # matmuls: 60% of 8 ms = 4.8 ms of a 10 ms step; 5.2 ms stay -> 10 / 5.2
    assert why["amdahl_cap"] == pytest.approx(10 / 5.2)
    assert why["amdahl_cap_compute"] == pytest.approx(2.5)
    assert why["compute_speedup"] == pytest.approx(1.25)
    assert why["sentences"] == [
        "in 'single' (fp32) matrix multiplications are 60% of forward+backward, 4.8 ms of its 10 ms step; the other "
        "5.2 ms stay, so even infinitely fast bf16 matmuls would cap the speedup at 1.92x (2.50x for "
        "forward+backward alone)",
        "forward+backward measured 1.25x faster in bf16 than in fp32 (6.4 ms vs 8 ms per micro-batch)",
        "estimate from the profiled shares: matrix multiplications take about 2.88 ms per micro-batch in bf16 vs "
        "4.8 ms in fp32 (1.67x faster)",
        "dtype casts (autocast copying weights and activations) take 12% of the bf16 run's forward+backward",
        "the declared 2x exceeds that cap: it is out of reach for this model on this device",
    ]


def test_a_cpu_without_bf16_flags_is_named_as_such() -> None:
    bf16, fp32 = precision_pair("cpu")
    model, flags = parse_cpuinfo(XEON_NO_BF16)
    why = explain_precision(bf16, fp32, 2.0, {"cpu_model": model, "cpu_bf16_flags": list(flags)})
    assert why["sentences"][1] == (
        "this CPU (Intel(R) Xeon(R) Processor) has no native bf16 instructions: /proc/cpuinfo lists neither "
        "avx512_bf16 nor amx_bf16, so bf16 matmuls run through conversions to fp32; forward+backward measured "
        "3.00x slower in bf16 than in fp32 (24 ms vs 8 ms per micro-batch)"
    )


def test_a_cpu_with_avx512_bf16_is_not_called_emulated() -> None:
    # The AMD EPYC case: native bf16 dot products, and bf16 still measured slower for this model.
    bf16, fp32 = precision_pair("cpu")
    model, flags = parse_cpuinfo(EPYC_GENOA)
    why = explain_precision(bf16, fp32, 2.0, Machine(2, 0, cpu_model=model, cpu_bf16_flags=flags).as_json())
    assert why["sentences"][1] == (
        "this CPU (AMD EPYC 9654 96-Core Processor) has native bf16 instructions (avx512_bf16 in /proc/cpuinfo), "
        "and forward+backward measured 3.00x slower in bf16 than in fp32 (24 ms vs 8 ms per micro-batch)"
    )
    assert not any("no native" in s or "conversions" in s for s in why["sentences"])


def test_a_cpu_with_amx_names_its_dot_product_flags_and_the_measured_gain() -> None:
    bf16, fp32 = precision_pair("cpu")
    bf16["attribution"]["compute_s"] = 0.004  # 2x faster forward+backward
    model, flags = parse_cpuinfo(SAPPHIRE_RAPIDS)
    why = explain_precision(bf16, fp32, 2.0, {"cpu_model": model, "cpu_bf16_flags": flags})
    assert why["sentences"][1] == (
        "this CPU (Intel(R) Xeon(R) Platinum 8480+) has native bf16 instructions (avx512_bf16, amx_bf16 in "
        "/proc/cpuinfo), and forward+backward measured 2.00x faster in bf16 than in fp32 (4 ms vs 8 ms per "
        "micro-batch)"
    )


def test_an_arm_cpu_reads_its_features_line() -> None:
    bf16, fp32 = precision_pair("cpu")
    model, flags = parse_cpuinfo(GRAVITON3)
    assert (model, flags) == ("", ("bf16",))
    env = {"cpu_model": model, "cpu_bf16_flags": flags, "platform": "Linux-6.1-aarch64-with-glibc2.36"}
    why = explain_precision(bf16, fp32, 2.0, env)
    assert why["sentences"][1].startswith("this CPU has native bf16 instructions (bf16 in /proc/cpuinfo), and ")


def test_an_old_summary_without_cpu_flags_says_the_capability_is_unknown() -> None:
    bf16, fp32 = precision_pair("cpu")
    old_environment = {"cpu_count": 2, "cuda_devices": [], "cuda_bf16": False}
    expectation = {"kind": "speedup", "verdict": "fail", "runs": ["bf16", "fp32"], "at_least": 2.0}
    why = explain(expectation, {"bf16": bf16, "fp32": fp32}, old_environment)
    assert why is not None
    assert why["sentences"][1] == (
        "whether this CPU has native bf16 instructions is unknown: this summary.json does not record "
        "/proc/cpuinfo's flags (an older accel-run wrote it); forward+backward measured 3.00x slower in bf16 than "
        "in fp32 (24 ms vs 8 ms per micro-batch)"
    )
    unreadable = explain_precision(bf16, fp32, 2.0, {"cpu_bf16_flags": None})
    assert unreadable["sentences"][1].startswith(
        "whether this CPU has native bf16 instructions is unknown: /proc/cpuinfo could not be read; "
    )


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    assert parse_cpuinfo(EPYC_GENOA) == ("AMD EPYC 9654 96-Core Processor", ("avx512_bf16",))
    assert parse_cpuinfo(XEON_NO_BF16) == ("Intel(R) Xeon(R) Processor", ())
    assert parse_cpuinfo(SAPPHIRE_RAPIDS)[1] == ("avx512_bf16", "amx_bf16", "amx_tile")
    assert cpu_facts("/nonexistent/cpuinfo")[1] is None
    environment = Machine(2, 0, cpu_model="AMD EPYC 9654 96-Core Processor", cpu_bf16_flags=("avx512_bf16",)).as_json()
    assert (environment["cpu_model"], environment["cpu_bf16_flags"]) == (
        "AMD EPYC 9654 96-Core Processor",
        ("avx512_bf16",),
    )


def test_comparing_two_multi_process_runs_includes_their_communication() -> None:
    dual = run(10.0, 64, 2, compute_s=0.004, sync_s=0.003, matmul_share=0.5)
    dual_bf16 = run(9.0, 64, 2, compute_s=0.0032, sync_s=0.003, matmul_share=0.4, cast_share=0.1)
    dual["metrics"].update(mixed_precision="no", params=1_000_000)
    dual_bf16["metrics"].update(mixed_precision="bf16", params=1_000_000)
    expectation = {"kind": "speedup", "verdict": "fail", "runs": ["dual-bf16", "dual"], "at_least": 1.5}
    why = explain(expectation, {"dual-bf16": dual_bf16, "dual": dual}, {"cpu_count": 16, "cuda_bf16": True})
    assert why is not None
    assert why["amdahl_cap"] == pytest.approx(10 / 8)  # 2 ms of matmuls in a 10 ms step; 3 ms all-reduce stays
    assert why["sentences"] == [
        "in 'dual' (fp32) matrix multiplications are 50% of forward+backward, 2 ms of its 10 ms step; the other "
        "8 ms (communication 3 ms among them) stay, so even infinitely fast bf16 matmuls would cap the speedup at "
        "1.25x (2.00x for forward+backward alone)",
        "forward+backward measured 1.25x faster in bf16 than in fp32 (3.2 ms vs 4 ms per micro-batch)",
        "estimate from the profiled shares: matrix multiplications take about 1.28 ms per micro-batch in bf16 vs "
        "2 ms in fp32 (1.56x faster)",
        "dtype casts (autocast copying weights and activations) take 10% of the bf16 run's forward+backward",
        "communication (the gradient all-reduce) per optimizer step: 'dual-bf16' 3 ms (33% of its 9 ms step), "
        "'dual' 3 ms (30% of 10 ms)",
        "bf16 does not shorten it: under Accelerate's autocast the parameters and their gradients stay fp32, so "
        "each step all-reduces the same volume in both runs (the gradients of 1,000,000 parameters, 3.81 MB)",
        "the declared 1.5x exceeds that cap: it is out of reach for this model on this device",
    ]


def memory_run(peak: float, precision: str, starts: list[list[tuple[float, float]]]) -> dict[str, Any]:
    """A run whose repeats' ranks had (peak_memory_mb, rss_at_start_mb)."""
    return {
        "metrics": {
            "peak_memory_mb": peak,
            "peak_memory_source": "peak_rss",
            "params": 10_000_000,
            "mixed_precision": precision,
            "global_batch_size": 256,
            "processes": len(starts[0]),
        },
        "repeats": [
            {"status": "ok", "ranks": [{"peak_memory_mb": p, "rss_at_start_mb": s} for p, s in ranks]}
            for ranks in starts
        ],
    }


def test_a_peak_rss_ratio_is_explained_by_the_runtime_and_the_fp32_state() -> None:
    # The rank with the highest peak started at 300 MB in every repeat; the other rank's 350 MB is not it.
    bf16 = memory_run(900.0, "bf16", [[(900.0, 300.0), (880.0, 350.0)], [(890.0, 300.0), (895.0, 300.0)]])
    fp32 = memory_run(1000.0, "no", [[(1000.0, 300.0), (990.0, 350.0)], [(1000.0, 300.0), (999.0, 350.0)]])
    expectation = {
        "kind": "ratio",
        "verdict": "fail",
        "runs": ["large-bf16", "large-single"],
        "metric": "peak_memory_mb",
        "at_most": 0.7,
    }
    why = explain(expectation, {"large-bf16": bf16, "large-single": fp32}, {"cpu_count": 2})
    assert why is not None
    assert why["added_ratio"] == pytest.approx(600 / 700)
    assert why["fp32_state_mb"] == pytest.approx(10_000_000 * 16 / 2**20)
    assert why["sentences"] == [
        "peak memory of 'large-bf16' is 900 MB vs 1,000 MB for 'large-single' (0.90x), measured as peak RSS (the "
        "process's resident memory: Python, torch's libraries and every buffer, not only tensors)",
        "on CPU peak RSS includes what was resident before training began (Python, torch and its libraries, the "
        "process group): 300 MB in 'large-bf16' and 300 MB in 'large-single', 30% of the baseline's peak; a "
        "constant both runs carry pulls the ratio towards 1x, so the ratio of RSS understates any saving",
        "what data, model and training added on top is 600 MB vs 700 MB (0.86x)",
        "under autocast the weights, gradients and optimizer state stay fp32 in both runs: 10,000,000 parameters x "
        "4 bytes x (1 weight + 1 gradient + 2 Adam moments) = 153 MB that bf16 does not shrink; only activations "
        "are kept in bf16, and autocast holds a bf16 copy of the weights (19 MB) during each step",
        "estimate: even if everything else in the peak of 'large-single' (547 MB: activations, data, buffers) took "
        "half the memory, the bf16 peak would be about 745 MB, 0.75x of fp32's (optimistic: the data stays fp32)",
        "the declared <= 0.7x is below that estimate: out of reach for this model under autocast",
    ]


def test_a_gpu_allocator_peak_has_no_runtime_in_it() -> None:
    bf16 = memory_run(900.0, "bf16", [[(900.0, 300.0)]])
    fp32 = memory_run(1000.0, "no", [[(1000.0, 300.0)]])
    for r in (bf16, fp32):
        r["metrics"]["peak_memory_source"] = "cuda_allocator_peak"
    why = explain_memory({**bf16, "name": "bf16"}, {**fp32, "name": "fp32"}, None, 0.7)
    assert not any("resident before training" in s for s in why["sentences"])
    # fixed = 153 MB of fp32 state; (1000 - 152.6) / 2 + 152.6 + 19.1 = 595
    assert why["best_ratio_estimate"] == pytest.approx((152.588 + 19.073 + (1000 - 152.588) / 2) / 1000, abs=1e-4)
    assert why["sentences"][-1] == (
        "estimate: even if everything else in the peak of 'fp32' (847 MB: activations, data, buffers) took half "
        "the memory, the bf16 peak would be about 595 MB, 0.60x of fp32's (optimistic: the data stays fp32)"
    )


def test_peak_memory_measured_two_ways_is_not_compared() -> None:
    bf16 = memory_run(300.0, "bf16", [[(300.0, 0.0)]])
    fp32 = memory_run(1000.0, "no", [[(1000.0, 300.0)]])
    bf16["metrics"]["peak_memory_source"] = "tensor_peak"
    why = explain_memory({**bf16, "name": "bf16"}, {**fp32, "name": "fp32"}, None, 0.7)
    assert why["sentences"] == [
        "peak memory of 'bf16' is 300 MB vs 1,000 MB for 'fp32' (0.30x), measured as the peak of live CPU tensor "
        "memory (tensors only, no runtime)",
        "the two runs measured peak memory differently ('tensor_peak' vs 'peak_rss'): the ratio compares unlike "
        "quantities",
    ]


def parts(activations: float, precision: str) -> dict[str, Any]:
    """A run with its memory measured by part (MB): 262,144 parameters (1 MiB), AdamW, a 5 MB data set."""
    metrics = {
        "memory_parameters_mb": 1.0,
        "memory_gradients_mb": 1.0,
        "memory_optimizer_mb": 2.0,
        "memory_activations_mb": activations,
        "memory_data_mb": 5.0,
        "peak_memory_mb": 4.0 + activations,
        "peak_memory_source": "training_peak",
        "mixed_precision": precision,
        "params": 262_144,
        "processes": 1,
    }
    return {"metrics": metrics}


def test_a_memory_why_names_the_parts_and_reconciles_its_estimate_with_the_measurement() -> None:
    bf16, fp32 = {**parts(3.0, "bf16"), "name": "bf16"}, {**parts(4.0, "no"), "name": "fp32"}
    why = explain_memory(bf16, fp32, at_least=None, at_most=0.7)
    assert why["sentences"] == [
        "peak memory of 'bf16' is 7 MB vs 8 MB for 'fp32' (0.88x), measured as training memory at the peak of one "
        "training step (parameters, gradients, optimizer state and activations, measured by part; the data set kept "
        "in memory is not counted)",
        "by part, 'bf16' vs 'fp32': parameters 1 MB vs 1 MB, gradients 1 MB vs 1 MB, optimizer state 2 MB vs 2 MB, "
        "activations 3 MB vs 4 MB",
        "not counted: the data set kept in memory, 5 MB in 'bf16' and 5 MB in 'fp32' (a real job streams its "
        "batches); counted, it would pull the ratio to 0.92x",
        "the training state (parameters, gradients, optimizer state) is 4 MB in both, so the 1 MB less is all "
        "activations (0.75x)",
        "estimate: autocast keeps the training state fp32 (the same 4 MB), halves the activations at best and adds a "
        "bf16 copy of the weights (0.5 MB): activations of about 2.5 MB, a peak of 0.81x; measured 0.88x, with "
        "activations of 3 MB: the estimate and the measurement part in the activations, 0.5 MB more than estimated",
        "the declared <= 0.7x is below that estimate: out of reach for this model under autocast",
    ]
    assert (why["best_ratio_estimate"], why["ratio_with_data"]) == (pytest.approx(6.5 / 8), pytest.approx(12 / 13))
    # a bound below what the training state alone holds is out of reach whatever the activations do
    floor = explain_memory(bf16, fp32, at_least=None, at_most=0.4)["sentences"]
    assert (
        "even with no activations at all, 'bf16' holds its training state, 4 MB, 0.50x the peak of 'fp32': the "
        "declared <= 0.4x is out of reach without a smaller training state (fewer parameters, or an optimizer that "
        "keeps less)" in floor
    )


def test_a_step_time_ratio_gets_the_timing_why_with_its_bound_as_a_speedup() -> None:
    bf16, fp32 = precision_pair("cuda")
    expectation = {"kind": "ratio", "verdict": "fail", "runs": ["bf16", "fp32"], "metric": "step_time_ms"}
    why = explain({**expectation, "at_most": 0.4}, {"bf16": bf16, "fp32": fp32}, {"cuda_bf16": False})
    assert why is not None
    assert (
        why["sentences"][0]
        == "a step_time_ms ratio <= 0.4x is a throughput speedup >= 2.5x (at the same global batch of 64)"
    )
    assert (
        why["sentences"][2]
        == "forward+backward measured 3.00x slower in bf16 than in fp32 (24 ms vs 8 ms per micro-batch)"
    )
    assert why["sentences"][3] == "this GPU reports no native bf16 (torch.cuda.is_bf16_supported() was false)"
    assert (
        why["sentences"][-2] == "the declared 2.5x exceeds that cap: it is out of reach for this model on this device"
    )
    # measured on a GPU without the second clock: the host-side figures are said to be such
    assert why["sentences"][-1] == NO_GPU_CLOCK


def test_only_failed_or_inconclusive_timing_and_memory_expectations_get_a_why() -> None:
    bf16, fp32 = precision_pair("cuda")
    runs = {"bf16": bf16, "fp32": fp32}
    ratio = {"kind": "ratio", "verdict": "fail", "runs": ["bf16", "fp32"]}
    assert explain({**ratio, "metric": "final_loss", "at_most": 1.0}, runs, {}) is None
    assert explain({**ratio, "verdict": "pass", "metric": "step_time_ms", "at_most": 1.0}, runs, {}) is None
    assert explain({**ratio, "metric": "samples_per_s", "at_least": 1.5}, runs, {}) is not None


def test_a_script_run_has_no_step_split_and_the_why_says_attribution_is_for_built_in_runs() -> None:
    # as summary.json holds a script's runs: timings and processes, an empty attribution, workload "script"
    single, dual = run(10.0, 64, 1), run(12.0, 64, 2)
    for record in (single, dual):
        record.update(attribution={}, workload="script")
    speedup = {"kind": "speedup", "verdict": "fail", "runs": ["dual", "single"], "at_least": 1.5}
    why = explain(speedup, {"dual": dual, "single": single}, {"cpu_count": 2})
    assert why == {
        "sentences": [
            "no step split (compute, communication, data, optimizer): attribution is measured for built-in runs "
            "only, and 'dual' and 'single' run your own script, whose steps accel-run times but cannot take apart"
        ]
    }
    # one process count, one precision: no split of zeros either
    same = {**speedup, "runs": ["again", "single"]}
    why = explain(same, {"again": {**single}, "single": single}, {})
    assert why is not None and why["sentences"][0].startswith("no step split ")
    # a built-in run without a probe keeps its own reason
    builtin = {**speedup}
    why = explain(builtin, {"dual": {**dual, "workload": "builtin"}, "single": {**single, "workload": "builtin"}}, {})
    assert why == {"sentences": ["no attribution was measured (measure.attribution: false, or a run failed)"]}
