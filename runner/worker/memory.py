"""Training memory at the peak of one training step, by part, measured alike on CPU and on a GPU.

What is counted, in bytes of tensor storage (each distinct storage once):
- the training state resident before the step: the parameters and the optimizer's state, summed from
  the tensors themselves;
- what the step allocates on top, at its highest point: the gradients and the activations (with
  autocast's low-precision copies of the weights, the micro-batch, and the optimizer's temporaries).
  The gradients are measured when the optimizer steps (a pre-step hook sums them); the activations
  are the rest of the step's peak;
- apart, the data set the built-in worker keeps resident on the device (a real job streams its
  batches): measured, reported, and left out of the peak, because it is the same in every run of a
  comparison and would pull every ratio towards 1x.

The step's peak comes from the allocator of its device. On a GPU, the CUDA allocator's own figures:
the peak allocated above what was allocated before the step. On CPU, which keeps no such figure,
torch's profiler with profile_memory=True records every allocation and free made on this thread with
its address, size and time; the running total of the blocks allocated inside the profile, in time
order, has the step's peak as its maximum. Allocations made on other threads (a DataLoader worker,
code inside an OpenMP parallel region) are not seen by the profiler. Peak RSS is not used: it holds
the Python interpreter and the torch libraries, a few hundred MB that no precision or optimizer
choice changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch._C._profiler import _ExtraFields_Allocation, _ProfilerEvent
from torch.autograd.profiler import profile

from runner.metrics import MIB


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind `tensors` (shared storages counted once).

    A view or slice counts its whole storage, once however many views share it; storages with no
    memory behind them (empty or meta tensors) count nothing. A sharded tensor (FSDP2's DTensor)
    counts the shard this process holds.
    """
    sizes: dict[tuple[str, int], int] = {}
    for tensor in tensors:
        to_local = getattr(tensor, "to_local", None)  # a DTensor (FSDP2): this process holds its local shard
        if callable(to_local):
            tensor = to_local()
        if tensor.device.type == "meta":
            continue
        storage = tensor.untyped_storage()
        if storage.data_ptr() == 0:
            continue
        sizes[(str(tensor.device), storage.data_ptr())] = storage.nbytes()
    return sum(sizes.values())


def step_peak_bytes(step: Callable[[], None]) -> int:
    """Peak bytes allocated above the starting point while `step` runs once (CPU allocator, via the profiler).

    Only blocks allocated inside the step count: freeing memory that existed before it (which the
    allocator may or may not report) never lowers the running total below what the step itself holds.
    """
    with profile(profile_memory=True) as prof:
        step()
    results = prof.kineto_results
    if results is None:  # pragma: no cover - the profiler always leaves results after a clean exit
        raise RuntimeError("torch profiler returned no results")
    allocations = _cpu_allocations(results.experimental_event_tree())
    allocations.sort(key=lambda item: (item[0], item[1]))  # by time; ties keep the recording order
    live: dict[int, int] = {}  # address -> size of the blocks allocated inside the profile, still live
    current = peak = 0
    for _time, _order, ptr, size in allocations:
        if size > 0:
            current += size - live.get(ptr, 0)  # an address reused without a seen free: the old block is gone
            live[ptr] = size
        else:
            current -= live.pop(ptr, 0)
        peak = max(peak, current)
    return peak


def _cpu_allocations(roots: list[_ProfilerEvent]) -> list[tuple[int, int, int, int]]:
    """(time ns, recording order, address, signed size) of every CPU allocation and free in the tree."""
    found: list[tuple[int, int, int, int]] = []
    stack = list(reversed(roots))
    while stack:  # depth-first, in recording order, without recursion
        event = stack.pop()
        fields = event.extra_fields
        if isinstance(fields, _ExtraFields_Allocation) and fields.device.type == "cpu" and fields.alloc_size:
            found.append((event.start_time_ns, len(found), fields.ptr, fields.alloc_size))
        stack.extend(reversed(event.children))
    return found


StepPeak = Callable[[Callable[[], None]], int]  # bytes a step allocated above its start, at its highest point


@dataclass(frozen=True)
class MemoryParts:
    """One rank's training memory at the peak of one training step, by part, in bytes."""

    parameters: int
    optimizer_state: int
    gradients: int  # the gradients when the optimizer stepped
    step_peak: int  # what the step held above what was resident before it, at its highest point
    data: int  # the resident data set on this device: measured, not training memory

    @property
    def activations(self) -> int:
        """The step's peak beyond its gradients: activations, autocast copies, the batch, optimizer temporaries."""
        return max(0, self.step_peak - self.gradients)

    @property
    def training(self) -> int:
        """Training memory at the peak: parameters, optimizer state, gradients and activations; no data set."""
        return self.parameters + self.optimizer_state + self.step_peak

    def as_metrics(self) -> dict[str, float]:
        """The parts in MiB, as metrics.json names them (peak_memory_mb is `training`)."""
        parts = {
            "peak_memory_mb": self.training,
            "memory_parameters_mb": self.parameters,
            "memory_gradients_mb": self.gradients,
            "memory_optimizer_mb": self.optimizer_state,
            "memory_activations_mb": self.activations,
            "memory_data_mb": self.data,
        }
        return {key: round(value / MIB, 4) for key, value in parts.items()}


def training_memory(
    step: Callable[[], None],
    *,
    parameters: Iterable[torch.Tensor],
    optimizer_state: Iterable[torch.Tensor],
    data: Iterable[torch.Tensor],
    optimizer: Any,
    step_peak: StepPeak,
) -> MemoryParts:
    """Run `step` once under `step_peak` (step_peak_bytes on CPU, cuda_step_peak on a GPU) and measure each part.

    `optimizer` is the torch optimizer the step calls (not a wrapper): a pre-step hook sums the
    gradients it is about to apply, the largest such sum over the step's optimizer steps.
    """
    params, state, dataset = list(parameters), list(optimizer_state), list(data)
    gradients = [0]

    def before_step(opt: torch.optim.Optimizer, *_: Any) -> None:
        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        gradients[0] = max(gradients[0], tensor_bytes(grads))

    handle = optimizer.register_step_pre_hook(before_step)
    try:
        peak = step_peak(step)
    finally:
        handle.remove()
    return MemoryParts(
        parameters=tensor_bytes(params),
        optimizer_state=tensor_bytes(state),
        gradients=gradients[0],
        step_peak=peak,
        data=tensor_bytes(dataset),
    )


class AllocatorStats(Protocol):
    """The figures a device allocator keeps (torch.cuda's): bytes allocated now, and the peak since a reset."""

    def synchronize(self) -> None: ...
    def reset_peak(self) -> None: ...
    def allocated(self) -> int: ...
    def peak(self) -> int: ...


def allocator_step_peak(stats: AllocatorStats) -> StepPeak:
    """A StepPeak from an allocator's own figures: its peak during the step above what was allocated before it."""

    def measure(step: Callable[[], None]) -> int:
        stats.synchronize()
        stats.reset_peak()
        before = stats.allocated()
        step()
        stats.synchronize()
        return max(0, stats.peak() - before)

    return measure


@dataclass(frozen=True)
class CudaStats:
    """torch.cuda's allocator figures for one device."""

    device: torch.device

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def allocated(self) -> int:
        return int(torch.cuda.memory_allocated(self.device))

    def peak(self) -> int:
        return int(torch.cuda.max_memory_allocated(self.device))


def step_peak_of(device: torch.device) -> StepPeak:
    """How a step's peak is measured on `device`: the CUDA allocator's figures, or the profiler on CPU."""
    return allocator_step_peak(CudaStats(device)) if device.type == "cuda" else step_peak_bytes
