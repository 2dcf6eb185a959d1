"""Stage 4, compile: a resolved run becomes an Accelerate config, a worker plan and an argv + environment.

Pure: no files are written and no process is started here (runner.session and engines/ do that),
so `--dry-run` and golden tests get exactly what a real launch would use.

Two traps are compiled away:
- On a machine without GPUs, `accelerate launch` with a multi-GPU config starts N processes that
  each see DistributedType.NO (N independent trainings, no gradient sync) unless
  ACCELERATE_USE_CPU=true is in their environment; `--cpu --num_processes N` starts only one.
  So N CPU processes get distributed_type MULTI_GPU (which selects the multi-process launcher)
  plus ACCELERATE_USE_CPU=true (which makes every process join a gloo MULTI_CPU group).
- Without --num_cpu_threads_per_process (or OMP_NUM_THREADS) each child runs one thread; the
  thread count is always explicit here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import runner
from runner.contract import Declared
from runner.plan.engine_plan import planning_of
from runner.plan.launch import LaunchPlan
from runner.plan.machine import Machine
from runner.plan.quoting import join_line, quote_line
from runner.plan.strategies import strategy_of
from runner.plan.worker_plan import Outputs, WorkerPlan
from runner.spec.models import RunConfig, ScriptRunConfig, TransformerModel
from runner.spec.resolved import ResolvedRun
from runner.vocab import (
    COMMAND_FILE,
    CONFIG_FILE,
    DONE_PREFIX,
    HEARTBEAT_PREFIX,
    LAUNCH_MARK_VAR,
    METRICS_FILE,
    PLAN_FILE,
    PLAN_VAR,
    PROGRESS_FILE,
)
from runner.yamlout import dump_yaml, yaml_tree

PACKAGE_ROOT = str(Path(runner.__file__).resolve().parent.parent)

_CONFIG_NOTES = {
    "compute_environment": "this machine (not SageMaker)",
    "distributed_type": "NO = one process; MULTI_GPU = the multi-process launcher (gloo on CPU); FSDP = sharded",
    "num_processes": "processes on all machines together",
    "num_machines": "machines taking part",
    "machine_rank": "this machine's rank (0 = main)",
    "main_process_ip": "address of the rank-0 machine",
    "main_process_port": "rendezvous port, picked free for this launch unless the spec pins one",
    "rdzv_backend": "static rendezvous: ranks are known up front",
    "same_network": "all machines on one network",
    "mixed_precision": "quoted so PyYAML reads 'no' as text, not false",
    "use_cpu": "true runs on CPU even if GPUs exist (1 process)",
    "gpu_ids": "GPUs by index (CUDA_VISIBLE_DEVICES); 'all' = every visible GPU",
    "downcast_bf16": "TPU only",
    "debug": "extra collective checks (slower)",
    "enable_cpu_affinity": "pin processes to cores (off: the OS schedules)",
    "dynamo_config": "torch.compile in Accelerator.prepare (launch.compile)",
    "fsdp_config": "fully sharded data parallel (launch.fsdp)",
}


def resolve_device(run: ResolvedRun, machine: Machine) -> str:
    """'cpu' or 'cuda' for a run: `auto` is the engine's to decide (CUDA when the machines it runs on have it)."""
    device = run.config.launch.device
    return planning_of(run).auto_device(run, machine) if device == "auto" else device


def machines_of(run: ResolvedRun) -> int:
    """Machines one launch of `run` spans (its engine's answer: 1 for this machine)."""
    return planning_of(run).machines(run)


