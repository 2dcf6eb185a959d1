"""Declared = observed: each way a launch can differ from its spec is named."""

from __future__ import annotations

from runner.contract import Declared, Observed
from runner.verdicts.conformance import mismatches as check


def mismatches(declared: dict, observed: dict) -> list[str]:  # type: ignore[type-arg]
    return check(Declared.from_json(declared), Observed.from_json(observed))


DECLARED = {
    "device": "cpu",
    "processes": 2,
    "local_processes": 2,
    "distributed_type": "MULTI_CPU",
    "mixed_precision": "bf16",
    "threads_per_process": 1,
    "gradient_accumulation_steps": 1,
}
GOOD = {
    "world_size": 2,
    "distributed_type": "MULTI_CPU",
    "device": "cpu",
    "mixed_precision": "bf16",
    "launcher_mixed_precision": "bf16",
    "compute_dtype": "torch.bfloat16",
    "threads_per_process": [1, 1],
    "gradient_accumulation_steps": 1,
    "param_hashes": ["abc", "abc"],
}


def test_a_faithful_launch_has_no_mismatch() -> None:
    assert mismatches(DECLARED, GOOD) == []


def test_two_unsynchronised_trainings_are_caught() -> None:
    # what `accelerate launch` does on a CPU-only machine without ACCELERATE_USE_CPU
    observed = {**GOOD, "world_size": 1, "distributed_type": "NO", "param_hashes": ["abc", "def"]}
    assert mismatches(DECLARED, observed) == [
        "launch.processes declares 2 processes, but the worker saw a world of 1",
        "expected distributed type MULTI_CPU, observed NO (the processes did not form the declared group)",
        "the processes ended with different parameters: gradients were not synchronised",
    ]


def test_a_precision_that_did_not_apply_is_caught() -> None:
    observed = {**GOOD, "launcher_mixed_precision": "no", "compute_dtype": "torch.float32"}
    assert mismatches(DECLARED, observed) == [
        "launch.mixed_precision is bf16, but accelerate launch passed fp32 (the compiled config did not take effect)",
        "mixed precision bf16 should compute in torch.bfloat16, but layers computed in torch.float32",
    ]


def test_threads_are_checked() -> None:
    assert mismatches(DECLARED, {**GOOD, "threads_per_process": [1, 2]}) == [
        "each process should run 1 torch threads, observed [1, 2] (launch.cpu_threads_per_process)"
    ]
