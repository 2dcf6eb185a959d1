"""Compile: Accelerate configs that Accelerate's own loader accepts, argv lists, hermetic environments."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml  # PyYAML: what Accelerate itself reads configs with
from accelerate.commands.config.config_args import load_config_from_file

from runner.plan.compile import compile_launch, declared_of
from runner.plan.machine import Machine
from runner.spec.validate import require_valid

ROOT = Path(__file__).resolve().parent.parent
CPU_BOX = Machine(cpu_count=8, memory_bytes=32 << 30, launcher=("accelerate", "launch"))
GPU_BOX = Machine(
    cpu_count=16,
    memory_bytes=128 << 30,
    cuda_devices=("NVIDIA H100",) * 8,
    cuda_bf16=True,
    launcher=("accelerate", "launch"),
)


@pytest.fixture(scope="module")
def day6():  # type: ignore[no-untyped-def]
    return require_valid(str(ROOT / "specs" / "day6.yaml"))


def plan_for(spec, run: str, machine: Machine, tmp_path: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return compile_launch(
        spec.runs[run],
        spec_name=spec.spec.name,
        machine=machine,
        directory=tmp_path / run,
        port=41000,
        base_env=env if env is not None else {"PATH": "/usr/bin", "HOME": "/root"},
    )


def write(plan) -> Path:  # type: ignore[no-untyped-def]
    plan.directory.mkdir(parents=True, exist_ok=True)
    for name, text in plan.files.items():
        (plan.directory / name).write_text(text)
    return plan.directory / "accelerate_config.yaml"


@pytest.mark.parametrize("run", ["single", "dual", "single-bf16", "large-dual"])
@pytest.mark.parametrize("machine", [CPU_BOX, GPU_BOX], ids=["cpu", "gpu"])
def test_accelerates_own_loader_accepts_every_config(day6, run: str, machine: Machine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = plan_for(day6, run, machine, tmp_path)
    config = load_config_from_file(str(write(plan)))
    launch = day6.runs[run].config.launch
    assert config.num_processes == launch.processes
    assert config.mixed_precision == launch.mixed_precision
    assert config.main_process_port == 41000


def test_pyyaml_reads_mixed_precision_no_as_text(day6, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = plan_for(day6, "single", CPU_BOX, tmp_path).files["accelerate_config.yaml"]
    assert "mixed_precision: 'no'" in text
    assert yaml.safe_load(text)["mixed_precision"] == "no"  # unquoted, PyYAML would read False


def test_several_cpu_processes_get_the_multi_process_launcher_and_gloo(day6, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = plan_for(day6, "dual", CPU_BOX, tmp_path)
    config = yaml.safe_load(plan.files["accelerate_config.yaml"])
    assert config["distributed_type"] == "MULTI_GPU" and config["use_cpu"] is False
    assert plan.env["ACCELERATE_USE_CPU"] == "true"
    assert plan.declared.distributed_type == "MULTI_CPU"


def test_gpu_runs_use_the_gpus_with_no_edit(day6, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = plan_for(day6, "dual", GPU_BOX, tmp_path)
    config = yaml.safe_load(plan.files["accelerate_config.yaml"])
    assert config["distributed_type"] == "MULTI_GPU"
    assert "ACCELERATE_USE_CPU" not in plan.env
    assert plan.declared.device == "cuda" and plan.declared.distributed_type == "MULTI_GPU"


def test_gpu_ids_become_accelerates_text_form(tmp_path: Path) -> None:
    spec = require_valid(str(ROOT / "examples" / "multi-gpu.yaml"))
    plan = compile_launch(
        spec.runs["two-gpus-bf16"], spec_name="multi-gpu", machine=GPU_BOX, directory=tmp_path, port=41000, base_env={}
    )
    assert yaml.safe_load(plan.files["accelerate_config.yaml"])["gpu_ids"] == "0,1"


def test_the_command_is_an_argv_list_with_the_config_file_always_passed(day6, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = plan_for(day6, "dual", CPU_BOX, tmp_path)
    assert isinstance(plan.argv, tuple) and all(isinstance(a, str) for a in plan.argv)
    argv = list(plan.argv)
    assert argv[:2] == ["accelerate", "launch"]
    assert argv[argv.index("--config_file") + 1] == str(tmp_path / "dual" / "accelerate_config.yaml")
    assert argv[-3:] == ["-m", "runner.worker", str(tmp_path / "dual" / "plan.json")]
    assert shlex.split(plan.command_line) == argv


def test_threads_default_to_cores_divided_by_processes(day6, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    single, dual = plan_for(day6, "single", CPU_BOX, tmp_path), plan_for(day6, "dual", CPU_BOX, tmp_path)
    assert single.declared.threads_per_process == 8 and dual.declared.threads_per_process == 4
    argv = list(dual.argv)
    assert argv[argv.index("--num_cpu_threads_per_process") + 1] == "4"


def test_inherited_accelerate_variables_are_dropped_unless_passed(day6, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {"PATH": "/usr/bin", "ACCELERATE_MIXED_PRECISION": "fp16", "ACCELERATE_DEBUG_MODE": "1", "OTHER": "x"}
    plan = plan_for(day6, "single", CPU_BOX, tmp_path, env)
    assert "ACCELERATE_MIXED_PRECISION" not in plan.env and "ACCELERATE_DEBUG_MODE" not in plan.env
    assert plan.env["OTHER"] == "x"
    assert plan.env_dropped == ("ACCELERATE_DEBUG_MODE", "ACCELERATE_MIXED_PRECISION")
    assert (
        "inherited and left out (runs are hermetic): ACCELERATE_DEBUG_MODE, ACCELERATE_MIXED_PRECISION"
        in plan.files["command.txt"]
    )


def test_command_txt_says_which_port_was_used(day6, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = plan_for(day6, "dual", CPU_BOX, tmp_path).files["command.txt"]
    assert "# rendezvous port: 41000 (picked free for this launch)" in text


def test_declared_facts_follow_the_machine(day6) -> None:  # type: ignore[no-untyped-def]
    assert declared_of(day6.runs["single"], CPU_BOX).device == "cpu"
    assert declared_of(day6.runs["single"], GPU_BOX).device == "cuda"
    assert declared_of(day6.runs["dual"], CPU_BOX).processes == 2
