"""The second clock's arithmetic: a profiled window's device work, classified and reduced per step.

Pure on plain data (no torch), so tests drive it with H200-shaped numbers; runner.worker.clock
turns a torch.profiler trace into these records. One record is one piece of device work:
on a GPU a kernel, copy or memset with the chain of CPU ops that issued it; on a CPU an aten
op's self time with its own name first in the chain.

Classes, decided in this order:
  optimizer      issued inside torch's own `Optimizer.step#<Class>.step` range
  communication  a collective (NCCL kernels, gloo and c10d ops): the gradient all-reduce
  other          copies and memsets (host<->device transfers, zeroing)
  matmul / cast  the innermost op of the chain that is a matrix multiplication (attention
                 included) or a dtype conversion decides: a bias copy inside addmm is matmul
                 work, autocast's weight cast inside linear is a cast
  by name        a kernel with no known op: GEMM-like names are matmul work
  other          the rest (elementwise, reductions, the loss, indexing)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CLASSES = ("matmul", "cast", "optimizer", "communication", "other")
MATMUL_OPS = frozenset(
    {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_addmm_activation", "mkldnn_linear", "addmv", "mv", "dot"}
    | {"scaled_dot_product_attention"}
)
MATMUL_PREFIXES = ("_scaled_dot_product", "_flash_attention", "_efficient_attention", "_scaled_mm", "_cudnn_attention")
CAST_OPS = frozenset({"_to_copy", "_autocast_to_reduced_precision", "_autocast_to_full_precision"})
OPTIMIZER_RANGE = "Optimizer.step#"
_COLLECTIVE_NAME = re.compile(
    r"nccl|gloo|all_?reduce|all_?gather|reduce_?scatter|c10d|record_param_comms", re.IGNORECASE
)
_TRANSFER_NAME = re.compile(r"^(Memcpy|Memset)", re.IGNORECASE)
_GEMM_NAME = re.compile(r"gemm|gemv|xmma|cutlass|cublas|nvjet|wgmma|flash|fmha|matmul", re.IGNORECASE)


@dataclass(frozen=True)
class DeviceWork:
    """One kernel, copy or memset (or, on a CPU, one aten op's self time) from a profiled window."""

    name: str
    duration_us: float
    chain: tuple[str, ...] = ()  # CPU ops around its issue, innermost first ("aten::mm", "aten::linear", ...)
    start_us: float | None = None  # when it began on the device; None when not known (CPU self time)


def _op(name: str) -> str:
    return name.removeprefix("aten::")


def classify(work: DeviceWork) -> str:
    """The class of one piece of device work (see the module docstring for the rules)."""
    if any(name.startswith(OPTIMIZER_RANGE) for name in work.chain):
        return "optimizer"
    if _COLLECTIVE_NAME.search(work.name) or any(_COLLECTIVE_NAME.search(name) for name in work.chain):
        return "communication"
    if _TRANSFER_NAME.match(work.name):
        return "other"
    for name in work.chain:
        if not name.startswith("aten::"):
            continue  # autograd nodes and ranges say nothing about the kind of arithmetic
        op = _op(name)
        if op in MATMUL_OPS or op.startswith(MATMUL_PREFIXES):
            return "matmul"
        if op in CAST_OPS:
            return "cast"
    if not work.chain and _GEMM_NAME.search(work.name):
        return "matmul"
    return "other"


def busy_us(works: Iterable[DeviceWork]) -> float:
    """Microseconds the device was doing something: the union of the works' intervals.

    Kernels on two streams (compute and NCCL's) can overlap; a union counts that time once.
    Works without a start (CPU self time) are disjoint by construction and simply add up.
    """
    spans = sorted((w.start_us, w.start_us + w.duration_us) for w in works if w.start_us is not None)
    total = sum(w.duration_us for w in works if w.start_us is None)
    end = float("-inf")
    for start, stop in spans:
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


@dataclass(frozen=True)
class ClockReading:
    """The second clock, per optimizer step: wall, device busy time, launches, time by class."""

    clock: str  # "cuda_kernels" (GPU kernel time) or "cpu_ops" (aten ops' CPU self time)
    steps: int  # steps profiled
    wall_s: float  # wall per step, synchronised, in a window without the profiler
    busy_s: float  # device busy per step
    launches: float  # kernels, copies and memsets per step (CPU: aten ops with self time)
    by_class_s: dict[str, float]  # seconds per step of each class in CLASSES (sums of durations)
    optimizer_launches: float  # the optimizer's share of `launches`
    profiled_wall_s: float | None = None  # wall per step under the profiler (its own overhead included)

    @property
    def busy_share(self) -> float:
        """Device busy time over the step's wall.

        A GPU's kernels take as long under the profiler as without it, while the profiler slows the
        CPU issuing them: their time is held against the wall of the window without the profiler.
        CPU ops' self time grows under the profiler with the wall: it is held against the profiled wall.
        """
        wall = self.profiled_wall_s if self.clock == "cpu_ops" and self.profiled_wall_s else self.wall_s
        return self.busy_s / wall if wall > 0 else 0.0

    def as_json(self) -> dict[str, float | int | str | None]:
        """The flat keys the attribution probe adds to metrics.json (medians over repeats stay flat)."""
        data: dict[str, float | int | str | None] = {
            "device_clock": self.clock,
            "device_clock_steps": self.steps,
            "device_wall_s": round(self.wall_s, 9),
            "device_busy_s": round(self.busy_s, 9),
            "device_busy_share": round(self.busy_share, 4),
            "device_launches_per_step": round(self.launches, 2),
            "device_optimizer_launches_per_step": round(self.optimizer_launches, 2),
        }
        data.update({f"device_{name}_s": round(self.by_class_s[name], 9) for name in CLASSES})
        data["device_profiled_wall_s"] = round(self.profiled_wall_s, 9) if self.profiled_wall_s is not None else None
        return data


def read_clock(
    works: Sequence[DeviceWork],
    *,
    clock: str,
    steps: int,
    wall_s: float,
    profiled_wall_s: float | None = None,
) -> ClockReading:
    """Reduce a profiled window of `steps` steps to per-step figures."""
    steps = max(1, steps)
    by_class = dict.fromkeys(CLASSES, 0.0)
    optimizer = 0
    for work in works:
        kind = classify(work)
        by_class[kind] += work.duration_us
        optimizer += kind == "optimizer"
    return ClockReading(
        clock=clock,
        steps=steps,
        wall_s=wall_s,
        busy_s=busy_us(works) / 1e6 / steps,
        launches=len(works) / steps,
        by_class_s={name: value / 1e6 / steps for name, value in by_class.items()},
        optimizer_launches=optimizer / steps,
        profiled_wall_s=profiled_wall_s,
    )
