"""The GPU Why on the real H200 result: a launch-bound bf16 step, its bound, MFU, and what would help.

tests/cases/gpu-h200 holds that result's summary.json and, apart (added.json), the step-floor
figures that run did not record (its README says where each comes from). The Why is recomputed
by today's code, as build_summary does, and rendered by the report's own renderer.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import ROOT
from runner.report.text import render
from runner.verdicts.gpu import (
    PEAKS,
    batch_factor_needed,
    explain_gpu_precision,
    find_peak,
    mfu,
    mfu_sentence,
    model_flops_per_step,
    predicted_speedup,
)
from runner.verdicts.why import UNFIT_NOTE, explain

H200 = ROOT / "tests" / "cases" / "gpu-h200"
PARAMS = 31_493_642  # train_large: 1024 -> 4096 -> 4096 -> 2560 -> 10


def h200_summary(*, added: bool = True) -> dict[str, Any]:
    """The H200 summary.json (with added.json's figures merged in), each Why recomputed."""
    summary: dict[str, Any] = json.loads((H200 / "summary.json").read_text())
    if added:
        for name, parts in json.loads((H200 / "added.json").read_text())["runs"].items():
            for key, values in parts.items():
                summary["runs"][name][key] = {**summary["runs"][name][key], **values}
    for expectation in summary["expectations"]:
        expectation["why"] = explain(expectation, summary["runs"], summary["environment"])
    return summary


def bf16_why(summary: dict[str, Any]) -> dict[str, Any]:
    (expectation,) = (e for e in summary["expectations"] if e["title"] == "bf16 >= 2x faster than fp32 (train_large)")
    assert expectation["verdict"] == "inconclusive" and expectation["cause"] == "unfit"  # 0.33 s timed: too short
    why: dict[str, Any] = expectation["why"]
    return why


H200_BF16_WHY = [
    UNFIT_NOTE,
    "the GPU was busy 33% of a step of 'large-bf16': 0.58 ms of kernels in a 1.77 ms step (whole steps after "
    "training: the profiler's kernel time against the synchronised wall)",
    "the GPU was busy 82% of a step of 'large-single': 1.48 ms of kernels in a 1.81 ms step",
    "the step is bound by launching kernels: the GPU idles 1.19 ms of each 1.77 ms step waiting for the CPU to issue "
    "work, so the step takes about the CPU's issue time whatever the kernels cost",
    "a launch-bound step takes about max(CPU issue time, GPU time): bf16 >= 2x fp32 would need at least 3.54 ms of "
    "fp32 GPU time per step against the 1.77 ms wall; 'large-single' has 1.48 ms",
    "predicted speedup max(1.77, 1.48) / max(1.77, 0.58) ms = 1.00x (measured 0.99x); the kernels alone run 2.55x "
    "faster in bf16 (1.48 ms vs 0.58 ms per step): bf16 speeds up the GPU's work, and the launches hide it",
    "'large-bf16' computed its first matmul in torch.bfloat16 (the dtype autocast gave its output)",
    "'large-single' ran its matmuls in true fp32 (float32 matmul precision 'highest', TF32 off: PyTorch's default, "
    "which Accelerate changes only with a dynamo backend)",
    "MFU of 'large-bf16': 2.8% of the NVIDIA H200's bf16 dense peak (989 TFLOP/s per GPU), from 6 x 31,493,642 "
    "parameters x 256 samples = 48.4 GFLOP per step in its 1.75 ms step: under 10%, so the GPU's arithmetic is not "
    "what limits this step",
    "MFU of 'large-single': 42% of the NVIDIA H200's fp32 (TF32 off) peak (67 TFLOP/s per GPU), from 6 x 31,493,642 "
    "parameters x 256 samples = 48.4 GFLOP per step in its 1.73 ms step",
    "estimate: a larger batch (train.batch_size) costs the CPU the same launches, so about 3.05x the batch (781 "
    "samples per step instead of 256) would fit in about the same 1.77 ms; bf16 >= 2x needs about 2.39x (612 "
    "samples), where the kernels of 'large-single' reach 3.54 ms (kernel time in proportion to the batch)",
    "the optimizer is already fused (its update in a few kernels, not a few per parameter)",
    "CUDA graphs or torch.compile would cut the CPU's part: a graph (torch.compile with mode='reduce-overhead') "
    "replays the whole step at once, and compiling fuses kernels into fewer launches; the step could approach its "
    "0.58 ms of kernels, up to 3.05x the steps per second (estimate; with a dynamo backend Accelerate also turns "
    "TF32 on for the fp32 run). accel-run's built-in worker runs eagerly; a user script can compile",
]


def test_the_h200_bf16_step_is_said_to_be_bound_by_launching_kernels() -> None:
    why = bf16_why(h200_summary())
    assert why["sentences"] == H200_BF16_WHY
    assert why["launch_bound"] is True
    assert why["busy_share"] == pytest.approx(0.58 / 1.77)
    assert why["predicted_speedup"] == pytest.approx(1.0)
    assert why["kernel_speedup"] == pytest.approx(1.48 / 0.58)
    assert why["baseline_gpu_s_needed"] == pytest.approx(2 * 0.00177)
    assert why["batch_factor_needed"] == pytest.approx(2 * 1.77 / 1.48)
    assert why["speedup"] == pytest.approx(1.728565 / 1.753814)  # the timed steps, unfit as they were


def test_the_report_renders_the_gpu_why_under_its_inconclusive_verdict() -> None:
    summary = h200_summary()
    markdown = render(summary, markdown=True)
    block = "\n".join(
        ["### bf16 >= 2x faster than fp32 (train_large) (inconclusive)", "", *(f"- {s}" for s in H200_BF16_WHY)]
    )
    assert block + "\n\n### bf16 peak memory <= 0.7x fp32 (train_large) (fail)" in markdown
    text = render(summary, markdown=False)
    assert "> bf16 >= 2x faster than fp32 (train_large) (inconclusive)\n  - " + UNFIT_NOTE + "\n" in text
    assert "\n  - " + H200_BF16_WHY[4] + "\n" in text


def test_without_the_second_clock_the_unfit_h200_verdict_still_gets_a_marked_why() -> None:
    # summary.json as the H200 session wrote it: no Why at all for the inconclusive bf16 speedup
    recorded = json.loads((H200 / "summary.json").read_text())
    assert [e["why"] for e in recorded["expectations"] if e["verdict"] == "inconclusive"] == [None]
    sentences = bf16_why(h200_summary(added=False))["sentences"]
    assert sentences[0] == UNFIT_NOTE
    assert sentences[-1].startswith("these runs have no GPU clock (an older accel-run")


def test_verdicts_resting_on_misleading_measurements_get_no_why() -> None:
    summary = h200_summary()
    (expectation,) = (e for e in summary["expectations"] if e["title"].startswith("bf16 >= 2x"))
    for cause in ("ceiling", "rss"):
        assert explain({**expectation, "cause": cause}, summary["runs"], summary["environment"]) is None


def test_mfu_is_model_flops_over_wall_over_the_peak_of_the_precision_that_ran() -> None:
    runs = h200_summary()["runs"]
    flops = 6 * PARAMS * 256
    assert model_flops_per_step(PARAMS, 256) == flops == pytest.approx(48.37e9, rel=1e-3)
    bf16 = mfu({**runs["large-bf16"], "name": "large-bf16"})
    assert bf16["mfu"] == pytest.approx(flops / 1.753814e-3 / 989e12)
    assert (bf16["peak_flops"], bf16["peak_precision"]) == (989e12, "bf16 dense")
    fp32 = runs["large-single"]
    assert mfu(fp32)["mfu"] == pytest.approx(flops / 1.728565e-3 / 67e12)  # true fp32: 67 TFLOP/s, no tensor cores
    tf32 = {**fp32, "observed": {**fp32["observed"], "cuda_matmul_allow_tf32": True}}
    assert (mfu(tf32)["peak_flops"], mfu(tf32)["peak_precision"]) == (
        494.5e12,
        "TF32 dense (fp32 matmuls allowed TF32)",
    )
    medium = {**fp32, "observed": {**fp32["observed"], "float32_matmul_precision": "medium"}}
    assert mfu(medium)["peak_flops"] == 989e12
    unrecorded = {
        **fp32,
        "observed": {k: v for k, v in fp32["observed"].items() if "tf32" not in k and "float32" not in k},
    }
    assert mfu(unrecorded)["peak_precision"] == "fp32 (TF32 not recorded; PyTorch's default, off, assumed)"


def test_mfu_counts_every_process_and_every_token() -> None:
    run = h200_summary()["runs"]["large-bf16"]
    two = {**run, "metrics": {**run["metrics"], "processes": 2, "global_batch_size": 512}}
    assert mfu(two)["mfu"] == pytest.approx(mfu(run)["mfu"])  # twice the samples on twice the GPUs in the same step
    # token data: tokens per sample from the two throughputs; the dense 6·N·tokens approximation
    tokens = {**run, "name": "lm", "metrics": {**run["metrics"], "samples_per_s": 1000.0, "tokens_per_s": 64000.0}}
    assert mfu(tokens)["model_flops_per_step"] == 6 * PARAMS * 256 * 64
    assert mfu_sentence(tokens) == (
        "MFU of 'lm': 178% of the NVIDIA H200's bf16 dense peak (989 TFLOP/s per GPU), from 6 x 31,493,642 "
        "parameters x 256 samples x 64 tokens = 3,096 GFLOP per step in its 1.75 ms step (the dense 6·N·tokens "
        "approximation)"
    )


def test_no_mfu_where_the_peak_is_unknown() -> None:
    run = h200_summary()["runs"]["large-bf16"]
    consumer = {**run, "name": "desk", "observed": {**run["observed"], "device_names": ["NVIDIA GeForce RTX 4090"]}}
    assert mfu_sentence(consumer) == (
        "'desk': no MFU: the peak FLOP/s of NVIDIA GeForce RTX 4090 is not in accel-run's table"
    )
    on_cpu = {**run, "name": "cpu", "observed": {**run["observed"], "device": "cpu"}}
    assert mfu_sentence(on_cpu) == "'cpu': no MFU: the run did not compute on a GPU"


@pytest.mark.parametrize(
    ("device", "bf16", "tf32", "fp32"),
    [
        ("NVIDIA H200", 989e12, 494.5e12, 67e12),
        ("NVIDIA H200 NVL", 835e12, 417.5e12, 60e12),
        ("NVIDIA H100 80GB HBM3", 989e12, 494.5e12, 67e12),
        ("NVIDIA H100 PCIe", 756e12, 378e12, 51e12),
        ("NVIDIA H100 NVL", 835e12, 417.5e12, 60e12),
        ("NVIDIA A100-SXM4-80GB", 312e12, 156e12, 19.5e12),
        ("NVIDIA L40S", 362e12, 183e12, 91.6e12),
    ],
)
def test_the_peak_table_matches_torch_device_names(device: str, bf16: float, tf32: float, fp32: float) -> None:
    peak = find_peak(device)
    assert peak is not None and (peak.bf16, peak.tf32, peak.fp32) == (bf16, tf32, fp32)
    assert "datasheet" in peak.source


def test_every_peak_names_its_source() -> None:
    assert all(peak.source.startswith("NVIDIA ") for peak in PEAKS)


def test_the_launch_bound_model() -> None:
    # wall ~ max(c, g): with c = 1.77 ms, fp32's 1.48 ms and bf16's 0.58 ms of kernels both hide behind it
    assert predicted_speedup(1.77, 1.48, 0.58) == pytest.approx(1.0)
    assert predicted_speedup(1.77, 3.54, 0.58) == pytest.approx(2.0)  # fp32 GPU time of 2c gives 2x
    # x times the batch: x g_B / max(c, x g_R); 2x needs x = 2 c / g_B, valid while 2 <= g_B / g_R
    factor = batch_factor_needed(2.0, 1.77, 1.48, 0.58)
    assert factor == pytest.approx(2.3919, abs=1e-4)
    assert factor is not None and predicted_speedup(1.77, factor * 1.48, factor * 0.58) == pytest.approx(2.0)
    assert batch_factor_needed(3.0, 1.77, 1.48, 0.58) is None  # the kernels alone are only 2.55x faster
    assert batch_factor_needed(1.5, 1.0, 2.0, 0.5) == 1.0  # already there: no larger batch needed


def clocked(name: str, precision: str, wall_ms: float, busy_ms: float, **extra: Any) -> dict[str, Any]:
    """A run on an H200 with a second clock (H200-shaped figures, not measured)."""
    return {
        "name": name,
        "metrics": {
            "step_time_ms": wall_ms,
            "global_batch_size": 256,
            "processes": 1,
            "params": PARAMS,
            "mixed_precision": precision,
        },
        "observed": {"device": "cuda", "device_names": ["NVIDIA H200"], "optimizer_implementation": "fused"},
        "attribution": {
            "device_clock": "cuda_kernels",
            "device_wall_s": wall_ms / 1000,
            "device_busy_s": busy_ms / 1000,
            **extra,
        },
    }


def test_a_gpu_bound_step_is_not_called_launch_bound() -> None:
    # a bigger batch: the GPU busy 95% of the fp32 step and 80% of the bf16 one
    run, base = clocked("big-bf16", "bf16", 5.0, 4.0), clocked("big", "no", 12.0, 11.4)
    why = explain_gpu_precision(run, base, 2.0, "bf16", "fp32")
    assert why is not None and why["launch_bound"] is False
    assert (
        "the GPU sets the pace (busy 80%): its kernels run 2.85x faster in bf16 than in fp32 (4 ms vs 11.4 ms per step)"
        in why["sentences"]
    )
    assert not any("launching kernels" in s or "CUDA graphs" in s for s in why["sentences"])
    # a GPU without fast bf16 (its kernels slower than fp32's): said as slower, not "0.50x faster"
    slow = explain_gpu_precision(
        clocked("old-bf16", "bf16", 9.0, 8.8), clocked("old", "no", 5.0, 4.4), 2.0, "bf16", "fp32"
    )
    assert slow is not None
    assert (
        "the GPU sets the pace (busy 98%): its kernels run 2.00x slower in bf16 than in fp32 (8.8 ms vs 4.4 ms per "
        "step)" in slow["sentences"]
    )


def test_a_foreach_optimizer_is_priced_in_launches() -> None:
    # H200-shaped, not measured: 60 launches per step of which AdamW (foreach) issues 24
    split = {f"device_{c}_s": v for c, v in (("matmul", 3e-4), ("cast", 1.3e-4), ("optimizer", 1.5e-4))}
    split |= {"device_communication_s": 0.0, "device_other_s": 1e-4}
    run = clocked(
        "bf16", "bf16", 3.0, 0.68, device_launches_per_step=60, device_optimizer_launches_per_step=24, **split
    )
    run["observed"]["optimizer_implementation"] = "foreach"
    base = clocked("fp32", "no", 3.0, 1.9)
    why = explain_gpu_precision(run, base, None, "bf16", "fp32")
    assert why is not None
    assert why["sentences"][0] == (
        "the GPU was busy 23% of a step of 'bf16': 0.68 ms of kernels in a 3 ms step, 60 kernels per step (whole "
        "steps after training: the profiler's kernel time against the synchronised wall)"
    )
    assert (
        "GPU time per step of 'bf16' by kind: matmul 0.3 ms, cast 0.13 ms, optimizer 0.15 ms, other 0.1 ms"
        in (why["sentences"])
    )
    assert (
        "a fused optimizer (train.optimizer.implementation: fused; this run's is foreach) issues its update in a few "
        "kernels instead of 24 per step: at about 50 µs of CPU per launch, up to 1.2 ms less per step (estimate)"
        in why["sentences"]
    )
    assert why["optimizer_issue_s"] == pytest.approx(0.0012)


def test_other_timing_whys_on_a_gpu_carry_the_busy_share() -> None:
    # two runs at the same precision: the Why splits their steps and adds the second clock's figures
    run, base = clocked("b512", "bf16", 1.9, 1.1), clocked("b256", "bf16", 1.77, 0.58)
    run["metrics"]["global_batch_size"] = 512
    for r in (run, base):
        r["attribution"].update(accumulation=1, compute_s=0.001, data_s=0.0001, optimizer_s=0.0002, sync_s=0.0)
    expectation = {"kind": "speedup", "verdict": "fail", "runs": ["b512", "b256"], "at_least": 2.0, "cause": ""}
    why = explain(expectation, {"b512": run, "b256": base}, {})
    assert why is not None
    assert why["sentences"][2:] == [
        "the GPU was busy 58% of a step of 'b512': 1.1 ms of kernels in a 1.9 ms step (whole steps after training: "
        "the profiler's kernel time against the synchronised wall)",
        "the GPU was busy 33% of a step of 'b256': 0.58 ms of kernels in a 1.77 ms step",
    ]
