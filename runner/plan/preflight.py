"""Preflight: can this machine run the selected runs as written? Checked before any process starts.

Each problem is one line naming the run and the spec field to change. A run that asks for more GPUs
than this machine has is not a mistake in the spec but a smaller machine: it is skipped, with its
reason, and the runs that fit still run (one GPU is the machine most Accelerate users have).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable

from runner.plan.compile import local_processes, resolve_device, threads_per_process
from runner.plan.machine import Machine, port_is_free
from runner.plan.strategies import strategy_of
from runner.spec.models import SlurmEngineSection
from runner.spec.resolved import ResolvedRun
from runner.spec.workload import human_bytes
from runner.vocab import SLURM_TOOLS


def gpu_shortfall(run: ResolvedRun, machine: Machine) -> str:
    """Why this machine has too few GPUs for a local run that uses them ('' when it has enough)."""
    visible = len(machine.cuda_devices)
    if isinstance(run.config.engine, SlurmEngineSection) or resolve_device(run, machine) != "cuda" or not visible:
        return ""  # no GPU at all with device: cuda is a mistake in the spec, which preflight refuses
    gpu_ids = run.config.launch.gpu_ids
    if gpu_ids is None and local_processes(run) > visible:
        return f"needs {local_processes(run)} GPUs; this machine has {visible}"
    beyond = [gpu for gpu in gpu_ids or [] if gpu >= visible]
    if beyond:
        return f"needs GPU {beyond[0]} (launch.gpu_ids); this machine has {visible} (GPUs 0-{visible - 1})"
    return ""


def skipped_runs(runs: Iterable[ResolvedRun], machine: Machine) -> dict[str, str]:
    """The runs this machine is too small for, each with its reason; the others still run."""
    return {run.name: reason for run in runs if (reason := gpu_shortfall(run, machine))}


# A flat list of independent checks, one `if` each, in the order a reader would check a machine.
def preflight(runs: Iterable[ResolvedRun], machine: Machine) -> tuple[list[str], list[str]]:
    """(problems that stop the session, warnings to show), for the runs that will run (see skipped_runs)."""
    problems: list[str] = []
    warnings: list[str] = []
    runs = [run for run in runs if not gpu_shortfall(run, machine)]
    cluster = [run for run in runs if isinstance(run.config.engine, SlurmEngineSection)]
    missing = [tool for tool in SLURM_TOOLS if shutil.which(tool) is None]
    if cluster and missing:
        names = ", ".join(f"'{run.name}'" for run in cluster)
        problems.append(
            f"run(s) {names} use engine slurm, but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            "not on PATH here (run accel-run on the cluster's login node, or --engine local to run here)"
        )
    for run in runs:
        refusal = strategy_of(run.config.launch).refusal(resolve_device(run, machine))
        if refusal:
            where = "on its SLURM nodes (engine.gpus_per_node is not set)" if run in cluster else "on this machine"
            problems.append(f"run '{run.name}': launch.fsdp is set but the run would use the CPU {where}; {refusal}")
            continue
        if run in cluster:
            continue  # the nodes are not this machine: SLURM and the job check what they have
        launch = run.config.launch
        device = resolve_device(run, machine)
        local = local_processes(run)
        where = f"run '{run.name}'"
        if launch.device == "cuda" and not machine.has_cuda:
            problems.append(
                f"{where}: launch.device is cuda but this machine has no CUDA GPU (use device: auto or cpu)"
            )
            continue
        if device == "cpu" and launch.gpu_ids is not None and not machine.has_cuda:
            ids = ", ".join(str(g) for g in launch.gpu_ids)
            warnings.append(
                f"{where}: launch.gpu_ids names GPU(s) {ids}, but this machine has no CUDA GPU: "
                "the run uses the CPU (device: auto) and gpu_ids is not applied"
            )
        if device == "cpu" and launch.tf32 is not None:
            warnings.append(f"{where}: launch.tf32 has no effect without CUDA, and this run uses the CPU")
        if device == "cpu" and launch.compile is not None and launch.compile.mode == "reduce-overhead":
            warnings.append(
                f"{where}: launch.compile.mode reduce-overhead replays CUDA graphs, which need CUDA: on the CPU it "
                "compiles as mode default does"
            )
        if device == "cpu" and launch.mixed_precision == "fp16":
            problems.append(
                f"{where}: launch.mixed_precision fp16 needs a GPU and this machine has none (use bf16 or no)"
            )
        if device == "cuda":
            if launch.mixed_precision == "bf16" and not machine.cuda_bf16:
                problems.append(
                    f"{where}: launch.mixed_precision bf16 is not supported by {machine.cuda_devices[0]} (use fp16)"
                )
        if launch.main_process_port is not None and not port_is_free(launch.main_process_port):
            problems.append(
                f"{where}: launch.main_process_port {launch.main_process_port} is in use on this machine "
                "(pick another, or remove it to get a free port per launch)"
            )
        need = run.workload.memory_bytes * local
        if machine.memory_bytes and need > machine.memory_bytes:
            problems.append(
                f"{where}: needs about {human_bytes(need)} of memory ({local} process(es) x data and training state), "
                f"this machine has {human_bytes(machine.memory_bytes)} available (lower data.samples or the model)"
            )
        threads = threads_per_process(run, machine)
        if device == "cpu" and threads * local > machine.cpu_count:
            warnings.append(
                f"{where}: {local} process(es) x {threads} thread(s) oversubscribe the {machine.cpu_count} cores "
                "(launch.cpu_threads_per_process)"
            )
    return problems, warnings
