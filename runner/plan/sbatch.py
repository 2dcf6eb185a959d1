"""Stage 4, compile for SLURM: one launch becomes a batch script that starts `accelerate launch` on every node.

Pure, like compile.py: the script is text in the launch's files, written beside
accelerate_config.yaml and command.txt, so `--dry-run` shows exactly what would be submitted.

Three traps of running Accelerate under SLURM by hand are compiled away:
- machine ranks: `$SLURM_NODEID` written into the srun line is expanded once, by the batch shell
  on the first node, so every node gets machine rank 0 (accelerate issue 1645). Here it is quoted
  inside the `bash -c` script that srun starts on each node, so each node's own shell expands it.
- the head node's address: the first host of the allocation (`scontrol show hostnames`), then that
  node's address (`NodeAddr`), since node names need not resolve.
- port clashes: the rendezvous port is derived from the job id, so two jobs sharing a node differ.
Every value is quoted and kept on one line (runner.plan.quoting), and validation refuses control
characters in every spec value that reaches the script (runner.spec.control_chars): a setting can
never end an `#SBATCH` line or inject shell syntax. engine.setup's lines are shell by design.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from typing import Any

from runner.plan.engine_plan import DryRunText
from runner.plan.launch import LaunchPlan
from runner.plan.machine import Machine
from runner.plan.quoting import join_line, quote_line
from runner.spec.models import SlurmEngineSection
from runner.spec.resolved import ResolvedRun
from runner.vocab import COMMAND_FILE, LAUNCH_T0_VAR, STDERR_LOG, STDOUT_LOG

SBATCH_FILE = "job.sbatch"
SLURM_TOOLS = ("sbatch", "squeue", "scontrol", "scancel")  # the client commands the engine runs: all on PATH
HEAD_ADDR_VAR = "ACCEL_RUN_HEAD_ADDR"
PORT_VAR = "ACCEL_RUN_PORT"
PORT_BASE, PORT_SPAN = 20000, 20000  # ports 20000-39999: above the usual services, below the ephemeral range


def job_name(spec_name: str, run: str, repeat: int) -> str:
    """The job's name in squeue: which spec, run and repeat it is."""
    return f"accel-run.{spec_name}.{run}.{repeat}"


def task_command(plan: LaunchPlan) -> list[str]:
    """The srun argv: on each node, `accelerate launch` with that node's rank, the head's address and the port.

    The launcher's own words and the per-node flags sit in a `bash -c` script (single-quoted, so the
    batch shell leaves `$SLURM_NODEID` alone); the rest of the launch argv follows as "$@".
    """
    launcher_words, rest = _split_launcher(plan.argv)
    per_node = f'--machine_rank "$SLURM_NODEID" --main_process_ip "${HEAD_ADDR_VAR}" --main_process_port "${PORT_VAR}"'
    inner = f'exec {join_line(launcher_words)} {per_node} "$@"'
    return ["bash", "-c", inner, "accel-run-task", *rest]


