"""The worker's training loop, measured honestly, and its report (metrics.json).

Honesty rules: the timed part is cut into blocks of whole optimizer steps (runner.timing), each
closed by one device synchronisation (CUDA work is asynchronous) and none per step; warm-up steps
and the calibration of the block size are excluded from it; nothing on the hot path forces a host
sync (losses stay on the device until the end); timing-only steps added after training never
count in the loss, the loss curve or the accuracy; what ran (world size, distributed type,
precision, threads) is observed, not assumed. Every phase of the launch is stamped with the wall
clock, so the report can say where a launch's time went.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from runner.contract import MetricsRecord, MetricValue, Observed
from runner.jsonio import write_json_atomic
from runner.metrics import MEMORY_PART_METRICS
from runner.plan.worker_plan import WorkerPlan
from runner.spec.models import RunConfig, SyntheticTokens
from runner.spec.workload import workload_of
from runner.timing import Estimate, Rules, estimate, steps_per_block
from runner.vocab import LAUNCH_T0_VAR
from runner.worker import disturbance, sharding
from runner.worker.build import build_model, build_optimizer, build_schedule
from runner.worker.data import make_dataset
from runner.worker.device import sync, watch_compute_dtype
from runner.worker.failpoint import Failpoint
from runner.worker.memory import step_peak_of, training_memory
from runner.worker.observe import Progress, current_rss_mb, process_start_time, rank_facts, start_heartbeat
from runner.worker.probe import attribution

EVAL_LOGITS = 1 << 22  # logits per eval batch of token data (16 MB in fp32)
EXTEND_ROUNDS = 5  # rounds of timing-only blocks after training: each asks for what the estimate still lacks
EXTEND_TARGET = 0.02  # a launch's interval of its median block rate within +-2%: tight enough to stop extending
EXTEND_MARGIN = 2  # blocks asked beyond measure.min_blocks, so one stalled block does not leave it short


class BlockClock:
    """The timed part as blocks of whole optimizer steps: one synchronisation at each block's end, none per step.

    The block size is calibrated as asv calibrates its `number`: blocks of 1, 2, 4 ... steps until
    one lasts `block_s`; those calibration blocks are warm-up. Only the main rank keeps blocks: every
    optimizer step holds the ranks' gradient all-reduce, so its clock sees the whole group's pace.
    On a GPU a CUDA event also marks each block's end (the device's own timeline, kept beside the
    wall clock, which is the truth a user waits for).
    """

    def __init__(self, device: torch.device, block_s: float, total_steps: int, enabled: bool) -> None:
        self.device, self.block_s, self.total_steps, self.enabled = device, block_s, total_steps, enabled
        self.per_block = 1
        self.calibrating = True
        self.in_block = 0
        self.started = 0.0
        self.steps: list[int] = []
        self.seconds: list[float] = []
        self.events: list[Any] = []  # CUDA events at block edges (the first one opens the first block)
        self.extra_from: int | None = None  # index of the first block made of timing-only steps

    def begin(self) -> None:
        """(Re)start the clock at a block edge: the device idle, then the time."""
        self.in_block = 0
        if self.enabled:
            self.started = self._edge(first=True)

    def _edge(self, first: bool = False) -> float:
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            event.record()
            if first and self.events and self.events[-1] is not None:
                self.events.append(None)  # a gap: the next block's device time starts here, not at the last edge
            self.events.append(event)
        sync(self.device)
        return time.perf_counter()

    def step(self, step: int) -> None:
        """An optimizer step ended; close the block when it holds its steps."""
        self.in_block += 1
        if not self.enabled or self.in_block < self.per_block:
            return
        now = self._edge()
        duration = now - self.started
        if self.calibrating:
            if duration >= self.block_s:
                self.calibrating = False
                self.per_block = steps_per_block(duration / self.in_block, self.block_s, self.total_steps - step)
            else:
                self.per_block *= 2
        else:
            self.steps.append(self.in_block)
            self.seconds.append(duration)
        self.started, self.in_block = now, 0

    def close(self) -> None:
        """At the end of a stretch of steps: keep a partial block that is long enough to be one."""
        if not self.enabled or self.in_block == 0:
            return
        now = self._edge()
        duration = now - self.started
        if not self.calibrating and duration >= self.block_s / 2:
            self.steps.append(self.in_block)
            self.seconds.append(duration)
        self.in_block = 0

    def estimate(self) -> Estimate | None:
        """The launch's speed from the blocks so far."""
        return estimate(self.steps, self.seconds)

    def device_seconds(self) -> list[float] | None:
        """Each block's time on the device's own timeline (CUDA events), where there is one."""
        if self.device.type != "cuda" or not self.events:
            return None
        sync(self.device)
        spans = [
            a.elapsed_time(b) / 1000
            for a, b in zip(self.events, self.events[1:], strict=False)
            if a is not None and b is not None
        ]
        return [round(s, 6) for s in spans]


