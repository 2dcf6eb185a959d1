"""The knobs an Accelerate user turns after "why is bf16 not faster?": torch.compile, the optimizer's
kernels, TF32. Each is declared in the spec, compiled into the Accelerate config or the worker,
checked as declared = observed, shown by --explain and in the report, and explained by the Why.

FSDP has its own tests (tests/test_fsdp.py here, tests/test_gpu_fsdp.py on a GPU): Accelerate runs no
FSDP on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from accelerate.commands.config.config_args import load_config_from_file

from conftest import ROOT, run_cli
from runner.contract import Declared, Observed
from runner.plan.compile import compile_launch, declared_of
from runner.plan.machine import Machine
from runner.plan.preflight import preflight
from runner.report.explain import compute_lines
from runner.report.text import render, settings_table
from runner.spec.advice import confounded
from runner.spec.validate import require_valid, validate_text
from runner.verdicts.conformance import mismatches
from runner.verdicts.why import explain

CPU_BOX = Machine(cpu_count=2, memory_bytes=16 << 30, launcher=("accelerate", "launch"))
GPU_BOX = Machine(cpu_count=16, memory_bytes=128 << 30, cuda_devices=("NVIDIA H200",), cuda_bf16=True)
EXAMPLE = ROOT / "examples" / "compile.yaml"
RECORDED = ROOT / "tests" / "cases" / "summaries" / "compile-cpu" / "summary.json"

TINY = """\
name: knobs
model: {kind: mlp, input_dim: 16, hidden: [32], classes: 4}
data: {kind: synthetic-classification, samples: 1024, features: 16, classes: 4}
train: {max_steps: 40, batch_size: 16, eval_samples: 64}
launch: {device: cpu, cpu_threads_per_process: 1}
measure: {warmup_steps: 2, repeats: 1, max_disturbance: 1.0}
"""


def runs_of(text: str) -> dict[str, Any]:
    spec = validate_text(text).spec
    assert spec is not None
    return dict(spec.runs)


def test_compile_becomes_accelerates_dynamo_config_and_eager_writes_none(tmp_path: Path) -> None:
    spec = require_valid(str(EXAMPLE))
    configs = {}
    for name in ("eager", "compiled"):
        plan = compile_launch(
            spec.runs[name], spec_name="compile", machine=CPU_BOX, directory=tmp_path / name, port=41000, base_env={}
        )
        (tmp_path / name).mkdir()
        (tmp_path / name / "accelerate_config.yaml").write_text(plan.files["accelerate_config.yaml"])
        configs[name] = load_config_from_file(str(tmp_path / name / "accelerate_config.yaml"))
    assert configs["compiled"].dynamo_config == {
        "dynamo_backend": "INDUCTOR",
        "dynamo_mode": "default",
        "dynamo_use_fullgraph": False,
        "dynamo_use_dynamic": False,
        "dynamo_use_regional_compilation": False,
    }
    assert configs["eager"].dynamo_config == {}
    assert declared_of(spec.runs["compiled"], CPU_BOX).compile_backend == "inductor"
    assert declared_of(spec.runs["compiled-fused"], CPU_BOX).optimizer_implementation == "fused"


def test_explain_says_how_each_run_computes_and_what_accelerate_would_set_for_tf32() -> None:
    runs = runs_of(
        TINY
        + "runs:\n  eager: {}\n  compiled: {launch: {compile: {backend: inductor, mode: max-autotune}}}\n"
        + "  bf16-compiled: {launch: {compile: {}, mixed_precision: bf16}}\n  tf32: {launch: {tf32: true}}\n"
    )
    assert compute_lines(runs["eager"]) == [
        "compile: none (eager)",
        "TF32 for fp32 matmuls on CUDA: off, PyTorch's default (Accelerate turns it on only with a dynamo backend "
        "and fp32)",
        "optimizer: adamw, fused where the device supports it, else foreach (auto)",
    ]
    assert compute_lines(runs["compiled"])[:2] == [
        "compile: torch.compile with inductor, mode max-autotune (Accelerate's dynamo_config)",
        "TF32 for fp32 matmuls on CUDA: on where the run uses CUDA: Accelerate turns it on with a dynamo backend "
        "and fp32 (launch.tf32: null)",
    ]
    assert compute_lines(runs["bf16-compiled"])[1].startswith("TF32 for fp32 matmuls on CUDA: off")
    assert compute_lines(runs["tf32"])[1] == "TF32 for fp32 matmuls on CUDA: on (launch.tf32)"


def test_tf32_and_cuda_graphs_on_a_cpu_are_warned_not_refused() -> None:
    runs = runs_of(
        TINY.replace(
            "launch: {device: cpu, cpu_threads_per_process: 1}",
            "launch: {device: cpu, tf32: true, compile: {mode: reduce-overhead}}",
        )
    )
    problems, warnings = preflight(runs.values(), CPU_BOX)
    assert problems == []
    assert warnings == [
        "run 'main': launch.tf32 has no effect without CUDA, and this run uses the CPU",
        "run 'main': launch.compile.mode reduce-overhead replays CUDA graphs, which need CUDA: on the CPU it "
        "compiles as mode default does",
    ]
    assert preflight(runs_of(TINY.replace("device: cpu", "device: auto")).values(), GPU_BOX) == ([], [])


def test_eager_against_compiled_is_one_change_not_a_confounded_speedup() -> None:
    spec = require_valid(str(EXAMPLE))
    assert confounded(spec.runs["compiled"], spec.runs["eager"]) is None
    assert confounded(spec.runs["compiled-fused"], spec.runs["compiled"]) is None


def test_declared_equals_observed_covers_compile_tf32_and_the_optimizer() -> None:
    declared = Declared(
        device="cuda",
        processes=1,
        local_processes=1,
        distributed_type="NO",
        mixed_precision="no",
        threads_per_process=8,
        gradient_accumulation_steps=1,
        compile_backend="inductor",
        tf32=False,
        optimizer_implementation="fused",
    )
    fine = Observed(
        world_size=1,
        distributed_type="NO",
        mixed_precision="no",
        device="cuda",
        threads_per_process=[8],
        gradient_accumulation_steps=1,
        compiled=True,
        dynamo_backend="INDUCTOR",
        cuda_matmul_allow_tf32=False,
        optimizer_implementation="fused",
    )
    assert mismatches(declared, fine) == []
    wrong = Observed(
        **{**fine.as_json(), "compiled": False, "dynamo_backend": "NO", "cuda_matmul_allow_tf32": True}
        | {"optimizer_implementation": "foreach"}
    )
    assert mismatches(declared, wrong) == [
        "launch.compile says the model compiles with inductor, but the prepared model was not compiled "
        "(Accelerate's dynamo backend: NO)",
        "launch.tf32 is false, but fp32 matmuls ran with TF32 on",
        "train.optimizer.implementation is fused, but the optimizer ran foreach",
    ]


def recorded() -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(RECORDED.read_text(encoding="utf-8"))
    return summary


def test_the_report_shows_the_compute_settings_that_differ() -> None:
    assert settings_table(recorded(), markdown=False)[:5] == [
        "Run             Compile   Optimizer",
        "--------------  --------  ---------",
        "eager           no          foreach",
        "compiled        inductor    foreach",
        "compiled-fused  inductor      fused",
    ]
    assert "Settings that differ between runs." in render(recorded(), markdown=True)


def test_the_compile_why_gives_the_compile_cost_and_its_break_even_from_a_real_cpu_result() -> None:
    summary = recorded()
    compile_fail = summary["expectations"][0]
    why = explain(compile_fail, summary["runs"], summary["environment"])
    assert why is not None
    assert why["sentences"][:4] == [
        "a step of 'compiled' took 6.23 ms against 6.7 ms for 'eager' (1.08x)",
        "'compiled' runs compiled by torch.compile (inductor), 'eager' runs eagerly",
        "compiling cost 3.92 s once per launch, never in the timed part: 1.59 s more setup than eager "
        "(Accelerator.prepare, loading the compiler) and a first step of 2.35 s against 0.0205 s",
        "it saves 0.469 ms a step, so it repays itself after about 8,369 steps",
    ]
    fused = explain(summary["expectations"][1], summary["runs"], summary["environment"])
    assert fused is not None
    assert fused["sentences"][1] == (
        "the optimizer's update took 1 ms per step fused against 2.33 ms foreach (probed after training): it saves "
        "1.33 ms of each step"
    )


@pytest.mark.slow
def test_a_compiled_run_on_cpu_is_compiled_and_its_compile_stays_out_of_the_timed_part(tmp_path: Path) -> None:
    spec = tmp_path / "knobs.yaml"
    spec.write_text(
        TINY
        + "runs:\n  eager: {train: {optimizer: {implementation: foreach}}}\n"
        + "  compiled: {launch: {compile: {backend: inductor}}, train: {optimizer: {implementation: fused}}}\n"
        + "expect:\n  - {kind: close, run: compiled, baseline: eager, metric: final_loss, rel_tol: 0.05}\n"
    )
    done = run_cli(str(spec), "--output", str(tmp_path / "out"), "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    (folder,) = (tmp_path / "out" / "knobs").iterdir()
    runs = json.loads((folder / "summary.json").read_text())["runs"]
    eager, compiled = runs["eager"], runs["compiled"]
    assert (eager["observed"]["compiled"], compiled["observed"]["compiled"]) == (False, True)
    assert compiled["observed"]["dynamo_backend"] == "INDUCTOR"
    assert (eager["observed"]["optimizer_implementation"], compiled["observed"]["optimizer_implementation"]) == (
        "foreach",
        "fused",
    )
    # compiling happens in the first step: far longer than the eager one, and warm-up, not timing
    assert compiled["phases"]["first_step_s"] > 10 * eager["phases"]["first_step_s"]
    assert (
        compiled["metrics"]["timed_time_s"] < compiled["phases"]["first_step_s"] + compiled["metrics"]["train_time_s"]
    )


@pytest.mark.slow
def test_a_run_whose_config_lost_its_compile_fails_declared_equals_observed(tmp_path: Path) -> None:
    from runner.engines.base import Interrupts
    from runner.engines.local import execute
    from runner.plan.machine import probe_machine
    from runner.results.records import LaunchRecord
    from runner.session.launch import prepare_launch, read_metrics
    from runner.vocab import Status

    spec = tmp_path / "lost.yaml"
    spec.write_text(
        TINY.replace("cpu_threads_per_process: 1}", "cpu_threads_per_process: 1, compile: {backend: inductor}}")
    )
    plan = prepare_launch(require_valid(str(spec)), probe_machine(), tmp_path / "out", "main", 1, 1)
    config = plan.directory / "accelerate_config.yaml"
    config.write_text(config.read_text().replace("dynamo_backend: INDUCTOR", "dynamo_backend: 'NO'"))
    outcome = execute(plan, timeout_s=120, interrupts=Interrupts())
    assert outcome.status is Status.OK, outcome.log_tail
    launch = LaunchRecord(1, outcome.status, "main")
    read_metrics(launch, plan)
    assert launch.status is Status.FAILED
    assert launch.reason == (
        "what ran differs from the spec: launch.compile says the model compiles with inductor, but the prepared "
        "model was not compiled (Accelerate's dynamo backend: NO)"
    )


def test_the_compile_why_on_a_gpu_counts_loading_the_compiler_and_names_accelerates_tf32() -> None:
    """A real H200 result (scripts/gpu-check.sh): inductor and Triton load at prepare, in the setup, so the
    cost is the setup's excess plus the first step's; and Accelerate turned TF32 on for the compiled fp32
    run only, a second difference the Why must name."""
    summary = json.loads((ROOT / "tests" / "cases" / "summaries" / "compile-h200" / "summary.json").read_text())
    why = explain(summary["expectations"][0], summary["runs"], summary["environment"])
    assert why is not None
    sentences = why["sentences"]
    assert sentences[2] == (
        "compiling cost 4.00 s once per launch, never in the timed part: 3.71 s more setup than eager "
        "(Accelerator.prepare, loading the compiler) and a first step of 0.61 s against 0.324 s"
    )
    assert sentences[3] == "it saves 0.0418 ms a step, so it repays itself after about 95,721 steps"
    assert any(s.startswith("fp32 matmuls ran with TF32 in 'compiled' and in true fp32 in 'eager'") for s in sentences)
    assert summary["runs"]["compiled"]["observed"]["compiled"] is True