def local_processes(run: ResolvedRun) -> int:
    """Processes each machine starts (launch.processes counts all machines)."""
    return max(1, run.config.launch.processes // machines_of(run))


def threads_per_process(run: ResolvedRun, machine: Machine) -> int:
    """Torch threads per process: the spec's number, else the cores of a machine (or cluster node) shared evenly."""
    launch = run.config.launch
    if launch.cpu_threads_per_process is not None:
        return launch.cpu_threads_per_process
    return planning_of(run).threads(run, machine, local_processes(run))


def declared_of(run: ResolvedRun, machine: Machine) -> Declared:
    """What a correct launch of `run` on `machine` looks like from inside the worker."""
    launch = run.config.launch
    device = resolve_device(run, machine)
    strategy = strategy_of(launch)
    return Declared(
        device=device,
        processes=launch.processes,
        local_processes=local_processes(run),
        distributed_type=strategy.distributed_type(launch.processes, device),
        mixed_precision=launch.mixed_precision,
        threads_per_process=threads_per_process(run, machine),
        gradient_accumulation_steps=declared_accumulation(run),
        machines=machines_of(run),
        compile_backend=compile_backend(run),
        tf32=launch.tf32,
        optimizer_implementation=declared_optimizer(run),
        strategy=strategy.name,
        fsdp_version=launch.fsdp.version if launch.fsdp is not None else None,
        fsdp_sharding=launch.fsdp.sharding if launch.fsdp is not None else None,
    )


def compile_backend(run: ResolvedRun) -> str:
    """The dynamo backend a run declares: launch.compile's, 'no' when it compiles nothing."""
    compiled = run.config.launch.compile
    return compiled.backend if compiled is not None else "no"


def accelerate_tf32(run: ResolvedRun, device: str) -> bool:
    """Whether Accelerate turns TF32 on by itself: a dynamo backend, no mixed precision, on CUDA (its state.py)."""
    launch = run.config.launch
    return compile_backend(run) != "no" and launch.mixed_precision == "no" and device == "cuda"


def declared_optimizer(run: ResolvedRun) -> str | None:
    """The optimizer implementation a built-in run must use; None for auto (the worker picks) or a script."""
    if isinstance(run.config, ScriptRunConfig):
        return None
    implementation = run.config.train.optimizer.implementation
    return None if implementation == "auto" else implementation


def declared_accumulation(run: ResolvedRun) -> int | None:
    """Gradient accumulation the run must observe; None when a script keeps its own (not checked)."""
    if isinstance(run.config, ScriptRunConfig):
        return run.config.script.gradient_accumulation_steps
    return run.config.train.gradient_accumulation_steps


def process_entry(run: ResolvedRun, directory: Path) -> tuple[str, ...]:
    """What every process runs: the built-in worker with its plan, or the user's script in accel-run's wrapper.

    The wrapper (runner.worker.script) beats each rank's heartbeat, marks it done and runs the script
    as __main__ with exactly the arguments of the spec, so `accelerate launch` sees `-m` and a module.
    """
    if isinstance(run.config, ScriptRunConfig):
        return ("-m", "runner.worker.script", run.script_file, *script_args(run.config))
    return ("-m", "runner.worker", str(directory / PLAN_FILE))


def script_args(config: ScriptRunConfig) -> tuple[str, ...]:
    """The script's arguments: script.args, then script.batch_size as its option (script.batch_size_arg)."""
    script = config.script
    if script.batch_size is None or script.batch_size_arg is None:
        return tuple(script.args)
    return (*script.args, script.batch_size_arg, str(script.batch_size))


def accelerate_config(run: ResolvedRun, declared: Declared, port: int) -> dict[str, Any]:
    """The Accelerate config file's content (loadable by accelerate's own loader)."""
    launch = run.config.launch
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "NO",  # the strategy's (runner.plan.strategies), set below
        "num_processes": launch.processes,
        "num_machines": machines_of(run),
        "machine_rank": 0,
        "main_process_port": port,
        "rdzv_backend": "static",
        "same_network": True,
        "mixed_precision": launch.mixed_precision,
        "use_cpu": declared.device == "cpu" and declared.processes == 1,
        "gpu_ids": "all" if launch.gpu_ids is None or declared.device == "cpu" else ",".join(map(str, launch.gpu_ids)),
        "downcast_bf16": "no",
        "debug": False,
        "enable_cpu_affinity": False,
    }
    builtin_transformer = isinstance(run.config, RunConfig) and isinstance(run.config.model, TransformerModel)
    config.update(strategy_of(launch).config_entries(launch, builtin_transformer=builtin_transformer))
    compiled = launch.compile
    if compiled is not None and compiled.backend != "no":
        config["dynamo_config"] = {
            "dynamo_backend": compiled.backend.upper(),
            "dynamo_mode": compiled.mode,
            "dynamo_use_fullgraph": compiled.fullgraph,
            "dynamo_use_dynamic": compiled.dynamic,
            "dynamo_use_regional_compilation": False,
        }
    return planning_of(run).accelerate_config(run, config)