@dataclass
class Timing:
    """The training loop's clock readings (wall clock for phases, perf_counter inside)."""

    train_start: float
    train_end: float
    cpu_at_start: disturbance.CpuSample  # the machine's CPU at the timed part's edges
    cpu_at_end: disturbance.CpuSample
    steps: int
    clock: BlockClock
    marks: dict[str, float] = field(default_factory=dict)  # phase name -> wall clock when it ended

    def mark(self, phase: str) -> None:
        """Stamp the end of a phase with the wall clock."""
        self.marks[phase] = time.time()


# A finished rank's trainer stays referenced until the process ends (with os._exit, never the
# interpreter's shutdown): freeing it would run the process group's destructor, which joins gloo's
# worker threads, and one of them can wait forever on a peer that has already finished. Seen as a
# rank hung in ~ProcessGroupGloo after its work and done marker were written.
_NEVER_TORN_DOWN: list[Trainer] = []


def run_plan(plan_path: str, entered: float | None = None) -> None:
    """Run one launch as plan.json describes; the main process writes metrics.json at the end.

    Returns once this rank's work is durable and its done marker written; the caller ends the
    process (`python -m runner.worker` with os._exit, a forked rank by returning to its launcher).
    """
    marks = {"process": process_start_time(), "imports": entered if entered is not None else time.time()}
    trainer = Trainer(WorkerPlan.read(plan_path), marks)
    _NEVER_TORN_DOWN.append(trainer)
    timing = trainer.train()
    trainer.report(timing)
    _finish(trainer.accelerator, f"{trainer.plan.outputs.done_prefix}{trainer.rank}", trainer.failpoint, trainer.rank)