def _split_launcher(argv: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The launcher (`python -m accelerate.commands.launch`, or `accelerate`) and its arguments."""
    index = argv.index("--config_file")
    return list(argv[:index]), list(argv[index:])


def sbatch_script(
    plan: LaunchPlan, engine: SlurmEngineSection, *, spec_name: str, pinned_port: int | None = None
) -> str:
    """The batch script of one launch (submitted as `sbatch --parsable job.sbatch`)."""
    declared = plan.declared
    directory = plan.directory
    options = [
        f"--job-name={job_name(spec_name, plan.run, plan.repeat)}",
        f"--nodes={engine.nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={engine.cpus_per_node or declared.local_processes * declared.threads_per_process}",
        f"--time={engine.time}",
        f"--output={directory / STDOUT_LOG}",
        f"--error={directory / STDERR_LOG}",
    ]
    if engine.gpus_per_node:
        options.append(f"--gpus-per-node={engine.gpus_per_node}")
    if engine.partition:
        options.append(f"--partition={engine.partition}")
    if engine.account:
        options.append(f"--account={engine.account}")
    options += engine.sbatch_args
    port = str(pinned_port) if pinned_port else f"$(( {PORT_BASE} + SLURM_JOB_ID % {PORT_SPAN} ))"
    port_note = "pinned by the spec" if pinned_port else "derived from the job id: two jobs on one node differ"
    srun = [
        "srun",
        f"--nodes={engine.nodes}",
        f"--ntasks={engine.nodes}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        *task_command(plan),
    ]
    lines = [
        "#!/bin/bash",
        f"# accel-run launch of run '{plan.run}' (repeat {plan.repeat}) from spec '{spec_name}', for SLURM.",
        f"# {declared.processes} process(es) on {engine.nodes} node(s), {declared.local_processes} per node; "
        "accel-run submits it with: sbatch --parsable " + SBATCH_FILE,
        *[f"#SBATCH {quote_line(option)}" for option in options],
        "set -eo pipefail",
        f'export {LAUNCH_T0_VAR}="$(date +%s.%N)"  # the job started: start-up time counts from here',
    ]
    if engine.setup:
        lines.append("# engine.setup:")
        lines += engine.setup
    lines.append("set -u  # only now: module and virtualenv scripts may read unset variables")
    lines.append("# environment set by accel-run (on top of the one sbatch exports from the submitting shell):")
    lines += [f"export {name}={quote_line(value)}" for name, value in plan.env_set.items()]
    lines += [
        "# the head node (machine rank 0) is the allocation's first host; its address is the node's NodeAddr",
        'head_node="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        'head_addr="$(scontrol show node "$head_node" | sed -n \'s/.*NodeAddr=\\([^ ]*\\).*/\\1/p\')"',
        f'export {HEAD_ADDR_VAR}="${{head_addr:-$head_node}}"',
        f"export {PORT_VAR}={port}  # rendezvous port, {port_note}",
        "# one task per node; each node's own shell expands $SLURM_NODEID into its machine rank",
        join_line(srun),
    ]
    return "\n".join(lines) + "\n"


def compile_for_slurm(
    plan: LaunchPlan, engine: SlurmEngineSection, *, spec_name: str, pinned_port: int | None
) -> LaunchPlan:
    """A compiled launch made a SLURM job: the batch script joins its files, command.txt says how to resubmit it."""
    script = sbatch_script(plan, engine, spec_name=spec_name, pinned_port=pinned_port)
    command = "\n".join(
        [
            f"# accel-run launch of run '{plan.run}' (repeat {plan.repeat}) from spec '{spec_name}', "
            f"submitted to SLURM as {SBATCH_FILE}",
            f"# rendezvous port: {pinned_port if pinned_port else 'derived from the job id (see ' + SBATCH_FILE + ')'}",
            f"# threads per process: {plan.declared.threads_per_process} (--num_cpu_threads_per_process)",
            "# to resubmit by hand (the environment it needs is exported in the script):",
            join_line(["sbatch", str(plan.directory / SBATCH_FILE)]),
        ]
    )
    files = {**plan.files, SBATCH_FILE: script, COMMAND_FILE: command + "\n"}
    return replace(plan, port=pinned_port or 0, files=files)


def section(run: ResolvedRun) -> SlurmEngineSection:
    """The engine section of a run of kind slurm."""
    engine = run.config.engine
    if not isinstance(engine, SlurmEngineSection):  # registered for kind slurm: never another section
        raise TypeError(f"run '{run.name}' does not use engine slurm")
    return engine


class SlurmPlanning:
    """Planning for launches submitted as SLURM batch jobs: the nodes are not this machine."""

    def machines(self, run: ResolvedRun) -> int:
        """engine.nodes."""
        return section(run).nodes

    def auto_device(self, run: ResolvedRun, machine: Machine) -> str:
        """CUDA when the job asks for GPUs."""
        return "cuda" if section(run).gpus_per_node else "cpu"

    def threads(self, run: ResolvedRun, machine: Machine, local_processes: int) -> int:
        """The CPUs the job asks for per node, shared evenly (only what the job asks for is known)."""
        return max(1, (section(run).cpus_per_node or local_processes) // local_processes)

    def accelerate_config(self, run: ResolvedRun, config: dict[str, Any]) -> dict[str, Any]:
        """Without the keys the allocation decides.

        Each node's rank, the head node's address and the port come from the allocation: the batch
        script passes them on the command line (--machine_rank, --main_process_ip, --main_process_port).
        """
        return {key: value for key, value in config.items() if key not in ("machine_rank", "main_process_port")}

    def launcher(self, run: ResolvedRun) -> str | None:
        """`accelerate launch` on every node: there is no fork server in a job."""
        return "accelerate"

    def shortfall(self, run: ResolvedRun, machine: Machine) -> str:
        """Never: SLURM and the job check what the nodes have."""
        return ""

    def cpu_where(self, run: ResolvedRun) -> str:
        """The job's nodes, which use the CPU when the job asks for no GPUs."""
        return "on its SLURM nodes (engine.gpus_per_node is not set)"

    def preflight(self, runs: list[ResolvedRun], machine: Machine) -> list[str]:
        """The SLURM client commands must be here."""
        missing = [tool for tool in SLURM_TOOLS if shutil.which(tool) is None]
        if not runs or not missing:
            return []
        names = ", ".join(f"'{run.name}'" for run in runs)
        return [
            f"run(s) {names} use engine slurm, but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            "not on PATH here (run accel-run on the cluster's login node, or --engine local to run here)"
        ]

    def preflight_run(self, run: ResolvedRun, machine: Machine) -> tuple[list[str], list[str]]:
        """Nothing: the nodes are not this machine."""
        return [], []

    def port(self) -> int:
        """0: derived from the job id inside the job."""
        return 0

    def finish(self, plan: LaunchPlan, run: ResolvedRun, *, spec_name: str) -> LaunchPlan:
        """The launch as a batch job (compile_for_slurm)."""
        return compile_for_slurm(
            plan, section(run), spec_name=spec_name, pinned_port=run.config.launch.main_process_port
        )

    def port_taken(self, run: ResolvedRun) -> str:
        """Never known here: the port is taken, or not, on the head node."""
        return ""

    def describe(self, plan: LaunchPlan, run: ResolvedRun) -> DryRunText:
        """The batch script and the command each node starts."""
        script = str(plan.directory / SBATCH_FILE)
        return DryRunText(
            f" on {plan.declared.machines} SLURM node(s)",
            (
                f"# each node starts: {join_line(plan.argv)} (with its machine rank; see the script)",
                join_line(["sbatch", "--parsable", script]),
            ),
            script,
        )


PLANNING = SlurmPlanning()
