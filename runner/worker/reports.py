"""The core of runner.track: each process's record of a user script's training, and its metrics.json.

runner.track is the public face a script imports (its docstring shows the API); AccelRunTracker
(runner.tracker) reports through the same functions. Standard library only: a script's every
process imports it; torch is touched only through the objects handed in.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runner.contract import SCRIPT_STATE, SCRIPT_TRAINING, MetricsRecord, MetricValue, Observed
from runner.jsonio import write_json_atomic
from runner.vocab import LAUNCH_T0_VAR, PLAN_VAR
from runner.worker.device import peak_memory_mb, sync, watch_compute_dtype
from runner.worker.report_checks import Seen, contradiction

API_NAME = "runner.track"
LOSS_WINDOW = 10  # steps per point of the loss curve
_STACK_EVERY = 512  # loss tensors are stacked on their device in chunks: few objects, no host sync
_PROGRESS_EVERY_S = 0.25

# and AccelRunTracker, imported on demand (module __getattr__ below)
__all__ = ["active", "contradicted", "evaluate", "finish", "missing", "observe_accelerate", "setup", "step"]


@dataclass
class _Report:
    """One process's record of its training, for the main process's metrics.json."""

    plan: dict[str, Any]
    main: bool
    warmup: int
    start_perf: float | None = None
    start_wall: float | None = None
    times: list[float] = field(default_factory=list)  # perf_counter at the end of each step
    samples: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    losses: list[Any] = field(default_factory=list)  # floats or loss tensors (stacked in chunks)
    loss_steps: list[int] = field(default_factory=list)  # the step each loss belongs to
    pending: list[Any] = field(default_factory=list)
    evaluation: dict[str, float] = field(default_factory=dict)
    observed: Observed = field(default_factory=Observed.nothing)  # the Accelerator's state, once set up
    params: int | None = None
    device: Any = None  # a torch.device once set up
    cuda_marks: dict[str, Any] = field(default_factory=dict)  # CUDA events at the timed window's edges
    seen_dtype: list[str] = field(default_factory=list)
    last_progress: float = 0.0
    finished: bool = False
    seen: Seen = field(default_factory=Seen)  # what the optimizer and model did: the reports are checked against it
    gradient_state: Any = None  # Accelerate's GradientState: is it synchronising gradients at each report?
    watching: bool = False

    def begin(self) -> None:
        if self.start_perf is None:
            self.start_wall, self.start_perf = time.time(), time.perf_counter()


_report: _Report | None = None
_looked = False


def _current() -> _Report | None:
    """This process's report, or None outside accel-run (created on first use: importing costs nothing)."""
    global _report, _looked
    if not _looked:
        _looked = True
        plan_path = os.environ.get(PLAN_VAR)
        if plan_path:
            plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
            rank = int(os.environ.get("RANK", "0") or 0)
            warmup = int(plan["config"]["measure"]["warmup_steps"])
            _report = _Report(plan=plan, main=rank == 0, warmup=warmup)
    return _report


def active() -> bool:
    """Whether this process runs under accel-run (reports are recorded) or alone (every call does nothing)."""
    return _current() is not None


def setup(accelerator: Any, model: Any = None) -> None:
    """Tell accel-run the set-up the Accelerator really has; call it after `accelerator.prepare`, before training.

    World size, distributed type, mixed precision, device and gradient accumulation come from the
    Accelerator; with `model`, the dtype its first Linear layer computes in (seen once, by a hook)
    and its parameter count. accel-run compares them with the spec's launch section.
    """
    report = _current()
    if report is None:
        return
    import torch

    report.device = accelerator.device
    report.observed = _observed_state(accelerator.state, accelerator.gradient_accumulation_steps)
    _watch_training(report, model)
    if model is not None:
        inner = accelerator.unwrap_model(model)
        report.params = sum(p.numel() for p in inner.parameters())
        watch_compute_dtype(inner, report.seen_dtype)
    if report.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(report.device)
    report.begin()


