"""Peak tensor memory on CPU, the counterpart of CUDA's max_memory_allocated.

On a GPU the worker reports the CUDA allocator's peak; on CPU the only ready figure is the process's
peak RSS, which also holds the Python interpreter and the torch libraries (a few hundred MB that no
precision or optimizer choice changes), so a ratio of peak RSS cannot show, say, what bf16 saves.
This module measures what the CUDA figure means instead: the bytes of tensor storage live at the
peak of one training step. It adds two parts. The storages already live when the step starts
(parameters, optimizer state, the in-memory dataset) are summed directly from the tensors the caller
names, each distinct storage once. What the step allocates on top (gradients, activations, autocast
copies, the optimizer's temporaries, scratch buffers inside ops) comes from the CPU allocator itself:
under torch's profiler with profile_memory=True every allocation and free made on this thread is
recorded with its address, size and time, and the running total of the blocks allocated inside the
profile, in time order, has the step's peak as its maximum. Allocations made on other threads (a
DataLoader worker, code inside an OpenMP parallel region) are not seen by the profiler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch._C._profiler import _ExtraFields_Allocation, _ProfilerEvent
from torch.autograd.profiler import profile


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind `tensors` (shared storages counted once).

    A view or slice counts its whole storage, once however many views share it; storages with no
    memory behind them (empty or meta tensors) count nothing.
    """
    sizes: dict[tuple[str, int], int] = {}
    for tensor in tensors:
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


def cpu_tensor_peak_mb(step: Callable[[], None], resident: Iterable[torch.Tensor]) -> float:
    """Peak tensor memory of one step on CPU in MiB: the storages live before it plus the step's peak.

    `resident` is read before the step and its tensors are held until the step ends, so name only
    tensors that outlive the step (parameters, optimizer state, dataset tensors, gradients the step
    accumulates into); a gradient the step replaces would be counted twice.
    """
    held = list(resident)
    before = tensor_bytes(held)
    peak = step_peak_bytes(step)
    del held
    return (before + peak) / 2**20


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
