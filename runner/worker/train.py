"""The worker's training loop, measured honestly, and its report (metrics.json).

Honesty rules: every timing boundary synchronises the device (CUDA work is asynchronous) and,
with several processes, waits for all of them; warm-up steps are excluded from the timed part;
nothing on the hot path forces a host sync (losses stay on the device until the end); what ran
(world size, distributed type, precision, threads) is observed, not assumed.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from runner.jsonio import write_json_atomic
from runner.plan.worker_plan import Observed, WorkerPlan
from runner.spec.workload import workload_of
from runner.vocab import LAUNCH_T0_VAR
from runner.worker import disturbance
from runner.worker.build import build_model, build_optimizer, build_schedule
from runner.worker.data import make_dataset
from runner.worker.failpoint import Failpoint
from runner.worker.memory import cpu_tensor_peak_mb
from runner.worker.observe import Progress, current_rss_mb, rank_facts, start_heartbeat
from runner.worker.probe import attribution


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_plan(plan_path: str) -> None:
    """Run one launch as plan.json describes; the main process writes metrics.json at the end."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    plan = WorkerPlan.read(plan_path)
    config, declared, outputs = plan.config, plan.declared, plan.outputs
    work = workload_of(config)
    train = config.train

    # Precision comes from `accelerate launch` (the compiled config), never from here: passing it
    # would override the launcher, and "the declared precision ran" could then never fail.
    accelerator = Accelerator(gradient_accumulation_steps=train.gradient_accumulation_steps)
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    start_heartbeat(f"{outputs.heartbeat_prefix}{rank}")
    if world != declared.processes:
        # A wrong world size changes what every later number means; stop before training.
        raise SystemExit(
            f"accel-run worker: declared {declared.processes} processes but this process sees a world of "
            f"{world} ({accelerator.distributed_type}); the launch did not start a real process group"
        )
    progress = Progress(outputs.progress, work.optimizer_steps, enabled=accelerator.is_main_process)
    rss_at_start = current_rss_mb()

    set_seed(train.seed)
    inputs, labels, eval_inputs, eval_labels = make_dataset(config.data, work.train_samples, work.eval_samples)
    model = build_model(config.model).to(device)
    optimizer, optimizer_impl = build_optimizer(model, train)
    scheduler = build_schedule(optimizer, train, total_steps=work.optimizer_steps, processes=world)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    inputs, labels = inputs.to(device), labels.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    compute_dtype: list[str] = []  # the dtype the first layer really computed in (autocast or not)
    first_linear = next(m for m in accelerator.unwrap_model(model).modules() if isinstance(m, torch.nn.Linear))

    def observe_dtype(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        compute_dtype.append(str(output.dtype))
        hook.remove()  # once is enough; nothing stays on the hot path

    hook = first_linear.register_forward_hook(observe_dtype)

    micro_total = work.optimizer_steps * work.accumulation
    losses = torch.zeros(micro_total, device=device)  # per micro-batch, read once at the end
    warmup = min(config.measure.warmup_steps, max(0, work.optimizer_steps - 1))
    batch = train.batch_size
    epoch_gen = torch.Generator()
    failpoint = Failpoint.from_env()

    def micro_step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One micro-batch of the training step (the attribution probe times this same code)."""
        with accelerator.accumulate(model):
            loss = F.cross_entropy(model(x), y)
            accelerator.backward(loss)
            if train.max_grad_norm is not None and accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), train.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        return loss

    accelerator.wait_for_everyone()
    _sync(device)
    first_step_wall = time.time()
    train_start = time.perf_counter()
    timed_start = train_start if warmup == 0 else None
    cpu_at_start = disturbance.sample() if warmup == 0 else None
    step = micro = epoch = 0
    while step < work.optimizer_steps:
        epoch_gen.manual_seed(train.seed * 1_000_003 + epoch)
        permutation = torch.randperm(work.train_samples, generator=epoch_gen)
        usable = work.micro_batches_per_epoch * batch * world
        # Global micro-batch m is permutation[m*world*batch : (m+1)*world*batch], split across ranks:
        # N processes with batch b see exactly the batches of 1 process with batch N*b.
        order = permutation[:usable].view(work.micro_batches_per_epoch, world, batch)[:, rank, :].to(device)
        for index in range(work.micro_batches_per_epoch - work.micro_batches_per_epoch % work.accumulation):
            if step >= work.optimizer_steps:
                break
            batch_index = order[index]
            loss = micro_step(inputs.index_select(0, batch_index), labels.index_select(0, batch_index))
            losses[micro] = loss.detach()
            micro += 1
            if accelerator.sync_gradients:
                step += 1
                if step == warmup:
                    accelerator.wait_for_everyone()
                    _sync(device)
                    timed_start = time.perf_counter()
                    cpu_at_start = disturbance.sample()
                progress.update(step)
                failpoint.fire(step, rank)
        epoch += 1
    accelerator.wait_for_everyone()
    _sync(device)
    train_end = time.perf_counter()
    cpu_at_end = disturbance.sample()
    progress.update(step, "eval", force=True)

    timed_steps = work.optimizer_steps - warmup
    timed_time = train_end - (timed_start if timed_start is not None else train_start)
    final_loss, loss_curve = _losses(accelerator, losses, work, train.loss_every_steps)
    eval_loss, accuracy = _evaluate(accelerator, model, eval_inputs, eval_labels)
    rank_report = rank_facts(device, accelerator.unwrap_model(model))
    rank_report["rss_at_start_mb"] = round(rss_at_start, 1)
    rank_report["timed_cpu_s"] = round(disturbance.own_cpu_s(cpu_at_start or cpu_at_end, cpu_at_end), 6)

    probe: dict[str, Any] = {}
    if config.measure.attribution and timed_steps > 0:
        progress.update(step, "attribution", force=True)
        # Every rank must run the same number of probe collectives: agree on one step time.
        step_time = accelerator.reduce(torch.tensor([timed_time / timed_steps], device=device), reduction="max")
        probe = attribution(
            accelerator,
            model,
            optimizer,
            inputs,
            labels,
            batch=batch,
            accumulation=work.accumulation,
            step_time_s=float(step_time.item()),
            whole_step=lambda: _probe_step(micro_step, inputs, labels, batch, work.accumulation),
        )
    if device.type == "cpu":
        # Peak RSS holds the runtime too; measure the tensors, as CUDA's allocator peak does on a GPU.
        progress.update(step, "memory", force=True)
        resident = [*model.parameters(), *_state_tensors(optimizer), inputs, labels, eval_inputs, eval_labels]
        peak = cpu_tensor_peak_mb(lambda: _probe_step(micro_step, inputs, labels, batch, work.accumulation), resident)
        rank_report["peak_rss_mb"] = rank_report["peak_memory_mb"]
        rank_report["peak_memory_mb"], rank_report["peak_memory_source"] = round(peak, 1), "tensor_peak"
    ranks = accelerator.gather_for_metrics([rank_report], use_gather_object=True)
    if accelerator.is_main_process:
        launch_t0 = float(os.environ.get(LAUNCH_T0_VAR, "nan"))
        metrics = {
            "train_time_s": round(train_end - train_start, 6),
            "timed_time_s": round(timed_time, 6),
            "startup_s": round(first_step_wall - launch_t0, 6) if launch_t0 == launch_t0 else None,
            "samples_per_s": round(timed_steps * work.global_batch / timed_time, 3) if timed_time > 0 else None,
            "step_time_ms": round(1000 * timed_time / timed_steps, 6) if timed_steps else None,
            "optimizer_steps": step,
            "timed_steps": timed_steps,
            "final_loss": final_loss if math.isfinite(final_loss) else None,
            "eval_loss": eval_loss,
            "accuracy": accuracy,
            "peak_memory_mb": max(r["peak_memory_mb"] for r in ranks),
            "peak_memory_source": ranks[0]["peak_memory_source"],
            "processes": world,
            "mixed_precision": accelerator.mixed_precision,
            "global_batch_size": work.global_batch,
            "params": work.params,
        }
        observed = Observed(
            world_size=world,
            distributed_type=str(accelerator.distributed_type).split(".")[-1],
            backend=getattr(accelerator.state, "backend", None),
            mixed_precision=accelerator.mixed_precision,
            launcher_mixed_precision=os.environ.get("ACCELERATE_MIXED_PRECISION"),
            compute_dtype=compute_dtype[0] if compute_dtype else None,
            device=device.type,
            device_names=sorted({r["device_name"] for r in ranks}),
            threads_per_process=[r["threads"] for r in ranks],
            gradient_accumulation_steps=accelerator.gradient_accumulation_steps,
            optimizer_implementation=optimizer_impl,
            param_hashes=[r["param_hash"] for r in ranks],
            diverged=not math.isfinite(final_loss),
            torch=torch.__version__,
            accelerate=_accelerate_version(),
            python=sys.version.split()[0],
        )
        host = rank_report["hostname"]
        local_cpu_s = sum(r["timed_cpu_s"] for r in ranks if r["hostname"] == host)
        shares = disturbance.cpu_disturbance(cpu_at_start or cpu_at_end, cpu_at_end, local_cpu_s)
        if device.type == "cuda":
            shares["gpu_other_processes"] = disturbance.gpu_other_processes(device, {r["pid"] for r in ranks})
        write_json_atomic(
            outputs.metrics,
            {
                "format": 1,
                "run": plan.run,
                "repeat": plan.repeat,
                "metrics": metrics,
                "loss_curve": loss_curve,
                "observed": observed.as_json(),
                "ranks": ranks,
                "attribution": probe,
                "disturbance": shares,
            },
        )
        progress.update(step, "done", force=True)
    _finish(accelerator, f"{outputs.done_prefix}{rank}", failpoint, rank)


def _state_tensors(optimizer: Any) -> list[torch.Tensor]:
    """The optimizer's state tensors (Adam's moments, SGD's momentum)."""
    raw = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
    return [v for state in raw.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


def _probe_step(micro_step: Any, inputs: torch.Tensor, labels: torch.Tensor, batch: int, accumulation: int) -> None:
    """One whole optimizer step through the training loop's own code, on random batches."""
    for _ in range(accumulation):
        index = torch.randint(0, inputs.shape[0], (batch,)).to(inputs.device)
        micro_step(inputs.index_select(0, index), labels.index_select(0, index))


def _finish(accelerator: Any, done_marker: str, failpoint: Failpoint, rank: int) -> None:
    """End the process once its work is durable, without running the interpreter's shutdown.

    Why not return normally: gloo's worker threads can still hold Python-owned tensors of the last
    collective when the interpreter finalises; freeing them then needs the interpreter and the
    process aborts ("terminate called without an active exception", SIGABRT) after a run that
    succeeded. Nothing is left to do at this point: metrics.json is written and fsynced, so the
    process flushes its output, marks itself done (the runner keeps a run whose every rank got
    here) and leaves with os._exit, which skips finalisation and its race.
    """
    accelerator.end_training()
    Path(done_marker).touch()
    failpoint.fire_at_end(rank)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _losses(accelerator: Any, losses: torch.Tensor, work: Any, every: int) -> tuple[float, list[list[float]]]:
    """The final loss (mean over the last epoch's worth of steps, all ranks) and the loss curve."""
    per_step = losses.view(-1, work.accumulation).mean(dim=1)  # one value per optimizer step
    per_step = accelerator.reduce(per_step, reduction="mean").float().cpu()
    window = max(1, min(work.steps_per_epoch, per_step.numel()))
    final = float(per_step[-window:].mean()) if per_step.numel() else float("nan")  # nan: diverged or empty
    curve = []
    for start in range(0, per_step.numel(), every):
        chunk = per_step[start : start + every]
        curve.append([start + chunk.numel(), round(float(chunk.mean()), 6)])
    return round(final, 6), curve


def _evaluate(
    accelerator: Any, model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor
) -> tuple[float | None, float | None]:
    """Eval loss and accuracy over the eval set; each process scores a shard and every sample counts once."""
    if inputs.shape[0] == 0:
        return None, None
    loader = accelerator.prepare(DataLoader(TensorDataset(inputs, labels), batch_size=1024))
    model.eval()
    total_loss = torch.zeros((), device=accelerator.device)
    correct = torch.zeros((), device=accelerator.device, dtype=torch.long)
    count = 0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x)
            logits, y = accelerator.gather_for_metrics((logits.float(), y))
            total_loss += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(dim=1) == y).sum()
            count += y.numel()
    model.train()
    return round(float(total_loss) / count, 6), round(float(correct) / count, 6)


def _accelerate_version() -> str:
    import accelerate

    return str(accelerate.__version__)
