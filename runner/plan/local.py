"""The local engine's planning: a launch runs on this machine, so this machine's GPUs, cores, ports and memory count.

Registered as the local kind's `planning` (runner.engines.kinds); its runner is runner.engines.local.
"""

from __future__ import annotations

from typing import Any

from runner.plan.compile import local_processes, resolve_device, threads_per_process
from runner.plan.engine_plan import DryRunText
from runner.plan.launch import LaunchPlan
from runner.plan.machine import Machine, free_port, port_is_free
from runner.plan.quoting import join_line
from runner.spec.resolved import ResolvedRun
from runner.spec.workload import human_bytes


class LocalPlanning:
    """Planning for launches on this machine."""

    def machines(self, run: ResolvedRun) -> int:
        """One: this machine."""
        return 1

    def auto_device(self, run: ResolvedRun, machine: Machine) -> str:
        """CUDA when this machine has it."""
        return "cuda" if machine.has_cuda else "cpu"

    def threads(self, run: ResolvedRun, machine: Machine, local_processes: int) -> int:
        """This machine's cores shared evenly."""
        return max(1, machine.cpu_count // local_processes)

    def accelerate_config(self, run: ResolvedRun, config: dict[str, Any]) -> dict[str, Any]:
        """The config as compiled: every key is known here."""
        return config

    def launcher(self, run: ResolvedRun) -> str | None:
        """launch.launcher decides (fork by default)."""
        return None

    def shortfall(self, run: ResolvedRun, machine: Machine) -> str:
        """Why this machine has too few GPUs for a run that uses them ('' when it has enough)."""
        visible = len(machine.cuda_devices)
        if resolve_device(run, machine) != "cuda" or not visible:
            return ""  # no GPU at all with device: cuda is a mistake in the spec, which preflight refuses
        gpu_ids = run.config.launch.gpu_ids
        if gpu_ids is None and local_processes(run) > visible:
            return f"needs {local_processes(run)} GPUs; this machine has {visible}"
        beyond = [gpu for gpu in gpu_ids or [] if gpu >= visible]
        if beyond:
            return f"needs GPU {beyond[0]} (launch.gpu_ids); this machine has {visible} (GPUs 0-{visible - 1})"
        return ""

    def cpu_where(self, run: ResolvedRun) -> str:
        """This machine."""
        return "on this machine"

    def preflight(self, runs: list[ResolvedRun], machine: Machine) -> list[str]:
        """Nothing to check for the local runs together."""
        return []

    # A flat list of independent checks, one `if` each, in the order a reader would check a machine.
    def preflight_run(self, run: ResolvedRun, machine: Machine) -> tuple[list[str], list[str]]:
        """(problems, warnings) of one run on this machine."""
        problems: list[str] = []
        warnings: list[str] = []
        launch = run.config.launch
        device = resolve_device(run, machine)
        local = local_processes(run)
        where = f"run '{run.name}'"
        if launch.device == "cuda" and not machine.has_cuda:
            problems.append(
                f"{where}: launch.device is cuda but this machine has no CUDA GPU (use device: auto or cpu)"
            )
            return problems, warnings
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

    def port(self) -> int:
        """A port free now, for this launch alone."""
        return free_port()

    def finish(self, plan: LaunchPlan, run: ResolvedRun, *, spec_name: str) -> LaunchPlan:
        """The plan as compiled: it runs here as it is."""
        return plan

    def port_taken(self, run: ResolvedRun) -> str:
        """A pinned port another process took since preflight checked it."""
        pinned = run.config.launch.main_process_port
        if pinned is None or port_is_free(pinned):
            return ""
        return (
            f"launch.main_process_port {pinned} is in use on this machine (taken since the session started); "
            "pick another, or remove it to get a free port per launch"
        )

    def describe(self, plan: LaunchPlan, run: ResolvedRun) -> DryRunText:
        """The launch as one `env ... accelerate launch ...` line."""
        return DryRunText("", (join_line(["env", *[f"{k}={v}" for k, v in plan.env_set.items()], *plan.argv]),))


PLANNING = LocalPlanning()
