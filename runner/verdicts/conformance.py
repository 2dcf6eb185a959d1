"""Declared = observed: what the worker saw of its launch, compared with what the spec declared.

A run whose processes did not form the declared group, whose precision did not apply, or whose
replicas diverged measured something else than the spec asked; its numbers must not be compared.
"""

from __future__ import annotations

from typing import Any

from runner.vocab import COMPUTE_DTYPES as _DTYPES


def mismatches(declared: dict[str, Any], observed: dict[str, Any]) -> list[str]:
    """Every difference between declared and observed, each a sentence naming the spec field."""
    problems = []
    if observed.get("world_size") != declared["processes"]:
        problems.append(
            f"launch.processes declares {declared['processes']} processes, but the worker saw a world of "
            f"{observed.get('world_size')}"
        )
    if observed.get("distributed_type") != declared["distributed_type"]:
        problems.append(
            f"expected distributed type {declared['distributed_type']}, observed {observed.get('distributed_type')} "
            "(the processes did not form the declared group)"
        )
    if observed.get("device") != declared["device"]:
        problems.append(
            f"launch.device resolves to {declared['device']}, but the worker ran on {observed.get('device')}"
        )
    precision = declared["mixed_precision"]
    if observed.get("mixed_precision") != precision:
        problems.append(
            f"launch.mixed_precision is {precision!r}, but Accelerate ran {observed.get('mixed_precision')!r}"
        )
    launcher = observed.get("launcher_mixed_precision")
    if launcher is not None and launcher != precision:
        problems.append(
            f"launch.mixed_precision is {precision!r}, but accelerate launch passed {launcher!r} "
            "(the compiled config did not take effect)"
        )
    dtype = observed.get("compute_dtype")
    if dtype is not None and dtype != _DTYPES[precision]:
        problems.append(
            f"mixed precision {precision!r} should compute in {_DTYPES[precision]}, but layers computed in {dtype}"
        )
    threads = observed.get("threads_per_process") or []
    if any(t != declared["threads_per_process"] for t in threads):
        problems.append(
            f"each process should run {declared['threads_per_process']} torch threads, observed {threads} "
            "(launch.cpu_threads_per_process)"
        )
    if observed.get("gradient_accumulation_steps") != declared["gradient_accumulation_steps"]:
        problems.append(
            f"train.gradient_accumulation_steps is {declared['gradient_accumulation_steps']}, "
            f"Accelerate used {observed.get('gradient_accumulation_steps')}"
        )
    hashes = observed.get("param_hashes") or []
    if len(set(hashes)) > 1:
        problems.append("the processes ended with different parameters: gradients were not synchronised")
    return problems
