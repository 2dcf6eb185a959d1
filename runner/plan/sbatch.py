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

from dataclasses import replace

from runner.plan.compile import LaunchPlan
from runner.plan.quoting import join_line, quote_line
from runner.spec.models import SlurmEngineSection
from runner.vocab import COMMAND_FILE, LAUNCH_T0_VAR, STDERR_LOG, STDOUT_LOG

SBATCH_FILE = "job.sbatch"
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
