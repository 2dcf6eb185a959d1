"""On a GPU machine (skipped elsewhere): the seed's Day 6 comparison on 1 and all GPUs, fp32 and bf16.

`make gpu-check` runs these with the report printed: one command for a session lent a GPU
machine for a few minutes. They check what only a GPU can show: the launch used CUDA (NCCL with
several GPUs), bf16 computed in bf16, memory is the CUDA allocator's peak, and replicas stayed
in sync.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (this machine has none)"),
]


def day6_on_gpus(gpus: int) -> str:
    multi = f"""
  all-gpus:
    description: {gpus} processes, one per GPU
    launch: {{processes: {gpus}}}
  all-gpus-bf16:
    launch: {{processes: {gpus}, mixed_precision: bf16}}"""
    return f"""\
name: gpu-check
description: Day 6 on this machine's GPUs - 1 and {gpus} GPU(s), fp32 and bf16
model: {{kind: mlp, input_dim: 1024, hidden: [4096, 4096, 2560], classes: 10}}
data: {{kind: synthetic-classification, samples: 32768, features: 1024, classes: 10}}
train: {{epochs: 2, batch_size: 256}}
launch: {{device: cuda, processes: 1, timeout_s: 300}}
measure: {{max_repeats: 3, max_time_s: 240}}
baseline: single
runs:
  single: {{}}
  single-bf16:
    launch: {{mixed_precision: bf16}}{multi if gpus > 1 else ""}
expect:
  - {{kind: speedup, title: bf16 >= 1.3x faster than fp32 on one GPU, run: single-bf16, baseline: single,
     at_least: 1.3}}
  - {{kind: ratio, title: bf16 peak memory <= 1.0x fp32, run: single-bf16, baseline: single,
     metric: peak_memory_mb, at_most: 1.0}}
""" + (
        f"""  - {{kind: speedup, title: {gpus} GPUs >= {0.8 * gpus:g}x faster than 1, run: all-gpus, baseline: single,
     at_least: {0.8 * gpus:g}}}
  - {{kind: close, run: all-gpus, baseline: single, metric: final_loss, rel_tol: 0.05}}
"""
        if gpus > 1
        else ""
    )


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("gpu")
    spec = base / "gpu-check.yaml"
    spec.write_text(day6_on_gpus(torch.cuda.device_count()))
    done = run_cli(str(spec), "--output", str(base / "results"), "--no-progress", timeout=1200)
    print(done.stdout)  # the report, for the person who ran `make gpu-check`
    print(done.stderr[-4000:])
    (folder,) = (base / "results" / "gpu-check").iterdir()
    return {"done": done, "summary": json.loads((folder / "summary.json").read_text()), "folder": folder}


def test_the_runs_used_cuda_and_the_declared_precision(result: dict[str, Any]) -> None:
    runs = result["summary"]["runs"]
    assert all(run["status"] == "ok" for run in runs.values()), result["done"].stderr
    for name, run in runs.items():
        assert run["observed"]["device"] == "cuda", name
        assert run["metrics"]["peak_memory_source"] == "training_peak", name
        m = run["metrics"]
        parts = sum(m[f"memory_{part}_mb"] for part in ("parameters", "gradients", "optimizer", "activations"))
        assert m["peak_memory_mb"] == pytest.approx(parts, abs=5e-4), name  # measured by the CUDA allocator's figures
        for launch in run["repeats"]:  # its own peak over training holds the data set, resident on the GPU, too
            top = max(launch["ranks"], key=lambda rank: rank["peak_memory_mb"])
            assert top["allocator_peak_mb"] >= top["peak_memory_mb"] + top["memory_data_mb"] - 0.5, name
    assert runs["single-bf16"]["observed"]["compute_dtype"] == "torch.bfloat16"
    assert runs["single"]["observed"]["compute_dtype"] == "torch.float32"


def test_several_gpus_form_an_nccl_group_with_synchronised_replicas(result: dict[str, Any]) -> None:
    runs = result["summary"]["runs"]
    if "all-gpus" not in runs:
        pytest.skip("one GPU: no multi-GPU group to check")
    observed = runs["all-gpus"]["observed"]
    assert observed["distributed_type"] == "MULTI_GPU"
    assert observed["backend"] == "nccl"
    assert len(set(observed["param_hashes"])) == 1


def test_every_expectation_got_a_verdict_and_the_report_was_written(result: dict[str, Any]) -> None:
    verdicts = [e["verdict"] for e in result["summary"]["expectations"]]
    assert verdicts and "error" not in verdicts
    # the point of timing in blocks: a short GPU run decides (on the H200 every launch was "too short")
    speedups = [e for e in result["summary"]["expectations"] if e["kind"] == "speedup"]
    assert all(e["verdict"] in ("pass", "fail") for e in speedups), [e["message"] for e in speedups]
    for name, run in result["summary"]["runs"].items():
        assert all(r["metrics"]["timed_blocks"] >= 10 for r in run["repeats"] if r["status"] == "ok"), name
    assert result["done"].returncode in (0, 1)  # 1: an expectation failed or is inconclusive, a result
    assert Path(result["folder"] / "report.md").is_file()
