"""Rules on launch settings that contradict each other, and on a script's batch option passed twice."""

from __future__ import annotations

from runner.errors import Severity
from runner.spec import advice
from runner.spec.models import FSDP_ON_CPU, RULE_FP16_ON_CPU, ScriptRunConfig
from runner.spec.resolved import ResolvedRun
from runner.spec.rules.context import Checker


def check_launch(checker: Checker, run: ResolvedRun) -> None:
    """Launch settings that contradict each other (GPUs, precision on CPU, machines)."""
    launch = run.config.launch
    if launch.gpu_ids is not None and len(launch.gpu_ids) != launch.processes:
        checker.run_report(
            run,
            ("launch", "gpu_ids"),
            f"gpu_ids lists {len(launch.gpu_ids)} GPU(s) but processes is {launch.processes}; give one GPU per process",
            also=(("launch", "processes"),),
        )
    if launch.mixed_precision == "fp16" and launch.device == "cpu":
        checker.run_report(
            run,
            ("launch", "mixed_precision"),
            RULE_FP16_ON_CPU,
            also=(("launch", "device"),),
        )
    if launch.fsdp is not None and launch.device == "cpu":
        checker.run_report(run, ("launch", "fsdp"), FSDP_ON_CPU, also=(("launch", "device"),))
    if launch.gpu_ids is not None and launch.device == "cpu":
        checker.run_report(
            run,
            ("launch", "gpu_ids"),
            "gpu_ids is set but device is cpu",
            severity=Severity.WARNING,
            code="gpu-ids-on-cpu",
        )
    checker.advise(run, advice.cuda_visible_devices(run))


def check_script_batch(checker: Checker, run: ResolvedRun, config: ScriptRunConfig) -> None:
    """script.batch_size is passed as its option: the same option in script.args would pass two batches."""
    script = config.script
    option = script.batch_size_arg
    if script.batch_size is None or option is None:
        return
    for index, arg in enumerate(script.args):
        where = run.source(("script", "args", index))
        if arg == option or arg.startswith(f"{option}="):
            checker.report(
                where,
                f"script.args passes {option} and so does script.batch_size ({script.batch_size}): remove "
                f"{option} and its value from script.args (accel-run adds {option} {script.batch_size})",
            )
            checker.claimed.add(where)  # said once, however many runs share these arguments
            return
