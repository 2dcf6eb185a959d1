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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from runner.jsonio import write_json_atomic
from runner.plan.worker_plan import Observed, WorkerPlan
from runner.spec.models import RunConfig, SyntheticTokens
from runner.spec.workload import workload_of
from runner.vocab import LAUNCH_T0_VAR
from runner.worker import disturbance
from runner.worker.build import build_model, build_optimizer, build_schedule
from runner.worker.data import make_dataset
from runner.worker.failpoint import Failpoint
from runner.worker.memory import cpu_tensor_peak_mb
from runner.worker.observe import Progress, current_rss_mb, rank_facts, start_heartbeat
from runner.worker.probe import attribution

EVAL_LOGITS = 1 << 22  # logits per eval batch of token data (16 MB in fp32)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """The training loop's clock readings; every boundary synchronised the device and the ranks."""

    first_step_wall: float  # wall clock, for start-up time (launch to first step)
    train_start: float
    train_end: float
    timed_start: float  # after the warm-up steps
    cpu_at_start: disturbance.CpuSample  # the machine's CPU at the timed window's edges
    cpu_at_end: disturbance.CpuSample
    steps: int
    timed_steps: int

    @property
    def timed_s(self) -> float:
        """Seconds of the timed part."""
        return self.train_end - self.timed_start


def run_plan(plan_path: str) -> None:
    """Run one launch as plan.json describes; the main process writes metrics.json at the end."""
    trainer = Trainer(WorkerPlan.read(plan_path))
    timing = trainer.train()
    trainer.report(timing)
    _finish(trainer.accelerator, f"{trainer.plan.outputs.done_prefix}{trainer.rank}", trainer.failpoint, trainer.rank)