def step(samples: int, *, loss: Any = None, tokens: int | None = None, steps: int = 1) -> None:
    """Mark the end of an optimizer step (or of `steps` steps): this process's samples (and tokens) and loss.

    `samples` (and `tokens`) count what this process trained since the last call; accel-run counts
    them once per process (data parallel: every process trains its own batch). `loss` may be a
    tensor: it stays on its device until the end (no sync per step).
    """
    report = _current()
    if report is None or not report.main:
        return
    now = time.perf_counter()
    report.begin()
    if steps < 1 or samples < 0:
        raise ValueError(f"{API_NAME}.step: steps must be >= 1 and samples >= 0 (got steps={steps}, samples={samples})")
    gradients = report.gradient_state
    report.seen.reported(int(samples), steps, None if gradients is None else bool(gradients.sync_gradients))
    cuda = report.device is not None and report.device.type == "cuda"
    crossing = len(report.times) < report.warmup <= len(report.times) + steps
    if cuda and crossing:  # the timed window starts with the device idle, as the built-in worker's does
        sync(report.device)
        now = time.perf_counter()
    for _ in range(steps - 1):  # steps reported at once (a tracker logging every few steps) end together
        report.times.append(now)
        report.samples.append(0)
        report.tokens.append(0)
    report.times.append(now)
    report.samples.append(int(samples))
    report.tokens.append(int(tokens or 0))
    count = len(report.times)
    if cuda:
        if crossing:
            _cuda_mark(report, "warmup")
        _cuda_mark(report, "last")
    if loss is not None:
        _keep_loss(report, loss, count)
    if now - report.last_progress >= _PROGRESS_EVERY_S:
        report.last_progress = now
        record = {"step": count, "total": 0, "phase": "train", "time": time.time()}
        write_json_atomic(report.plan["outputs"]["progress"], record, durable=False)


def evaluate(*, eval_loss: Any = None, accuracy: Any = None) -> None:
    """Report evaluation results (the last ones reported count): eval_loss, and accuracy as a fraction 0-1."""
    report = _current()
    if report is None or not report.main:
        return
    if eval_loss is not None:
        report.evaluation["eval_loss"] = float(eval_loss)
    if accuracy is not None:
        report.evaluation["accuracy"] = float(accuracy)


def finish() -> None:
    """Write the report (main process); accel-run's wrapper calls it when the script returns, so it is optional.

    Reports that contradict what the optimizer and model did write nothing: the wrapper fails the run
    with `contradicted()`, as numbers built on them would be wrong.
    """
    report = _current()
    if report is None or not report.main or report.finished or not report.times:
        return
    report.finished = True
    if not report.observed:
        observe_accelerate()
    if contradicted():
        return
    write_json_atomic(report.plan["outputs"]["metrics"], _record(report).as_json())


def contradicted() -> str:
    """How this process's reports contradict what its optimizer and model did (located, naming the fix), or ''.

    Checked: optimizer steps reported while Accelerate was accumulating gradients, more or fewer steps
    than the optimizer took, samples per step unlike the micro-batches the model trained, and a declared
    script.batch_size the script does not train (see runner.track_checks).
    """
    report = _current()
    if report is None or not report.main or not report.times:
        return ""
    script = report.plan.get("config", {}).get("script") or {}
    return contradiction(report.seen, script.get("batch_size"), script.get("batch_size_arg"))


def missing() -> str:
    """What this process failed to report, as a sentence naming the API; '' when all is there (or not main)."""
    report = _current()
    if report is None or not report.main:
        return ""
    if not report.times:
        return (
            f"the script reported nothing to accel-run: call {API_NAME}.step(samples=...) once per optimizer step "
            f"(and {API_NAME}.setup(accelerator, model) before training), or pass "
            f"{API_NAME}.AccelRunTracker(samples_per_step=...) to Accelerator(log_with=...)"
        )
    if not report.observed.world_size:
        return (
            f"the script reported steps but no Accelerator: call {API_NAME}.setup(accelerator, model) after "
            "accelerator.prepare (accel-run checks the set-up it really has against the spec)"
        )
    return ""


