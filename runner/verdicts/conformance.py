"""Declared = observed: what the worker saw of its launch, compared with what the spec declared.

A run whose processes did not form the declared group, whose precision did not apply, or whose
replicas diverged measured something else than the spec asked; its numbers must not be compared.
"""

from __future__ import annotations

from runner.contract import Declared, Observed
from runner.vocab import COMPUTE_DTYPES, precision_name


def mismatches(declared: Declared, observed: Observed) -> list[str]:
    """Every difference between declared and observed, each a sentence naming the spec field."""
    problems = []
    if observed.world_size != declared.processes:
        problems.append(
            f"launch.processes declares {declared.processes} processes, but the worker saw a world of "
            f"{observed.world_size}"
        )
    if observed.distributed_type != declared.distributed_type:
        problems.append(
            f"expected distributed type {declared.distributed_type}, observed {observed.distributed_type} "
            "(the processes did not form the declared group)"
        )
    if observed.device != declared.device:
        problems.append(f"launch.device resolves to {declared.device}, but the worker ran on {observed.device}")
    precision = precision_name(declared.mixed_precision)
    if observed.mixed_precision != declared.mixed_precision:
        problems.append(
            f"launch.mixed_precision is {precision}, but Accelerate ran {precision_name(observed.mixed_precision)}"
        )
    launcher = observed.launcher_mixed_precision
    if launcher is not None and launcher != declared.mixed_precision:
        problems.append(
            f"launch.mixed_precision is {precision}, but accelerate launch passed {precision_name(launcher)} "
            "(the compiled config did not take effect)"
        )
    dtype, expected = observed.compute_dtype, COMPUTE_DTYPES[declared.mixed_precision]
    if dtype is not None and dtype != expected:
        problems.append(f"mixed precision {precision} should compute in {expected}, but layers computed in {dtype}")
    threads = observed.threads_per_process
    if any(t != declared.threads_per_process for t in threads):
        problems.append(
            f"each process should run {declared.threads_per_process} torch threads, observed {threads} "
            "(launch.cpu_threads_per_process)"
        )
    declared_accumulation = declared.gradient_accumulation_steps
    if declared_accumulation is not None and observed.gradient_accumulation_steps != declared_accumulation:
        problems.append(
            f"gradient_accumulation_steps is declared {declared_accumulation} (train or script section), "
            f"Accelerate used {observed.gradient_accumulation_steps}"
        )
    if observed.machine_ranks:  # older workers did not report where their ranks ran
        ranks, nodes = sorted(set(observed.machine_ranks)), sorted(set(observed.nodes))
        if len(ranks) != declared.machines or len(nodes) != declared.machines:
            problems.append(
                f"the run declares {declared.machines} machine(s) (engine.nodes), but its "
                f"ranks ran with machine ranks {ranks} on node(s) {', '.join(nodes)}"
            )
    if observed.compiled is not None and observed.compiled != (declared.compile_backend != "no"):
        said = f"compiles with {declared.compile_backend}" if declared.compile_backend != "no" else "runs eagerly"
        seen = "compiled" if observed.compiled else "not compiled"
        problems.append(
            f"launch.compile says the model {said}, but the prepared model was {seen} "
            f"(Accelerate's dynamo backend: {observed.dynamo_backend})"
        )
    if declared.tf32 is not None and declared.device == "cuda" and observed.cuda_matmul_allow_tf32 is not None:
        if observed.cuda_matmul_allow_tf32 != declared.tf32:
            problems.append(
                f"launch.tf32 is {str(declared.tf32).lower()}, but fp32 matmuls ran with TF32 "
                f"{'on' if observed.cuda_matmul_allow_tf32 else 'off'}"
            )
    if declared.fsdp_version is not None and observed.distributed_type == "FSDP":
        if observed.fsdp_version is None:
            problems.append(
                "launch.fsdp declares FSDP, but the prepared model's parameters were not sharded "
                "(no DTensor parameter and no FullyShardedDataParallel wrapper)"
            )
        elif observed.fsdp_version != declared.fsdp_version:
            problems.append(
                f"launch.fsdp.version is {declared.fsdp_version}, "
                f"but Accelerate ran FSDP version {observed.fsdp_version}"
            )
    share = observed.local_parameter_share
    # version 2 always shards (version 1's NO_SHARD keeps every parameter whole, by design)
    if declared.fsdp_version == 2 and declared.processes > 1 and share is not None and share >= 0.999:
        problems.append(
            f"launch.fsdp shards the parameters over {declared.processes} processes, but the main process "
            "held all of them (a share of 1.0)"
        )
    wanted = declared.optimizer_implementation
    if wanted is not None and observed.optimizer_implementation not in (None, wanted):
        problems.append(
            f"train.optimizer.implementation is {wanted}, but the optimizer ran {observed.optimizer_implementation}"
        )
    if len(set(observed.param_hashes)) > 1:
        problems.append("the processes ended with different parameters: gradients were not synchronised")
    return problems