class Trainer:
    """One rank of a launch: its Accelerator, data, model and optimizer, trained and measured."""

    def __init__(self, plan: WorkerPlan) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.plan, config = plan, plan.builtin
        self.work, self.train_config = workload_of(config), config.train
        # Precision comes from `accelerate launch` (the compiled config), never from here: passing it
        # would override the launcher, and "the declared precision ran" could then never fail.
        self.accelerator = Accelerator(gradient_accumulation_steps=self.train_config.gradient_accumulation_steps)
        self.device = self.accelerator.device
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        start_heartbeat(f"{plan.outputs.heartbeat_prefix}{self.rank}")
        if self.world != plan.declared.processes:
            # A wrong world size changes what every later number means; stop before training.
            raise SystemExit(
                f"accel-run worker: declared {plan.declared.processes} processes but this process sees a world of "
                f"{self.world} ({self.accelerator.distributed_type}); the launch did not start a real process group"
            )
        self.progress = Progress(plan.outputs.progress, self.work.optimizer_steps, self.accelerator.is_main_process)
        self.rss_at_start = current_rss_mb()
        self.failpoint = Failpoint.from_env()
        set_seed(self.train_config.seed)
        self.inputs, self.labels, self.eval_inputs, self.eval_labels = make_dataset(
            config.data, self.work.train_samples, self.work.eval_samples
        )
        model = build_model(config.model).to(self.device)
        optimizer, self.optimizer_impl = build_optimizer(model, self.train_config)
        scheduler = build_schedule(
            optimizer, self.train_config, total_steps=self.work.optimizer_steps, processes=self.world
        )
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.inputs, self.labels = self.inputs.to(self.device), self.labels.to(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.compute_dtype = self._observe_compute_dtype()
        self.losses = torch.zeros(self.work.optimizer_steps * self.work.accumulation, device=self.device)

    def _observe_compute_dtype(self) -> list[str]:
        """The dtype the first layer really computes in (autocast or not), seen once by a hook."""
        seen: list[str] = []
        first_linear = next(
            m for m in self.accelerator.unwrap_model(self.model).modules() if isinstance(m, torch.nn.Linear)
        )

        def observe(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            seen.append(str(output.dtype))
            hook.remove()  # once is enough; nothing stays on the hot path

        hook = first_linear.register_forward_hook(observe)
        return seen

    def micro_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One micro-batch of the training step (the attribution probe times this same code)."""
        accelerator, train = self.accelerator, self.train_config
        with accelerator.accumulate(self.model):
            loss = F.cross_entropy(self.model(x), y)
            accelerator.backward(loss)
            if train.max_grad_norm is not None and accelerator.sync_gradients:
                accelerator.clip_grad_norm_(self.model.parameters(), train.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return loss

    def whole_step(self) -> None:
        """One whole optimizer step through the training loop's own code, on random batches."""
        for _ in range(self.work.accumulation):
            index = torch.randint(0, self.inputs.shape[0], (self.train_config.batch_size,)).to(self.device)
            self.micro_step(self.inputs.index_select(0, index), self.labels.index_select(0, index))

    def _boundary(self) -> float:
        """A timing boundary: every rank here and the device idle, then the clock."""
        self.accelerator.wait_for_everyone()
        _sync(self.device)
        return time.perf_counter()

    def train(self) -> Timing:
        """The training loop, with its warm-up excluded from the timed part."""
        work, batch, world, rank = self.work, self.train_config.batch_size, self.world, self.rank
        warmup = min(self.plan.config.measure.warmup_steps, max(0, work.optimizer_steps - 1))
        epoch_gen = torch.Generator()
        train_start = timed_start = self._boundary()
        first_step_wall = time.time()
        cpu_at_start = disturbance.sample()
        step = micro = epoch = 0
        while step < work.optimizer_steps:
            epoch_gen.manual_seed(self.train_config.seed * 1_000_003 + epoch)
            permutation = torch.randperm(work.train_samples, generator=epoch_gen)
            usable = work.micro_batches_per_epoch * batch * world
            # Global micro-batch m is permutation[m*world*batch : (m+1)*world*batch], split across ranks:
            # N processes with batch b see exactly the batches of 1 process with batch N*b.
            order = permutation[:usable].view(work.micro_batches_per_epoch, world, batch)[:, rank, :].to(self.device)
            for index in range(work.micro_batches_per_epoch - work.micro_batches_per_epoch % work.accumulation):
                if step >= work.optimizer_steps:
                    break
                batch_index = order[index]
                loss = self.micro_step(
                    self.inputs.index_select(0, batch_index), self.labels.index_select(0, batch_index)
                )
                self.losses[micro] = loss.detach()
                micro += 1
                if self.accelerator.sync_gradients:
                    step += 1
                    if step == warmup:
                        timed_start = self._boundary()
                        cpu_at_start = disturbance.sample()
                    self.progress.update(step)
                    self.failpoint.fire(step, rank)
            epoch += 1
        train_end = self._boundary()
        cpu_at_end = disturbance.sample()
        timed_steps = work.optimizer_steps - warmup
        return Timing(first_step_wall, train_start, train_end, timed_start, cpu_at_start, cpu_at_end, step, timed_steps)

    def _measure_after(self, timing: Timing) -> tuple[dict[str, Any], dict[str, Any]]:
        """After training, on every rank: this rank's facts and the attribution probe (same collectives on all)."""
        rank_report = rank_facts(self.device, self.accelerator.unwrap_model(self.model))
        rank_report["rss_at_start_mb"] = round(self.rss_at_start, 1)
        rank_report["timed_cpu_s"] = round(disturbance.own_cpu_s(timing.cpu_at_start, timing.cpu_at_end), 6)
        probe: dict[str, Any] = {}
        if self.plan.config.measure.attribution and timing.timed_steps > 0:
            self.progress.update(timing.steps, "attribution", force=True)
            # Every rank must run the same number of probe collectives: agree on one step time.
            step_s = timing.timed_s / timing.timed_steps
            step_time = self.accelerator.reduce(torch.tensor([step_s], device=self.device), reduction="max")
            probe = attribution(
                self.accelerator,
                self.model,
                self.optimizer,
                self.inputs,
                self.labels,
                batch=self.train_config.batch_size,
                accumulation=self.work.accumulation,
                step_time_s=float(step_time.item()),
                whole_step=self.whole_step,
            )
        if self.device.type == "cpu":
            # Peak RSS holds the runtime too; measure the tensors, as CUDA's allocator peak does on a GPU.
            self.progress.update(timing.steps, "memory", force=True)
            resident = [*self.model.parameters(), *_state_tensors(self.optimizer)]
            resident += [self.inputs, self.labels, self.eval_inputs, self.eval_labels]
            rank_report["peak_rss_mb"] = rank_report["peak_memory_mb"]
            rank_report["peak_memory_mb"] = round(cpu_tensor_peak_mb(self.whole_step, resident), 1)
            rank_report["peak_memory_source"] = "tensor_peak"
        return rank_report, probe

    def report(self, timing: Timing) -> None:
        """Losses, evaluation and measurements of every rank; the main rank writes metrics.json."""
        accelerator, work = self.accelerator, self.work
        self.progress.update(timing.steps, "eval", force=True)
        final_loss, loss_curve = _losses(accelerator, self.losses, work, self.train_config.loss_every_steps)
        eval_loss, accuracy = _evaluate(
            accelerator, self.model, self.eval_inputs, self.eval_labels, _eval_batch(self.plan.builtin)
        )
        rank_report, probe = self._measure_after(timing)
        ranks = accelerator.gather_for_metrics([rank_report], use_gather_object=True)
        if not accelerator.is_main_process:
            return
        launch_t0 = float(os.environ.get(LAUNCH_T0_VAR, "nan"))
        timed = timing.timed_s
        metrics = {
            "train_time_s": round(timing.train_end - timing.train_start, 6),
            "timed_time_s": round(timed, 6),
            "startup_s": round(timing.first_step_wall - launch_t0, 6) if launch_t0 == launch_t0 else None,
            "first_step_at": round(timing.first_step_wall, 6),  # wall clock: submit-to-first-step on a cluster
            "samples_per_s": round(timing.timed_steps * work.global_batch / timed, 3) if timed > 0 else None,
            "step_time_ms": round(1000 * timed / timing.timed_steps, 6) if timing.timed_steps else None,
            **self._token_rate(timing),
            "optimizer_steps": timing.steps,
            "timed_steps": timing.timed_steps,
            "final_loss": final_loss if math.isfinite(final_loss) else None,
            "eval_loss": eval_loss,
            "accuracy": accuracy,
            "peak_memory_mb": max(r["peak_memory_mb"] for r in ranks),
            "peak_memory_source": ranks[0]["peak_memory_source"],
            "processes": self.world,
            "mixed_precision": accelerator.mixed_precision,
            "global_batch_size": work.global_batch,
            "params": work.params,
        }
        record = {
            "format": 1,
            "run": self.plan.run,
            "repeat": self.plan.repeat,
            "metrics": metrics,
            "loss_curve": loss_curve,
            "observed": self._observed(ranks, final_loss).as_json(),
            "ranks": ranks,
            "attribution": probe,
            "disturbance": self._disturbance(timing, ranks, rank_report["hostname"]),
        }
        write_json_atomic(self.plan.outputs.metrics, record)
        self.progress.update(timing.steps, "done", force=True)

    def _token_rate(self, timing: Timing) -> dict[str, float | None]:
        """tokens_per_s for token data (predicted tokens over all processes per second after warm-up)."""
        tokens, timed = self.work.tokens_per_sample, timing.timed_s
        if not tokens:
            return {}
        rate = round(timing.timed_steps * self.work.global_batch * tokens / timed, 3) if timed > 0 else None
        return {"tokens_per_s": rate}

    def _observed(self, ranks: list[dict[str, Any]], final_loss: float) -> Observed:
        accelerator = self.accelerator
        return Observed(
            world_size=self.world,
            distributed_type=str(accelerator.distributed_type).split(".")[-1],
            backend=getattr(accelerator.state, "backend", None),
            mixed_precision=accelerator.mixed_precision,
            launcher_mixed_precision=os.environ.get("ACCELERATE_MIXED_PRECISION"),
            compute_dtype=self.compute_dtype[0] if self.compute_dtype else None,
            device=self.device.type,
            main_process_port=int(os.environ["MASTER_PORT"]) if os.environ.get("MASTER_PORT", "").isdigit() else None,
            device_names=sorted({r["device_name"] for r in ranks}),
            threads_per_process=[r["threads"] for r in ranks],
            gradient_accumulation_steps=accelerator.gradient_accumulation_steps,
            optimizer_implementation=self.optimizer_impl,
            param_hashes=[r["param_hash"] for r in ranks],
            machine_ranks=[r["machine_rank"] for r in ranks],
            nodes=[r["node"] for r in ranks],
            diverged=not math.isfinite(final_loss),
            torch=torch.__version__,
            accelerate=_accelerate_version(),
            python=sys.version.split()[0],
        )

    def _disturbance(self, timing: Timing, ranks: list[dict[str, Any]], host: str) -> dict[str, Any]:
        """What other work took of this machine while the run was timed (the ranks on it count as the run)."""
        local_cpu_s = sum(r["timed_cpu_s"] for r in ranks if r["hostname"] == host)
        shares = disturbance.cpu_disturbance(timing.cpu_at_start, timing.cpu_at_end, local_cpu_s)
        if self.device.type == "cuda":
            shares["gpu_other_processes"] = disturbance.gpu_other_processes(self.device, {r["pid"] for r in ranks})
        return shares


def _state_tensors(optimizer: Any) -> list[torch.Tensor]:
    """The optimizer's state tensors (Adam's moments, SGD's momentum)."""
    raw = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
    return [v for state in raw.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


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


def _eval_batch(config: RunConfig) -> int:
    """Eval batch size: 1024 samples, fewer for token data so a batch's logits stay near 16 MB."""
    if isinstance(config.data, SyntheticTokens):
        return max(1, min(1024, EVAL_LOGITS // (config.data.seq_len * config.data.vocab)))
    return 1024


def _evaluate(
    accelerator: Any, model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> tuple[float | None, float | None]:
    """Eval loss and accuracy over the eval set; each process scores a shard and every sample counts once.

    With token data every predicted token counts: loss per token, accuracy of next-token predictions.
    """
    if inputs.shape[0] == 0:
        return None, None
    loader = accelerator.prepare(DataLoader(TensorDataset(inputs, labels), batch_size=batch_size))
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
