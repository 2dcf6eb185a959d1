"""Preflight: a machine that cannot run a spec is refused before any process starts, naming the field."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from runner.plan.machine import Machine
from runner.plan.preflight import preflight, skipped_runs
from runner.spec.validate import validate_text

BASE = """\
name: pre
model: {kind: mlp, input_dim: 8, classes: 2}
data: {kind: synthetic-classification, samples: 1024, features: 8, classes: 2}
train: {epochs: 1}
"""
CPU = Machine(cpu_count=2, memory_bytes=16 << 30)
ONE_GPU = Machine(cpu_count=8, memory_bytes=64 << 30, cuda_devices=("Tesla T4",), cuda_bf16=False)


def problems(launch: str, machine: Machine) -> tuple[list[str], list[str]]:
    spec = validate_text(BASE + f"launch: {launch}\n").spec
    assert spec is not None
    return preflight(spec.runs.values(), machine)


def test_cuda_requested_without_a_gpu() -> None:
    assert problems("{device: cuda}", CPU)[0] == [
        "run 'main': launch.device is cuda but this machine has no CUDA GPU (use device: auto or cpu)"
    ]


def test_fp16_resolving_to_cpu() -> None:
    assert problems("{mixed_precision: fp16}", CPU)[0] == [
        "run 'main': launch.mixed_precision fp16 needs a GPU and this machine has none (use bf16 or no)"
    ]


def skipped(text: str, machine: Machine) -> dict[str, str]:
    spec = validate_text(BASE + text).spec
    assert spec is not None
    return skipped_runs(spec.runs.values(), machine)


def test_a_run_that_needs_more_gpus_than_the_machine_has_is_skipped_not_refused() -> None:
    runs = (
        "runs:\n  single: {}\n  dual: {launch: {processes: 2}}\n  pinned: {launch: {processes: 2, gpu_ids: [0, 3]}}\n"
    )
    assert skipped(runs, ONE_GPU) == {
        "dual": "needs 2 GPUs; this machine has 1",
        "pinned": "needs GPU 3 (launch.gpu_ids); this machine has 1 (GPUs 0-0)",
    }
    spec = validate_text(BASE + runs).spec
    assert spec is not None
    assert preflight(spec.runs.values(), ONE_GPU) == ([], [])  # the run that fits still runs


def test_on_a_cpu_machine_two_processes_share_the_cores_and_nothing_is_skipped() -> None:
    assert skipped("launch: {processes: 2}\n", CPU) == {}


def test_bf16_on_a_gpu_without_it() -> None:
    assert problems("{mixed_precision: bf16}", ONE_GPU)[0] == [
        "run 'main': launch.mixed_precision bf16 is not supported by Tesla T4 (use fp16)"
    ]


def test_a_pinned_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        found, _ = problems(f"{{main_process_port: {port}}}", CPU)
    assert found == [
        f"run 'main': launch.main_process_port {port} is in use on this machine "
        "(pick another, or remove it to get a free port per launch)"
    ]


def test_not_enough_memory() -> None:
    small = Machine(cpu_count=2, memory_bytes=1 << 20)
    (problem,) = problems("{processes: 1}", small)[0]
    assert problem.startswith("run 'main': needs about ") and problem.endswith("(lower data.samples or the model)")


def test_oversubscribed_threads_are_a_warning() -> None:
    found, warnings = problems("{processes: 2, cpu_threads_per_process: 2}", CPU)
    assert found == []
    assert warnings == [
        "run 'main': 2 process(es) x 2 thread(s) oversubscribe the 2 cores (launch.cpu_threads_per_process)"
    ]


def test_gpu_ids_on_a_machine_without_gpus_is_reported() -> None:
    refused, warned = problems("{gpu_ids: [6, 7], processes: 2}", CPU)
    assert refused == []
    assert warned[0] == (
        "run 'main': launch.gpu_ids names GPU(s) 6, 7, but this machine has no CUDA GPU: the run uses the CPU "
        "(device: auto) and gpu_ids is not applied"
    )


def test_a_slurm_run_without_the_slurm_clients_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no sbatch, squeue, scontrol or scancel
    spec = validate_text(BASE + "engine: {kind: slurm, gpus_per_node: 1}\nlaunch: {device: cuda}\n").spec
    assert spec is not None
    # the nodes are not this machine: no GPU check here, only the clients SLURM needs
    assert preflight(spec.runs.values(), CPU) == (
        [
            "run(s) 'main' use engine slurm, but sbatch, squeue, scontrol, scancel are not on PATH here "
            "(run accel-run on the cluster's login node, or --engine local to run here)"
        ],
        [],
    )
