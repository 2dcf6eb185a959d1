"""How much of the machine other work took while a run was timed: the "disturbance" of a repeat.

On CPU: the busy time of the cores this process may run on (from /proc/stat, all processes),
minus the CPU time of the run's own ranks, over the timed window, as a share of those cores'
capacity; steal time (a hypervisor giving our cores to another guest) counts as taken too. On a
GPU, the other processes on the device where the driver shows them. Reading /proc/stat twice
costs microseconds, so this stays on every launch.

A share, not a guess: 0.34 means other processes used a third of the cores' time while the run
was timed. accel-run treats a repeat above measure.max_disturbance as unfit to time.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

# /proc/stat columns after the cpu name: user nice system idle iowait irq softirq steal guest guest_nice.
# guest time is already counted in user (and guest_nice in nice), so it is not added again.
_BUSY_COLUMNS = (0, 1, 2, 5, 6)
_STEAL_COLUMN = 7


def _cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


@dataclass(frozen=True)
class CpuSample:
    """Busy and steal seconds of the cores this process may use, and this process's own CPU seconds."""

    wall: float
    busy_s: float | None  # None where /proc/stat cannot be read (not Linux)
    steal_s: float | None
    own_s: float
    cpus: int


def sample() -> CpuSample:
    """One reading, taken at a timing boundary."""
    cpus = _cpus()
    busy = steal = None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            busy_ticks = steal_ticks = 0
            for line in stat:
                name, _, rest = line.partition(" ")
                if not name.startswith("cpu") or name == "cpu":
                    continue
                if int(name[3:]) not in cpus:
                    continue
                columns = [int(v) for v in rest.split()]
                busy_ticks += sum(columns[i] for i in _BUSY_COLUMNS if i < len(columns))
                steal_ticks += columns[_STEAL_COLUMN] if len(columns) > _STEAL_COLUMN else 0
            busy, steal = busy_ticks / tick, steal_ticks / tick
    except (OSError, ValueError):
        pass
    return CpuSample(time.perf_counter(), busy, steal, time.process_time(), len(cpus))


def own_cpu_s(start: CpuSample, end: CpuSample) -> float:
    """This process's CPU seconds between two samples (all its threads)."""
    return max(0.0, end.own_s - start.own_s)


def cpu_disturbance(start: CpuSample, end: CpuSample, ranks_cpu_s: float) -> dict[str, Any]:
    """What others took of the cores between two samples, given the CPU seconds of every local rank."""
    wall = end.wall - start.wall
    if start.busy_s is None or end.busy_s is None or wall <= 0:
        return {"others_share": None, "steal_share": None, "cpus": end.cpus, "window_s": round(wall, 6)}
    capacity = wall * end.cpus
    others = max(0.0, (end.busy_s - start.busy_s) - ranks_cpu_s)
    steal = max(0.0, (end.steal_s or 0.0) - (start.steal_s or 0.0))
    return {
        # steal is time our cores ran someone else's guest: taken from us as surely as by a local process
        "others_share": round(min(1.0, (others + steal) / capacity), 4),
        "steal_share": round(min(1.0, steal / capacity), 4),
        "own_share": round(min(1.0, ranks_cpu_s / capacity), 4),
        "cpus": end.cpus,
        "window_s": round(wall, 6),
    }


def over_limit(start: CpuSample, end: CpuSample, ranks_cpu_s: float, limit: float) -> bool:
    """Whether others took more than `limit` of the cores between two samples (never where /proc/stat is unread).

    A launch timed under such a share is unfit to time whatever it does next (results.records), so the
    worker spends no timing-only steps on tightening its interval (runner.worker.train).
    """
    share = cpu_disturbance(start, end, ranks_cpu_s)["others_share"]
    return share is not None and limit < 1 and share > limit


def gpu_other_processes(device: Any, own_pids: set[int]) -> int | None:
    """Processes other than the run's ranks on this GPU, where the driver shows them (None: not visible)."""
    try:
        import torch

        listing = torch.cuda.list_gpu_processes(device)  # needs pynvml; says so in its text when absent
    except Exception:
        return None
    if "pynvml" in listing or "not found" in listing:
        return None
    pids = set()
    for line in listing.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "process" and words[1].isdigit():
            pids.add(int(words[1]))
    return len(pids - own_pids)
