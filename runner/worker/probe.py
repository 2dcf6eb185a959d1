"""Where a step's time goes, measured after training (so the training timings are untouched).

Per micro-batch: data (indexing the in-memory batch), compute (forward + backward under
`accelerator.no_sync(model)`, which skips DDP's gradient all-reduce), the same step synchronised
(its excess over compute is the gradient synchronisation cost), and the optimizer update.
A short torch.profiler pass splits compute into matrix multiplications, dtype casts and the rest,
which is what mixed precision can and cannot speed up. Last, the second clock (runner.worker.clock):
whole steps with the device's own busy time beside their wall, split by class.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from runner.worker.clock import device_clock
from runner.worker.device import sync

# Seconds per phase: the probe adds a few seconds to a run's first launch, not minutes. A slow step is
# probed fewer times (2 at least): its phases are long enough that each reading is steady, and on the
# 2-core day6-quick the probes of its two 31.5M-parameter runs had taken 14 of the session's 50 s.
PROBE_BUDGET_S = 1.0
MIN_PROBES, MAX_PROBES = 2, 20
MATMUL_OPS = ("mm", "addmm", "bmm", "matmul", "linear", "_addmm_activation", "mkldnn_linear")
CAST_OPS = ("to", "_to_copy", "copy_")


def _timed(device: torch.device, action: Callable[[], object]) -> float:
    sync(device)
    start = time.perf_counter()
    action()
    sync(device)
    return time.perf_counter() - start


# Every rank must run the same probes in the same order (they hold collectives): one function keeps it so.
def attribution(
    accelerator: Any,
    model: torch.nn.Module,
    optimizer: Any,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch: int,
    accumulation: int,
    step_time_s: float,
    whole_step: Callable[[], None] | None = None,
    full: bool = True,
) -> dict[str, Any]:
    """Median seconds per phase, the split of compute by op class, and how many probes were taken.

    `whole_step` runs one optimizer step through the training loop's own code; its median time
    (step_s) is what an undisturbed step costs, to hold the timed window's step against. Not `full`
    (a run's later launches: the Why takes the split from its first), only those whole steps are timed.
    """
    device, world = accelerator.device, accelerator.num_processes
    if not full and whole_step is not None:
        step_times = _whole_steps(accelerator, whole_step, step_time_s, at_most=MAX_PROBES)
        return {"probes": len(step_times), "step_s": statistics.median(step_times)}
    micro_estimate = max(step_time_s / max(1, accumulation), 1e-4)
    probes = _count(micro_estimate, at_most=MAX_PROBES)
    generator = torch.Generator().manual_seed(12345 + accelerator.process_index)
    raw = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
    phases: dict[str, list[float]] = {"data": [], "compute": [], "synced": [], "optimizer": []}
    batch_data: dict[str, torch.Tensor] = {}

    def load() -> None:
        index = torch.randint(0, inputs.shape[0], (batch,), generator=generator).to(device)
        batch_data["x"], batch_data["y"] = inputs.index_select(0, index), labels.index_select(0, index)

    def forward_backward() -> None:
        loss = F.cross_entropy(model(batch_data["x"]), batch_data["y"])
        accelerator.backward(loss)

    def unsynced() -> None:
        with accelerator.no_sync(model):
            forward_backward()

    for _ in range(probes):
        phases["data"].append(_timed(device, load))
        phases["compute"].append(_timed(device, unsynced))
        if world > 1:
            raw.zero_grad(set_to_none=True)
            accelerator.wait_for_everyone()  # measure the all-reduce, not the ranks' skew
            phases["synced"].append(_timed(device, forward_backward))
        else:
            phases["synced"].append(phases["compute"][-1])
        # The optimizer is timed on the gradients just computed: without them (after zero_grad with
        # set_to_none) every optimizer skips every parameter, and the step times nothing.
        phases["optimizer"].append(_timed(device, raw.step))
        raw.zero_grad(set_to_none=True)
    if whole_step is not None:
        phases["step"] = _whole_steps(accelerator, whole_step, step_time_s, at_most=probes)
    medians = {name: statistics.median(values) for name, values in phases.items()}
    result: dict[str, Any] = {
        "probes": probes,
        "data_s": medians["data"],
        "compute_s": medians["compute"],
        "synced_s": medians["synced"],
        "sync_s": max(0.0, medians["synced"] - medians["compute"]) if world > 1 else 0.0,
        "optimizer_s": medians["optimizer"],
        "accumulation": accumulation,
    }
    if "step" in medians:
        result["step_s"] = medians["step"]
    result.update(_op_shares(device, load, forward_backward, raw, steps=1 if micro_estimate > 0.5 else 2))
    if whole_step is not None:
        barrier = accelerator.wait_for_everyone if world > 1 else None
        reading = device_clock(whole_step, device, step_time_s=step_time_s, barrier=barrier)
        if reading is not None:
            result.update(reading.as_json())
    return result


def _whole_steps(accelerator: Any, whole_step: Callable[[], None], step_time_s: float, *, at_most: int) -> list[float]:
    """Seconds of whole optimizer steps, each synchronised: at least 2, at most `at_most`, within the budget."""
    times = []
    for _ in range(_count(step_time_s, at_most=at_most)):
        if accelerator.num_processes > 1:
            accelerator.wait_for_everyone()  # every rank runs the same steps: time the step, not the skew
        times.append(_timed(accelerator.device, whole_step))
    return times


def _count(seconds_each: float, *, at_most: int) -> int:
    """How many probes of `seconds_each` fit the budget: at least MIN_PROBES, at most `at_most`."""
    return max(MIN_PROBES, min(at_most, int(PROBE_BUDGET_S / max(seconds_each, 1e-4))))


def _op_shares(
    device: torch.device, load: Callable[[], None], forward_backward: Callable[[], None], raw: Any, steps: int
) -> dict[str, Any]:
    """Shares of profiled self time in matmuls, casts and everything else (over `steps` micro-steps)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    load()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            forward_backward()
            raw.zero_grad(set_to_none=True)
        sync(device)
    totals = {"matmul": 0.0, "cast": 0.0, "other": 0.0}
    for event in prof.key_averages():
        name = event.key.removeprefix("aten::")
        if device.type == "cuda":
            self_time = float(getattr(event, "self_device_time_total", 0.0) or 0.0)
        else:
            self_time = float(event.self_cpu_time_total)
        if not event.key.startswith("aten::"):
            continue  # profiler bookkeeping, autograd wrappers: counted through their aten ops
        group = "matmul" if name in MATMUL_OPS else "cast" if name in CAST_OPS else "other"
        totals[group] += self_time
    whole = sum(totals.values()) or 1.0
    return {f"{group}_share": round(value / whole, 4) for group, value in totals.items()}