class Trainer:
    """One rank of a launch: its Accelerator, data, model and optimizer, trained and measured."""

    def __init__(self, plan: WorkerPlan, marks: dict[str, float]) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.plan, config = plan, plan.builtin
        self.marks = marks
        self.work, self.train_config = workload_of(config), config.train
        # Precision comes from `accelerate launch` (the compiled config), never from here: passing it
        # would override the launcher, and "the declared precision ran" could then never fail.
        self.accelerator = Accelerator(gradient_accumulation_steps=self.train_config.gradient_accumulation_steps)
        self.device = self.accelerator.device
        if self.device.type == "cuda":
            torch.cuda.init()  # type: ignore[no-untyped-call]  # the CUDA context now, so device initialisation is its own phase
            tf32 = plan.config.launch.tf32
            if tf32 is not None:  # after the Accelerator, which turns it on by itself with a dynamo backend
                torch.backends.cuda.matmul.allow_tf32 = tf32
                torch.backends.cudnn.allow_tf32 = tf32
        marks["device_init"] = time.time()
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
        self.param_elements = sum(p.numel() for p in model.parameters())  # before FSDP shards them
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.inputs, self.labels = self.inputs.to(self.device), self.labels.to(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.compute_dtype: list[str] = []  # the dtype the first layer really computes in, seen once
        watch_compute_dtype(self.accelerator.unwrap_model(self.model), self.compute_dtype)
        self.losses = torch.zeros(self.work.optimizer_steps * self.work.accumulation, device=self.device)
        sync(self.device)
        marks["setup"] = time.time()

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
        sync(self.device)
        return time.perf_counter()

    def micro_batches(self, first_epoch: int = 0) -> Iterator[torch.Tensor]:
        """This rank's sample indices of each micro-batch, epoch after epoch, in the seeded training order.

        Global micro-batch m of an epoch is permutation[m*world*batch : (m+1)*world*batch], split across
        ranks: N processes with batch b see exactly the batches of 1 process with batch N*b. Each epoch
        holds whole optimizer steps (a trailing partial accumulation is left out).
        """
        work, batch, world, rank = self.work, self.train_config.batch_size, self.world, self.rank
        epoch_gen = torch.Generator()
        epoch = first_epoch
        usable = work.micro_batches_per_epoch * batch * world
        whole = work.micro_batches_per_epoch - work.micro_batches_per_epoch % work.accumulation
        while True:
            epoch_gen.manual_seed(self.train_config.seed * 1_000_003 + epoch)
            permutation = torch.randperm(work.train_samples, generator=epoch_gen)
            order = permutation[:usable].view(work.micro_batches_per_epoch, world, batch)[:, rank, :].to(self.device)
            for index in range(whole):
                yield order[index]
            epoch += 1

    def train(self) -> Timing:
        """The declared training: warm-up steps, then the timed part in blocks (runner.timing)."""
        work, rank, measure = self.work, self.rank, self.plan.config.measure
        warmup = min(measure.warmup_steps, max(0, work.optimizer_steps - 1))
        clock = BlockClock(self.device, measure.block_s, work.optimizer_steps, enabled=self.accelerator.is_main_process)
        train_start = self._boundary()
        timing = Timing(train_start, train_start, disturbance.sample(), disturbance.sample(), 0, clock, self.marks)
        timing.mark("train_start")
        if warmup == 0:
            clock.begin()
        step = micro = 0
        batches = self.micro_batches()
        while step < work.optimizer_steps:
            batch_index = next(batches)
            loss = self.micro_step(self.inputs.index_select(0, batch_index), self.labels.index_select(0, batch_index))
            self.losses[micro] = loss.detach()
            micro += 1
            if self.accelerator.sync_gradients:
                step += 1
                if step == 1:  # the first step holds what happens once: compiling, autotuning, allocating
                    sync(self.device)
                    timing.mark("first_step")
                if step == warmup:
                    sync(self.device)
                    timing.mark("warmup")
                    timing.cpu_at_start = disturbance.sample()
                    clock.begin()
                elif step > warmup:
                    clock.step(step)
                self.progress.update(step)
                self.failpoint.fire(step, rank)
        clock.close()
        timing.train_end = self._boundary()
        timing.cpu_at_end = disturbance.sample()
        timing.steps = step
        timing.mark("train")
        if "warmup" not in timing.marks:
            timing.marks["warmup"] = timing.marks["train_start"]
        self.next_epoch = micro // max(1, work.micro_batches_per_epoch) + 1
        return timing

    def extend(self, timing: Timing) -> int:
        """Timing-only steps after the declared training, while its blocks cannot decide; how many ran.

        Run after the evaluation, so they never reach the loss, the loss curve or the accuracy. The
        main rank decides how many blocks are wanted (too few, or an interval looser than
        EXTEND_TARGET) and how many the budget allows: measure.extend_share of what this launch
        has cost so far, because another launch would cost all of it again; and never less than
        the blocks measure.min_blocks asks for, because a launch short of them decides nothing
        (with extend_share 0, none at all). A launch whose own interval no verdict reads (plan.timing_judged:
        no checked expectation reads the run's timing, or an earlier launch of it was fit to time), or one
        already disturbed beyond measure.max_disturbance (it will be unfit whatever it adds), gets only
        those (its Samples/s is still shown, from at least min_blocks blocks). Every rank runs the same
        steps (they hold collectives), so the count is agreed.
        """
        measure, clock = self.plan.config.measure, timing.clock
        if measure.extend_share <= 0:
            return 0
        rules = Rules(measure.min_blocks, measure.max_spread)
        launch_t0 = float(os.environ.get(LAUNCH_T0_VAR, "nan"))
        begun = launch_t0 if launch_t0 == launch_t0 else self.marks["process"]
        budget = measure.extend_share * max(0.0, time.time() - begun)
        batches = self.micro_batches(self.next_epoch)
        disturbed = self._disturbed(timing)
        extra = 0
        spent = 0.0
        for _ in range(EXTEND_ROUNDS):
            wanted = 0
            if self.accelerator.is_main_process:
                found = clock.estimate()
                short = max(0, rules.min_blocks - (found.blocks if found else 0))
                per_block = max(measure.block_s, statistics.median(clock.seconds) if clock.seconds else 0.0)
                affordable = min(_blocks_wanted(found, rules), int((budget - spent) / per_block))
                if not self.plan.timing_judged or disturbed:
                    affordable = 0  # no verdict reads this launch's own interval: nothing to tighten
                # the blocks measure.min_blocks asks for come whatever they cost: short of them, nothing is decided
                wanted = max(affordable, short + EXTEND_MARGIN if short else 0) * clock.per_block
            # the main rank's count reaches every rank (the others add 0)
            agreed = self.accelerator.reduce(torch.tensor([wanted], device=self.device), reduction="sum")
            steps = int(agreed.item())
            if steps <= 0:
                break
            if clock.extra_from is None:
                clock.extra_from = len(clock.steps)
                self._optimizer_steps(batches, 1)  # one step to warm again after the evaluation, untimed
            self.progress.update(timing.steps, "timing", force=True)
            started = time.perf_counter()
            clock.begin()
            self._optimizer_steps(batches, steps, clock)
            clock.close()
            spent += time.perf_counter() - started
            extra += steps
        return extra

    def _optimizer_steps(self, batches: Iterator[torch.Tensor], steps: int, clock: BlockClock | None = None) -> None:
        """`steps` optimizer steps through the training step, on the training order's next batches."""
        done = 0
        while done < steps:
            batch_index = next(batches)
            self.micro_step(self.inputs.index_select(0, batch_index), self.labels.index_select(0, batch_index))
            if self.accelerator.sync_gradients:
                done += 1
                if clock is not None:
                    clock.step(done)

    def _disturbed(self, timing: Timing) -> bool:
        """Whether others already took more of the cores than measure.max_disturbance while this launch was timed.

        Such a launch is unfit to time (results.records), so tightening its interval would buy nothing: under a
        CPU hog, day6-quick's 2-process large run spent a median 9.6 s per launch on such steps. One collective
        (the ranks' CPU seconds, which the share leaves out); off where ranks span machines, whose CPU this
        host's counters do not see (the report's figure still judges those).
        """
        world = self.accelerator.num_processes
        if int(os.environ.get("LOCAL_WORLD_SIZE", world)) != world:
            return False
        own = disturbance.own_cpu_s(timing.cpu_at_start, timing.cpu_at_end)
        ranks = self.accelerator.reduce(torch.tensor([own], device=self.device), reduction="sum")
        limit = self.plan.config.measure.max_disturbance
        return disturbance.over_limit(timing.cpu_at_start, timing.cpu_at_end, float(ranks.item()), limit)

    def _measure_after(self, timing: Timing) -> tuple[dict[str, Any], dict[str, Any]]:
        """After training, on every rank: this rank's facts and the attribution probe (same collectives on all)."""
        # under FSDP1 the wrapper gathers the shards; unwrapped, only this rank's views would be hashed
        sharded = self.plan.declared.strategy == "fsdp"
        rank_report = rank_facts(self.device, self.model if sharded else self.accelerator.unwrap_model(self.model))
        rank_report["rss_at_start_mb"] = round(self.rss_at_start, 1)
        rank_report["timed_cpu_s"] = round(disturbance.own_cpu_s(timing.cpu_at_start, timing.cpu_at_end), 6)
        probe: dict[str, Any] = {}
        if self.plan.config.measure.attribution and timing.steps > 0:
            self.progress.update(timing.steps, "attribution", force=True)
            # Every rank must run the same number of probe collectives: agree on one step time (the main
            # rank's blocks have it; a launch too short for a block takes its whole training's average).
            found = timing.clock.estimate()
            step_s = 1 / found.rate if found else (timing.train_end - timing.train_start) / timing.steps
            if not self.accelerator.is_main_process:
                step_s = 0.0
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
                full=self.plan.repeat == 1,  # the Why's split comes from a run's first launch
            )
        # Training memory by part, one step measured alike on CPU and GPU (runner.worker.memory); the process's
        # own figure stays beside it: peak RSS on CPU (runtime included), the allocator's peak over training on a GPU.
        self.progress.update(timing.steps, "memory", force=True)
        own = "peak_rss_mb" if self.device.type == "cpu" else "allocator_peak_mb"
        rank_report[own] = rank_report["peak_memory_mb"]
        data = [self.inputs, self.labels, self.eval_inputs, self.eval_labels]
        parts = training_memory(
            self.whole_step,
            parameters=self.model.parameters(),
            optimizer_state=_state_tensors(self.optimizer),
            data=[tensor for tensor in data if tensor.device == self.device],
            optimizer=_raw(self.optimizer),
            step_peak=step_peak_of(self.device),
        )
        rank_report.update(parts.as_metrics())
        rank_report["peak_memory_source"] = "training_peak"
        return rank_report, probe

    def report(self, timing: Timing) -> None:
        """Losses, evaluation, timing-only blocks and measurements of every rank; the main rank writes metrics.json."""
        accelerator = self.accelerator
        self.progress.update(timing.steps, "eval", force=True)
        final_loss, loss_curve = _losses(accelerator, self.losses, self.work, self.train_config.loss_every_steps)
        eval_loss, accuracy = _evaluate(
            accelerator, self.model, self.eval_inputs, self.eval_labels, _eval_batch(self.plan.builtin)
        )
        timing.mark("eval")
        extra_steps = self.extend(timing)
        if extra_steps:
            timing.cpu_at_end = disturbance.sample()  # the disturbance window covers the timing-only blocks too
        timing.mark("extend")
        rank_report, probe = self._measure_after(timing)
        ranks = accelerator.gather_for_metrics([rank_report], use_gather_object=True)
        timing.mark("probes")
        if not accelerator.is_main_process:
            return
        metrics: dict[str, MetricValue] = {
            "train_time_s": round(timing.train_end - timing.train_start, 6),
            **self._timing_metrics(timing, extra_steps),
            "optimizer_steps": timing.steps,
            "final_loss": final_loss if math.isfinite(final_loss) else None,
            "eval_loss": eval_loss,
            "accuracy": accuracy,
            **_memory_of(ranks),
            "processes": self.world,
            "mixed_precision": accelerator.mixed_precision,
            "global_batch_size": self.work.global_batch,
            "params": self.work.params,
        }
        clock = timing.clock
        blocks = {
            "steps": clock.steps,
            "seconds": [round(s, 7) for s in clock.seconds],
            "device_seconds": clock.device_seconds(),
            "extra_from": clock.extra_from,
            "steps_per_block": clock.per_block,
        }
        phases, observed = _phases(timing), self._observed(ranks, final_loss)
        shares = self._disturbance(timing, ranks, rank_report["hostname"])
        record = MetricsRecord(
            run=self.plan.run,
            repeat=self.plan.repeat,
            metrics=metrics,
            blocks=blocks,
            phases={**phases, "written_at": round(time.time(), 6)},
            loss_curve=loss_curve,
            observed=observed,
            ranks=ranks,
            attribution=probe,
            disturbance=shares,
        )
        write_json_atomic(self.plan.outputs.metrics, record.as_json())
        self.progress.update(timing.steps, "done", force=True)

    def _timing_metrics(self, timing: Timing, extra_steps: int) -> dict[str, Any]:
        """The launch's speed from its blocks: the median block rate as samples/s (and tokens/s), its interval."""
        launch_t0 = float(os.environ.get(LAUNCH_T0_VAR, "nan"))
        first_step = timing.marks["train_start"]
        found = timing.clock.estimate()
        clock = timing.clock
        extra_s = sum(clock.seconds[clock.extra_from :]) if clock.extra_from is not None else 0.0
        out: dict[str, Any] = {
            "startup_s": round(first_step - launch_t0, 6) if launch_t0 == launch_t0 else None,
            "first_step_at": round(first_step, 6),  # wall clock: submit-to-first-step on a cluster
            "timed_time_s": round(found.seconds, 6) if found else 0.0,
            "timed_steps": found.steps if found else 0,
            "samples_per_s": round(found.rate * self.work.global_batch, 3) if found else None,
            "step_time_ms": round(1000 / found.rate, 6) if found else None,
            "extra_steps": extra_steps,
            "extra_time_s": round(extra_s, 6),
        }
        if self.work.tokens_per_sample:
            tokens = self.work.global_batch * self.work.tokens_per_sample
            out["tokens_per_s"] = round(found.rate * tokens, 3) if found else None
        if found:
            out.update(found.as_metrics())
        else:
            out["timed_blocks"] = 0
        return out

    def _observed(self, ranks: list[dict[str, Any]], final_loss: float) -> Observed:
        accelerator = self.accelerator
        return Observed(
            world_size=self.world,
            distributed_type=str(accelerator.distributed_type).split(".")[-1],
            backend=getattr(accelerator.state, "backend", None),
            mixed_precision=accelerator.mixed_precision,
            launcher_mixed_precision=os.environ.get("ACCELERATE_MIXED_PRECISION"),
            compute_dtype=self.compute_dtype[0] if self.compute_dtype else None,
            **_precision_facts(self.model),
            device=self.device.type,
            main_process_port=int(os.environ["MASTER_PORT"]) if os.environ.get("MASTER_PORT", "").isdigit() else None,
            device_names=sorted({r["device_name"] for r in ranks}),
            threads_per_process=[r["threads"] for r in ranks],
            gradient_accumulation_steps=accelerator.gradient_accumulation_steps,
            optimizer_implementation=self.optimizer_impl,
            compiled=is_compiled_module(self.model),
            dynamo_backend=str(getattr(accelerator.state.dynamo_plugin.backend, "value", "")) or None,
            **self._sharding_facts(),
            param_hashes=[r["param_hash"] for r in ranks],
            machine_ranks=[r["machine_rank"] for r in ranks],
            nodes=[r["node"] for r in ranks],
            diverged=not math.isfinite(final_loss),
            torch=torch.__version__,
            accelerate=_accelerate_version(),
            python=sys.version.split()[0],
        )

    def _sharding_facts(self) -> dict[str, Any]:
        """FSDP's version and this rank's share of the parameters; nothing when the model is not sharded."""
        version = sharding.fsdp_version(self.model)
        if version is None:
            return {}
        share = sharding.local_parameter_share(self.model, self.param_elements)
        return {"fsdp_version": version, "local_parameter_share": round(share, 6)}

    def _disturbance(self, timing: Timing, ranks: list[dict[str, Any]], host: str) -> dict[str, Any]:
        """What other work took of this machine while the run was timed (the ranks on it count as the run)."""
        local_cpu_s = sum(r["timed_cpu_s"] for r in ranks if r["hostname"] == host)
        shares = disturbance.cpu_disturbance(timing.cpu_at_start, timing.cpu_at_end, local_cpu_s)
        if self.device.type == "cuda":
            shares["gpu_other_processes"] = disturbance.gpu_other_processes(self.device, {r["pid"] for r in ranks})
        return shares


