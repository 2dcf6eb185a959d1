"""What this machine offers a run: cores, memory, GPUs, bf16 support (GPU and CPU), the accelerate launcher.

Probing imports torch, so it happens only when something will be compiled or run, never for
--validate or --explain.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Machine:
    """Facts about the machine that compile and preflight depend on."""

    cpu_count: int
    memory_bytes: int
    cuda_devices: tuple[str, ...] = ()
    cuda_bf16: bool = False
    launcher: tuple[str, ...] = ("accelerate", "launch")
    python: str = sys.executable
    versions: dict[str, str] = field(default_factory=dict)
    hostname: str = ""
    platform: str = ""
    cpu_model: str = ""
    # The bf16 flags of /proc/cpuinfo present on this CPU (empty: none); None where it could not be read.
    cpu_bf16_flags: tuple[str, ...] | None = None

    @property
    def has_cuda(self) -> bool:
        """Whether at least one CUDA device is visible."""
        return bool(self.cuda_devices)

    def as_json(self) -> dict[str, Any]:
        """For summary.json's environment."""
        return asdict(self)


def available_cores() -> int:
    """Cores this process may run on (honours taskset and cgroup CPU affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def available_memory() -> int:
    """Bytes of memory available for new work (MemAvailable), or total memory as a fallback."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


# The CPU flags (x86 `flags`, Arm `Features`) that matter to bf16 on CPU: dot products in bf16
# (avx512_bf16, amx_bf16 with its tiles amx_tile, Arm's bf16) or conversions only (avx_ne_convert).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "avx_ne_convert", "bf16")


def parse_cpuinfo(text: str) -> tuple[str, tuple[str, ...]]:
    """The CPU model and its bf16 flags (in BF16_CPU_FLAGS order), from /proc/cpuinfo's text."""
    model, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, tuple(flag for flag in BF16_CPU_FLAGS if flag in flags)


def cpu_facts(path: str = "/proc/cpuinfo") -> tuple[str, tuple[str, ...] | None]:
    """The CPU model and bf16 flags of this machine; flags None where /proc/cpuinfo cannot be read (not Linux)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as cpuinfo:
            return parse_cpuinfo(cpuinfo.read())
    except OSError:
        return platform.processor(), None


def accelerate_launcher() -> tuple[str, ...]:
    """`accelerate launch` of this very environment: the console script beside our Python, else the module."""
    script = Path(sys.executable).parent / "accelerate"
    if script.exists():
        return (str(script), "launch")
    found = shutil.which("accelerate")
    if found and Path(found).parent == Path(sys.executable).parent:
        return (found, "launch")
    return (sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch")


def probe_machine() -> Machine:
    """Look at the machine (imports torch: about two seconds, once per invocation)."""
    import accelerate
    import torch

    devices: tuple[str, ...] = ()
    bf16 = False
    if torch.cuda.is_available():
        devices = tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        bf16 = bool(torch.cuda.is_bf16_supported())
    from runner import __version__

    cpu_model, cpu_bf16_flags = cpu_facts()
    return Machine(
        cpu_count=available_cores(),
        memory_bytes=available_memory(),
        cuda_devices=devices,
        cuda_bf16=bf16,
        launcher=accelerate_launcher(),
        python=sys.executable,
        versions={
            "accel_run": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "accelerate": accelerate.__version__,
        },
        hostname=socket.gethostname(),
        platform=platform.platform(),
        cpu_model=cpu_model,
        cpu_bf16_flags=cpu_bf16_flags,
    )


def free_port() -> int:
    """A TCP port free right now on this machine, for one launch's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a pinned rendezvous port can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True