# --- what is observed ------------------------------------------------------------------------


def _observed_state(state: Any, accumulation: Any) -> Observed:
    """The set-up of an Accelerate state (an AcceleratorState): what a script's Observed records first."""
    import accelerate
    import torch

    port = os.environ.get("MASTER_PORT", "")
    return Observed(
        world_size=state.num_processes,
        distributed_type=str(state.distributed_type).split(".")[-1],
        backend=getattr(state, "backend", None),
        mixed_precision=str(state.mixed_precision),
        launcher_mixed_precision=os.environ.get("ACCELERATE_MIXED_PRECISION"),
        device=state.device.type,
        main_process_port=int(port) if port.isdigit() else None,
        threads_per_process=[torch.get_num_threads()],
        gradient_accumulation_steps=accumulation,
        torch=torch.__version__,
        accelerate=accelerate.__version__,
        python=sys.version.split()[0],
        recorded=SCRIPT_STATE,
    )


def observe_accelerate() -> None:
    """The set-up from Accelerate's shared state, for a script that reports without setup() (the tracker)."""
    report = _current()
    if report is None or "accelerate" not in sys.modules:
        return
    from accelerate.state import AcceleratorState, GradientState

    if not AcceleratorState._shared_state:  # no Accelerator was made
        return
    state = AcceleratorState()
    report.observed = _observed_state(state, GradientState().num_steps)
    report.device = state.device
    _watch_training(report, None)


def _watch_training(report: _Report, model: Any) -> None:
    """Hooks that count what training really does: the optimizers' steps, the model's training forwards and
    their batch sizes; and Accelerate's gradient state, read at each report. A few microseconds per step."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    seen = report.seen
    seen.accumulation = int(report.observed.gradient_accumulation_steps or 1)
    seen.world = int(report.observed.world_size or 1)
    if not report.main:  # only the main process reports, so only its reports are checked
        return
    if not report.watching:
        report.watching = True
        from accelerate.state import GradientState

        report.gradient_state = GradientState()
        steps = seen.optimizer_steps

        def stepped(optimizer: Any, _args: Any, _kwargs: Any) -> None:
            steps[id(optimizer)] = steps.get(id(optimizer), 0) + 1

        register_optimizer_step_post_hook(stepped)
    if model is None:
        return

    def forward(module: Any, args: Any, kwargs: Any) -> None:
        if module.training and torch.is_grad_enabled():
            seen.forward(_batch_of(args, kwargs))

    model.register_forward_pre_hook(forward, with_kwargs=True)


def _batch_of(args: Any, kwargs: Any) -> int:
    """The batch dimension of a forward's first tensor input (a mapping's first value counts), 0 if none."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, dict):
            value = next(iter(value.values()), None)
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) >= 1:
            return int(shape[0])
    return 0


def _cuda_mark(report: _Report, name: str) -> None:
    import torch

    event = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
    event.record()
    report.cuda_marks[name] = event


def _keep_loss(report: _Report, loss: Any, count: int) -> None:
    report.loss_steps.append(count)
    if hasattr(loss, "detach"):
        report.pending.append(loss.detach().float().reshape(()))
        if len(report.pending) >= _STACK_EVERY:
            _stack_pending(report)
    else:
        report.losses.append(float(loss))


def _stack_pending(report: _Report) -> None:
    if report.pending:
        import torch

        report.losses.append(torch.stack(report.pending))
        report.pending = []


def _loss_values(report: _Report) -> list[float]:
    _stack_pending(report)
    values: list[float] = []
    for item in report.losses:
        values.extend(item.cpu().tolist() if hasattr(item, "cpu") else [item])
    return values


# --- metrics.json ------------------------------------------------------------------------------


