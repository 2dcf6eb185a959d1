"""What a worker process can see about itself: memory, threads, device, liveness and progress."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import torch

from runner.jsonio import write_json_atomic
from runner.metrics import MIB
from runner.vocab import RUNNER_PID_VAR
from runner.worker.device import peak_memory_mb
from runner.worker.sharding import whole_parameters

HEARTBEAT_INTERVAL_S = 1.0


def start_heartbeat(path: str) -> None:
    """Touch `path` every second from a daemon thread, so the runner can tell a dead rank from a slow one.

    The same thread exits the process when the runner that started it is gone (killed with
    SIGKILL, say): a worker must never outlive accel-run and hold the cores or GPUs.
    """
    Path(path).touch()
    runner_pid = int(os.environ.get(RUNNER_PID_VAR, "0") or 0)

    def beat() -> None:
        while True:
            try:
                os.utime(path)
            except OSError:
                return  # the run folder is gone: the runner has given up on us
            if runner_pid and not _alive(runner_pid):
                os._exit(75)  # EX_TEMPFAIL: the runner died; --resume reruns this run
            time.sleep(HEARTBEAT_INTERVAL_S)

    threading.Thread(target=beat, name="accel-run-heartbeat", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Progress:
    """Writes progress.json (step, total, phase) at most four times a second, for the runner's bar."""

    def __init__(self, path: str, total: int, enabled: bool) -> None:
        self.path, self.total, self.enabled = path, total, enabled
        self.last = 0.0

    def update(self, step: int, phase: str = "train", force: bool = False) -> None:
        now = time.monotonic()
        if self.enabled and (force or now - self.last >= 0.25):
            self.last = now
            record = {"step": step, "total": self.total, "phase": phase, "time": time.time()}
            write_json_atomic(self.path, record, durable=False)


def process_start_time() -> float:
    """When this process started, on the wall clock, to 10 ms (/proc: its start in clock ticks after boot).

    Where /proc cannot be read (not Linux), now: the launcher phase then also holds the imports.
    """
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            # the command name (field 2) is in parentheses and may hold spaces: count fields after it
            after = stat.read().rsplit(")", 1)[1].split()
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(after[19]) / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time()


def current_rss_mb() -> float:
    """Resident memory now (for the memory the training itself added)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB
    except OSError:
        return 0.0


def parameter_hash(model: torch.nn.Module) -> str:
    """A digest of every parameter's bytes: equal on all ranks exactly when gradients were synchronised.

    Under FSDP each rank holds a shard: the shards are gathered first (every rank calls this).
    """
    digest = hashlib.sha256()
    with whole_parameters(model) as params:
        for param in params:
            digest.update(param.float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def device_name(device: torch.device) -> str:
    """A readable name: the GPU model, or the CPU model from /proc/cpuinfo."""
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return "CPU: " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU"


def rank_facts(device: torch.device, model: torch.nn.Module) -> dict[str, Any]:
    """What this rank reports to the main process."""
    peak, source = peak_memory_mb(device)
    return {
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        # torchrun's node rank, and the node's name: SLURM's name for it (two test nodes share a host)
        "machine_rank": int(os.environ.get("GROUP_RANK", "0") or 0),
        "node": os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "peak_memory_mb": round(peak, 1),
        "peak_memory_source": source,
        "param_hash": parameter_hash(model),
    }
