"""Rules on a SLURM run: the engine decides machines and GPUs, so the launch section must not contradict it.

Registered as the slurm kind's `rules` (runner.engines.kinds); runner.spec.rules.engine calls them.
"""

from __future__ import annotations

from runner.errors import Severity
from runner.spec.models import SlurmEngineSection
from runner.spec.resolved import ResolvedRun
from runner.spec.rules.context import Checker


def slurm_rules(checker: Checker, run: ResolvedRun) -> None:
    """The slurm kind's rules, for a run whose engine section is kind slurm."""
    engine = run.config.engine
    if not isinstance(engine, SlurmEngineSection):  # registered for kind slurm: never another section
        raise TypeError(f"run '{run.name}' does not use engine slurm")
    check_slurm(checker, run, engine)


def check_slurm(checker: Checker, run: ResolvedRun, engine: SlurmEngineSection) -> None:
    """A SLURM run: the engine decides machines and GPUs, so the launch section must not contradict it."""
    launch = run.config.launch
    if launch.gpu_ids is not None:
        checker.run_report(
            run,
            ("launch", "gpu_ids"),
            "launch.gpu_ids is set, but SLURM assigns GPUs to a job: set engine.gpus_per_node instead",
        )
    if launch.processes % engine.nodes:
        checker.run_report(
            run,
            ("launch", "processes"),
            f"processes ({launch.processes}) must be a multiple of engine.nodes ({engine.nodes}): "
            "it counts processes on all nodes together",
            also=(("engine", "nodes"),),
        )
        return
    per_node = launch.processes // engine.nodes
    gpus = engine.gpus_per_node or 0
    if launch.device == "cuda" and gpus == 0:
        checker.run_report(
            run,
            ("launch", "device"),
            "launch.device is cuda, but the SLURM job asks for no GPUs: set engine.gpus_per_node",
            also=(("engine", "gpus_per_node"),),
        )
    elif launch.device != "cpu" and gpus and per_node > gpus:
        checker.run_report(
            run,
            ("engine", "gpus_per_node"),
            f"{per_node} processes per node ({launch.processes} on {engine.nodes} node(s)) need "
            f"{per_node} GPUs per node, but engine.gpus_per_node is {gpus}",
            also=(("launch", "processes"),),
        )
    elif launch.device == "cpu" and gpus:
        checker.run_report(
            run,
            ("engine", "gpus_per_node"),
            f"engine.gpus_per_node asks for {gpus} GPU(s) per node, but launch.device is cpu: they stay idle",
            severity=Severity.WARNING,
        )
    cpus, threads = engine.cpus_per_node, launch.cpu_threads_per_process
    if cpus is not None and cpus < per_node:
        checker.run_report(
            run,
            ("engine", "cpus_per_node"),
            f"engine.cpus_per_node ({cpus}) is fewer than the {per_node} processes per node",
        )
    elif cpus is not None and threads is not None and threads * per_node > cpus:
        checker.run_report(
            run,
            ("launch", "cpu_threads_per_process"),
            f"{per_node} processes per node x {threads} threads need {per_node * threads} CPUs, "
            f"but engine.cpus_per_node is {cpus}",
            also=(("engine", "cpus_per_node"),),
        )
