"""The second clock: how long the device itself worked in a step, beside the step's wall.

A short diagnostic window after the timed part, on the training loop's own step function:
first a few whole steps with one synchronisation at each end (the wall per step), then a few
more under torch.profiler (with CUDA activity on a GPU). On a GPU each kernel, copy and memset
the profiler saw is one piece of device work, with the CPU ops that issued it (through the
profiler's correlation ids); their union over the window is the GPU's busy time. On a CPU the
same code reads aten ops' self time instead, so it runs (and is tested) everywhere.
runner.worker.kernels classifies and reduces; this module only drives torch.

Never NVML's utilisation: it samples every 1/6 to 1 s whether any kernel was running, which says
nothing about a 2 ms step. The profiler's own overhead inflates the CPU side of the profiled
steps, never the kernels' durations: the wall comes from the window without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from runner.worker.device import sync
from runner.worker.kernels import ClockReading, DeviceWork, read_clock

CLOCK_WINDOW_S = 0.5  # wall window; the profiled steps add about as much again
MAX_WALL_STEPS = 50
MAX_PROFILED_STEPS = 5  # a transformer issues thousands of ops a step: keep the trace small


def window_steps(step_time_s: float) -> tuple[int, int]:
    """(steps timed for the wall, steps profiled) for a step of `step_time_s`; every rank must agree."""
    wall = max(2, min(MAX_WALL_STEPS, int(CLOCK_WINDOW_S / max(step_time_s, 1e-5))))
    return wall, max(1, min(MAX_PROFILED_STEPS, wall // 2))  # a slow step: 2 + 1 steps, not seconds more


def device_clock(
    step: Callable[[], None],
    device: torch.device,
    *,
    step_time_s: float,
    barrier: Callable[[], None] | None = None,
) -> ClockReading | None:
    """The second clock over a few calls of `step` (one optimizer step each); None if nothing was traced.

    `step_time_s` must be the same on every rank (the steps hold collectives), as must `barrier`'s use.
    """
    from torch.profiler import ProfilerActivity, profile

    wall_steps, profiled_steps = window_steps(step_time_s)
    if barrier is not None:
        barrier()
    sync(device)
    start = time.perf_counter()
    for _ in range(wall_steps):
        step()
    sync(device)
    wall = (time.perf_counter() - start) / wall_steps
    if barrier is not None:
        barrier()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        sync(device)
        start = time.perf_counter()
        for _ in range(profiled_steps):
            step()
        sync(device)
        profiled_wall = (time.perf_counter() - start) / profiled_steps
    works = device_works(prof.events(), device.type)
    if not works:
        return None  # e.g. CUPTI refused to trace (no permission): no clock rather than a GPU "0% busy"
    clock = "cuda_kernels" if device.type == "cuda" else "cpu_ops"
    return read_clock(works, clock=clock, steps=profiled_steps, wall_s=wall, profiled_wall_s=profiled_wall)


def _chain(event: Any) -> tuple[str, ...]:
    """The event's name and its enclosing CPU events' names, innermost first."""
    names = []
    while event is not None:
        names.append(str(event.name))
        event = event.cpu_parent
    return tuple(names)


def device_works(events: Iterable[Any], device_type: str) -> list[DeviceWork]:
    """The device work in a profiler's events (FunctionEvent objects), each with the ops that issued it."""
    from torch._C._autograd import DeviceType  # where it is defined (torch.autograd re-exports it)

    events = list(events)
    cpu_ops = [e for e in events if e.device_type == DeviceType.CPU and not e.is_async]
    if device_type != "cuda":
        return [
            DeviceWork(str(e.name), float(e.self_cpu_time_total), _chain(e))
            for e in cpu_ops
            if str(e.name).startswith("aten::")
        ]
    on_device = [e for e in events if e.device_type == DeviceType.CUDA]
    if on_device and all(hasattr(e, "linked_correlation_id") for e in on_device):
        # an op's id is its correlation id; the kernels it issued link to it
        issuers = {e.id: e for e in cpu_ops if not getattr(e, "linked_correlation_id", 0)}
        works = []
        for e in on_device:
            issuer = issuers.get(e.linked_correlation_id)
            works.append(
                DeviceWork(
                    str(e.name),
                    float(e.time_range.end - e.time_range.start),
                    _chain(issuer) if issuer is not None else (),
                    float(e.time_range.start),
                )
            )
        return works
    # a torch whose events do not link back: each op lists its kernels' names and durations, no start times
    return [DeviceWork(str(k.name), float(k.duration), _chain(e)) for e in cpu_ops for k in e.kernels]