def accelerate_config_text(run: ResolvedRun, declared: Declared, port: int) -> str:
    """The config as YAML with a note on each key (the seed asked for annotated config files)."""
    header = (
        f"# Accelerate config for run '{run.name}', compiled by accel-run from the spec.\n"
        f"# Launched with: accelerate launch --config_file {CONFIG_FILE} (see command.txt)\n"
    )
    if declared.device == "cpu" and declared.processes > 1:
        header += (
            "# CPU-only: distributed_type MULTI_GPU picks the multi-process launcher, and\n"
            "# ACCELERATE_USE_CPU=true in the environment makes the processes a gloo MULTI_CPU group.\n"
        )
    config = accelerate_config(run, declared, port)
    return header + dump_yaml(yaml_tree(config, comments=_CONFIG_NOTES))


def launcher_of(run: ResolvedRun) -> str:
    """How a launch starts: what its engine always uses (a SLURM job: `accelerate launch`), else launch.launcher,
    else fork.

    A user's script with several processes gets `accelerate launch` unless it asks for fork: it
    tears its process group down itself (freeing its model, or at exit), and a gloo teardown can wait
    for a peer process to exit, which a forked rank does only once every rank has returned (torch
    elastic's protocol); the built-in worker never tears its group down.
    """
    forced = planning_of(run).launcher(run)
    if forced is not None:
        return forced
    if run.config.launch.launcher is not None:
        return run.config.launch.launcher
    return "accelerate" if isinstance(run.config, ScriptRunConfig) and local_processes(run) > 1 else "fork"


def process_env(env: Mapping[str, str]) -> dict[str, str]:
    """What every launched Python process gets on top of the inherited environment: our package on its path."""
    return {
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": PACKAGE_ROOT + (f":{env['PYTHONPATH']}" if env.get("PYTHONPATH") else ""),
    }


def server_env(base_env: Mapping[str, str]) -> dict[str, str]:
    """The fork server's environment: a launch's, before any run adds its own variables.

    Plus PYTORCH_NVML_BASED_CUDA_CHECK: if anything the server imports asks whether CUDA is there, it
    asks NVML, which leaves the CUDA driver unloaded so the forked launches can still use it. (A launch
    gets its own environment, without it.)
    """
    env, _ = hermetic_env(base_env, [])
    return {**env, **process_env(env), "PYTORCH_NVML_BASED_CUDA_CHECK": "1"}