def _blocks_wanted(found: Estimate | None, rules: Rules) -> int:
    """More blocks an estimate needs to decide: up to measure.min_blocks, or until its interval is tight.

    A spread or drift over the limits is the machine's doing, and more blocks of the same launch
    would not mend it: none are asked then.
    """
    if found is None:
        return rules.min_blocks + EXTEND_MARGIN
    if found.blocks < rules.min_blocks:
        return rules.min_blocks - found.blocks + EXTEND_MARGIN
    if found.problem(rules) is not None or found.relative_halfwidth <= EXTEND_TARGET:
        return 0
    # the interval of a median narrows as 1/sqrt(n)
    return min(4 * found.blocks, math.ceil(found.blocks * ((found.relative_halfwidth / EXTEND_TARGET) ** 2 - 1)))


def _phases(timing: Timing) -> dict[str, float | None]:
    """Seconds of each phase of the launch, from the wall-clock stamps (the runner adds the teardown)."""
    marks = timing.marks
    launch_t0 = float(os.environ.get(LAUNCH_T0_VAR, "nan"))
    clock = timing.clock
    found = clock.estimate()
    # the declared training after its warm-up steps: the blocks kept are timed, the rest (calibration,
    # blocks before the speed was stationary) was still warm-up
    declared_end = clock.extra_from if clock.extra_from is not None else len(clock.seconds)
    kept = sum(clock.seconds[found.warmup_blocks : declared_end]) if found else 0.0
    training = marks["train"] - marks["setup"]
    first_step = marks.get("first_step", marks["setup"]) - marks["setup"]

    def span(a: str, b: str) -> float:
        return round(marks[b] - marks[a], 6)

    # the training loop's wall = the first step + the rest of the warm-up + the blocks that give the speed
    return {
        # the process's start is known to 10 ms (process_start_time): a start up to a tick before the launch's
        # stamp is that resolution, not a process that began before it was launched
        "launcher_s": round(max(0.0, marks["process"] - launch_t0), 6) if launch_t0 == launch_t0 else None,
        "imports_s": span("process", "imports"),
        "device_init_s": span("imports", "device_init"),
        "setup_s": span("device_init", "setup"),
        "first_step_s": round(first_step, 6),
        "warmup_s": round(max(0.0, training - first_step - kept), 6),
        "timed_s": round(min(kept, training), 6),
        "eval_s": span("train", "eval"),
        "extra_timing_s": span("eval", "extend"),
        "probes_s": span("extend", "probes"),
    }