def _timed(report: _Report) -> tuple[int, float, float]:
    """(timed steps, timed seconds, training seconds): the steps after the warm-up, as the built-in worker times."""
    count, times = len(report.times), report.times
    start = report.start_perf if report.start_perf is not None else times[0]
    warmup = min(report.warmup, count - 1)  # a short script still has one timed step
    # steps reported together (a tracker logging every few steps) end at one time: the timed window
    # starts after the whole group, or its samples would count with no time to train them
    while 0 < warmup < count - 1 and times[warmup] == times[warmup - 1]:
        warmup += 1
    edge = times[warmup - 1] if warmup > 0 else start
    timed_s, train_s = times[-1] - edge, times[-1] - start
    marks = report.cuda_marks
    if "warmup" in marks and "last" in marks and warmup == report.warmup:
        # on a GPU the host runs ahead of the device: time the device between the two steps' ends
        marks["last"].synchronize()
        timed_s = marks["warmup"].elapsed_time(marks["last"]) / 1000
        train_s = (times[warmup - 1] - start) + timed_s
    return count - warmup, timed_s, train_s


def _record(report: _Report) -> MetricsRecord:
    import socket

    timed_steps, timed_s, train_s = _timed(report)
    world = int(report.observed.world_size or 1)
    samples = sum(report.samples[-timed_steps:]) * world
    tokens = sum(report.tokens[-timed_steps:]) * world
    losses = _loss_values(report)
    tail = losses[-max(1, len(losses) // 10) :]
    curve = []
    for start in range(0, len(losses), LOSS_WINDOW):
        window = losses[start : start + LOSS_WINDOW]
        curve.append([report.loss_steps[start + len(window) - 1], round(sum(window) / len(window), 6)])
    peak, source = peak_memory_mb(report.device)
    launch_t0 = float(os.environ.get(LAUNCH_T0_VAR, "nan"))
    start_wall = report.start_wall if report.start_wall is not None else time.time()
    final_loss = sum(tail) / len(tail) if tail else None
    metrics: dict[str, MetricValue] = {
        "train_time_s": round(train_s, 6),
        "timed_time_s": round(timed_s, 6),
        "startup_s": round(start_wall - launch_t0, 6) if launch_t0 == launch_t0 else None,
        "samples_per_s": round(samples / timed_s, 3) if timed_s > 0 else None,
        "step_time_ms": round(1000 * timed_s / timed_steps, 6) if timed_steps else None,
        "optimizer_steps": len(report.times),
        "timed_steps": timed_steps,
        "final_loss": round(final_loss, 6) if final_loss is not None and final_loss == final_loss else None,
        "eval_loss": report.evaluation.get("eval_loss"),
        "accuracy": report.evaluation.get("accuracy"),
        "peak_memory_mb": round(peak, 1),
        "peak_memory_source": source,
        "processes": world,
        "mixed_precision": report.observed.mixed_precision,
        "global_batch_size": round(samples / timed_steps) if timed_steps else None,
        "params": report.params,
    }
    if tokens:
        metrics["tokens_per_s"] = round(tokens / timed_s, 3) if timed_s > 0 else None
    observed = replace(
        report.observed,
        compute_dtype=report.seen_dtype[0] if report.seen_dtype else None,
        device_names=[],
        diverged=final_loss is not None and final_loss != final_loss,
        recorded=(report.observed.recorded or ()) + SCRIPT_TRAINING,  # a script without setup(): these alone
    )
    rank: dict[str, Any] = {
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "device": str(report.device) if report.device is not None else observed.device,
        "threads": observed.threads_per_process[0] if observed.threads_per_process else None,
        "peak_memory_mb": round(peak, 1),
        "peak_memory_source": source,
    }
    plan = report.plan
    return MetricsRecord(
        run=plan["run"],
        repeat=plan["repeat"],
        workload="script",
        metrics=metrics,
        loss_curve=curve,
        observed=observed,
        ranks=[rank],  # the main process only: a script's other processes report nothing
    )