def hermetic_env(base_env: Mapping[str, str], pass_env: list[str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """The inherited environment minus ACCELERATE_* variables (unless passed through)."""
    kept, dropped = {}, []
    for name, value in base_env.items():
        if name.startswith("ACCELERATE_") and name not in pass_env:
            dropped.append(name)
        else:
            kept[name] = value
    return kept, tuple(sorted(dropped))


# One function builds one frozen plan: argv, environment and files side by side, so what
# --dry-run shows is exactly what a launch uses.
def compile_launch(
    run: ResolvedRun,
    *,
    spec_name: str,
    machine: Machine,
    directory: Path,
    port: int,
    repeat: int = 1,
    repeats: int = 1,
    base_env: Mapping[str, str],
    timing_judged: bool = True,
) -> LaunchPlan:
    """One launch of one run: config, plan, argv and environment, nothing written yet.

    `timing_judged`: whether a verdict may rest on this launch's own interval (WorkerPlan).
    """
    declared = declared_of(run, machine)
    launch = run.config.launch
    env, dropped = hermetic_env(base_env, launch.pass_env)
    env_set = process_env(env)
    if declared.device == "cpu":
        env_set["ACCELERATE_USE_CPU"] = "true"
    directory = Path(directory)
    if isinstance(run.config, ScriptRunConfig):
        env_set[PLAN_VAR] = str(directory / PLAN_FILE)  # how runner.track finds the launch folder
        if declared.gradient_accumulation_steps is not None:
            env_set["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] = str(declared.gradient_accumulation_steps)
    env_set.update(launch.env)
    env.update(env_set)
    env[LAUNCH_MARK_VAR] = str(directory)  # inherited by every process of the launch: how reap finds them all
    launch_args = (
        "--config_file",
        str(directory / CONFIG_FILE),
        "--num_cpu_threads_per_process",
        str(declared.threads_per_process),
        *process_entry(run, directory),
    )
    argv = (*machine.launcher, *launch_args)
    worker_plan = WorkerPlan(
        spec=spec_name,
        run=run.name,
        repeat=repeat,
        repeats=repeats,
        config=run.config,
        declared=declared,
        outputs=Outputs(
            metrics=str(directory / METRICS_FILE),
            progress=str(directory / PROGRESS_FILE),
            heartbeat_prefix=str(directory / HEARTBEAT_PREFIX),
            done_prefix=str(directory / DONE_PREFIX),
        ),
        workload=dict(run.workload.__dict__),
        machine=machine.as_json(),  # a summary rebuilt from the run folders has its Machine line from here
        timing_judged=timing_judged,
    )
    result = LaunchPlan(
        run=run.name,
        repeat=repeat,
        directory=directory,
        argv=argv,
        env=env,
        env_set=env_set,
        env_dropped=dropped,
        port=port,
        declared=declared,
        launch_args=launch_args,
        launcher=launcher_of(run),
    )
    files = {
        CONFIG_FILE: accelerate_config_text(run, declared, port),
        PLAN_FILE: worker_plan.to_json(),
        COMMAND_FILE: command_text(result, spec_name=spec_name, repeats=repeats, pinned=launch.main_process_port),
    }
    return replace(result, files=files)


def command_text(plan: LaunchPlan, *, spec_name: str, repeats: int, pinned: int | None) -> str:
    """command.txt: what was launched, with which port and environment, in a form one can rerun."""
    port_note = "pinned by the spec (launch.main_process_port)" if pinned else "picked free for this launch"
    lines = [
        f"# accel-run launch of run '{plan.run}' (repeat {plan.repeat} of {repeats}) from spec '{spec_name}'",
        f"# rendezvous port: {plan.port} ({port_note})",
        f"# threads per process: {plan.declared.threads_per_process} (--num_cpu_threads_per_process)",
        "# environment set by accel-run (on top of your shell's):",
        # quoted like the command below: a value can never end the comment and start a line of shell
        *[f"#   {quote_line(f'{name}={value}')}" for name, value in plan.env_set.items()],
    ]
    if plan.env_dropped:
        dropped = ", ".join(quote_line(name) for name in plan.env_dropped)
        lines.append(f"# inherited and left out (runs are hermetic): {dropped}")
    if plan.launcher == "fork":
        lines.append(
            "# launched by accel-run's fork server (launch.launcher: fork): accelerate's own launch code on these"
        )
        lines.append("# arguments, forked from a process that had imported torch; the command below is the same launch")
    lines.append("# to rerun by hand:")
    lines.append(join_line(["env", *[f"{k}={v}" for k, v in plan.env_set.items()], *plan.argv]))
    return "\n".join(lines) + "\n"