def is_compiled_module(model: Any) -> bool:
    """Whether the prepared model is torch.compile's OptimizedModule (Accelerate's own test)."""
    from accelerate.utils import is_compiled_module as compiled

    return bool(compiled(model))


def _precision_facts(model: torch.nn.Module) -> dict[str, Any]:
    """How this process computed: the parameters' dtype and the float32 matmul settings (TF32 or not)."""
    first = next(model.parameters(), None)
    return {
        "param_dtype": str(first.dtype) if first is not None else None,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
    }


MEMORY_KEYS = ("peak_memory_mb", "peak_memory_source", *MEMORY_PART_METRICS)


def _memory_of(ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """The memory figures of the rank with the highest peak (its parts add up to it)."""
    top = max(ranks, key=lambda rank: float(rank["peak_memory_mb"]))
    return {key: top[key] for key in MEMORY_KEYS if key in top}


def _raw(optimizer: Any) -> Any:
    """The torch optimizer inside Accelerate's wrapper."""
    return optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer


def _state_tensors(optimizer: Any) -> list[torch.Tensor]:
    """The optimizer's state tensors (Adam's moments, SGD's momentum)."""
    return [v for state in _raw(optimizer).state.values() for v in state.values() if isinstance(v, torch.Tensor)]


def _finish(accelerator: Any, done_marker: str, failpoint: Failpoint, rank: int) -> None:
    """Mark this rank's work durable: metrics.json is written and fsynced by now (main rank).

    The caller then ends the process without the interpreter's shutdown (runner.worker.__main__
    says why), and the runner keeps a run whose every rank got here.
    """
    accelerator.end_training()
    Path(done_marker).touch()
    failpoint.fire_at_end(rank)
    sys.stdout.flush()
    sys.stderr.flush()


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
