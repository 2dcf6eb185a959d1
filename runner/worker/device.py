"""What both writers of metrics.json ask of the device: wait for it, its peak memory, the dtype a model computes in.

Shared by the built-in worker (runner.worker.train) and a user script's reports (runner.worker.reports),
so the two measure alike. torch is imported on first use: runner.track, which a script's every process
imports, stays standard library only.
"""

from __future__ import annotations

import resource
from typing import Any


def sync(device: Any) -> None:
    """Wait until the device has finished its queued work (CUDA is asynchronous; a CPU has nothing queued)."""
    if device is not None and device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def peak_memory_mb(device: Any) -> tuple[float, str]:
    """(MiB, source): the CUDA allocator's peak on a GPU, this process's peak RSS on CPU (runtime and libraries
    included)."""
    if device is not None and device.type == "cuda":
        import torch

        from runner.metrics import MIB  # here, not above: a user script's runner.track imports this module

        return torch.cuda.max_memory_allocated(device) / MIB, "cuda_allocator_peak"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_rss"


def watch_compute_dtype(model: Any, seen: list[str]) -> None:
    """Append to `seen` the dtype the model's first Linear layer computes in (autocast shows here), once.

    A forward hook that removes itself after the first call: nothing stays on the hot path. A model
    without a Linear layer is not watched (`seen` stays empty: the compute dtype is not known).
    """
    import torch

    first = next((m for m in model.modules() if isinstance(m, torch.nn.Linear)), None)
    if first is None:
        return

    def observe(_module: Any, _inputs: Any, output: Any) -> None:
        seen.append(str(output.dtype))
        hook.remove()

    hook = first.register_forward_hook(observe)
