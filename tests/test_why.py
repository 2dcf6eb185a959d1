"""The Why arithmetic: scaling efficiency, communication share, the compute a declared speedup needs."""

from __future__ import annotations

import pytest

from runner.why import explain_precision, explain_processes


def run(step_ms: float, batch: int, processes: int, **probe: float) -> dict:  # type: ignore[type-arg]
    return {
        "metrics": {"step_time_ms": step_ms, "global_batch_size": batch, "processes": processes, "startup_s": 5.0},
        "attribution": {"accumulation": 1, **probe},
        "declared": {"device": "cuda", "processes": processes},
    }


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


def test_mixed_precision_is_capped_by_the_matmul_share() -> None:
    fp32 = run(10.0, 64, 1, compute_s=0.008, matmul_share=0.6)
    bf16 = run(8.0, 64, 1, compute_s=0.0064, matmul_share=0.45, cast_share=0.12)
    why = explain_precision(bf16, fp32, declared=2.0)
    assert why["amdahl_cap"] == pytest.approx(2.5)
    assert why["compute_speedup"] == pytest.approx(1.25)
    assert any("12% of" in s for s in why["sentences"])
