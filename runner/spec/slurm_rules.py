"""The SLURM engine's spec rules: the engine decides machines and GPUs, so a run's launch section must agree.

Registered as the slurm kind's `rules` (runner.engines.kinds); the validator reports each finding
at the run's own lines, as it does its advice.
"""

from __future__ import annotations

from runner.errors import Severity
from runner.spec.advice import Advice
from runner.spec.models import SlurmEngineSection
from runner.spec.resolved import ResolvedRun


def slurm_rules(run: ResolvedRun) -> list[Advice]:
    """What a SLURM run's launch section must not contradict in its engine section."""
    engine = run.config.engine
    if not isinstance(engine, SlurmEngineSection):  # registered for kind slurm: never another section
        raise TypeError(f"run '{run.name}' does not use engine slurm")
    found: list[Advice] = []
    launch = run.config.launch

    def error(rel: tuple[str, ...], message: str, *also: tuple[str, ...]) -> None:
        found.append(Advice(message, rel, severity=Severity.ERROR, also=also))

    if launch.gpu_ids is not None:
        error(
            ("launch", "gpu_ids"),
            "launch.gpu_ids is set, but SLURM assigns GPUs to a job: set engine.gpus_per_node instead",
        )
    if launch.processes % engine.nodes:
        error(
            ("launch", "processes"),
            f"processes ({launch.processes}) must be a multiple of engine.nodes ({engine.nodes}): "
            "it counts processes on all nodes together",
            ("engine", "nodes"),
        )
        return found
    per_node = launch.processes // engine.nodes
    gpus = engine.gpus_per_node or 0
    if launch.device == "cuda" and gpus == 0:
        error(
            ("launch", "device"),
            "launch.device is cuda, but the SLURM job asks for no GPUs: set engine.gpus_per_node",
            ("engine", "gpus_per_node"),
        )
    elif launch.device != "cpu" and gpus and per_node > gpus:
        error(
            ("engine", "gpus_per_node"),
            f"{per_node} processes per node ({launch.processes} on {engine.nodes} node(s)) need "
            f"{per_node} GPUs per node, but engine.gpus_per_node is {gpus}",
            ("launch", "processes"),
        )
    elif launch.device == "cpu" and gpus:
        found.append(
            Advice(
                f"engine.gpus_per_node asks for {gpus} GPU(s) per node, but launch.device is cpu: they stay idle",
                ("engine", "gpus_per_node"),
            )
        )
    cpus, threads = engine.cpus_per_node, launch.cpu_threads_per_process
    if cpus is not None and cpus < per_node:
        error(
            ("engine", "cpus_per_node"),
            f"engine.cpus_per_node ({cpus}) is fewer than the {per_node} processes per node",
        )
    elif cpus is not None and threads is not None and threads * per_node > cpus:
        error(
            ("launch", "cpu_threads_per_process"),
            f"{per_node} processes per node x {threads} threads need {per_node * threads} CPUs, "
            f"but engine.cpus_per_node is {cpus}",
            ("engine", "cpus_per_node"),
        )
    return found
