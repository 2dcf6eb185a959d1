"""The session's side of the fork server (runner.engines.forkserver): start it, ask it for launches, stop it.

A ForkedLaunch behaves as much like subprocess.Popen as the local engine needs (pid, poll, wait),
so the watch loop, the heartbeats and the stop of the whole process tree are the same for both
launchers. The child is the server's, not ours: its exit status comes over the server's pipe.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

READY_TIMEOUT_S = 120.0  # importing torch and accelerate on a slow, busy machine

# Environment variables a process reads only when it starts (the dynamic loader, the interpreter,
# the OpenMP and allocator libraries, torch's import): a launch whose environment differs from the
# server's in one of them needs a new process, so it goes through `accelerate launch`.
STARTUP_PREFIXES = ("LD_", "PYTHON", "MALLOC_", "GLIBC_", "KMP_", "GOMP_", "MKL_", "OMP_", "TORCH", "PYTORCH_")
# ... except these: the forked child applies the thread counts itself, the server runs unbuffered, and
# the NVML check is read when CUDA is first asked about, not at start.
APPLIED_AT_FORK = frozenset({"OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONUNBUFFERED", "PYTORCH_NVML_BASED_CUDA_CHECK"})


def startup_differences(server_env: Mapping[str, str], launch_env: Mapping[str, str]) -> list[str]:
    """Variables only a new process would honour, set differently for a launch than for the server."""
    names = {*server_env, *launch_env}
    return sorted(
        name
        for name in names
        if name.startswith(STARTUP_PREFIXES)
        and name not in APPLIED_AT_FORK
        and server_env.get(name) != launch_env.get(name)
    )


class ForkServerError(RuntimeError):
    """The fork server did not start or stopped answering."""


@dataclass
class ForkServer:
    """One per session, started on first use: imports torch and accelerate once, forks each launch."""

    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    ready: dict[str, Any] = field(default_factory=dict)
    ended: dict[int, int] = field(default_factory=dict)  # pid -> return code, as the server reported it
    _log: IO[bytes] | None = None
    _buffer: bytes = b""

    def start(self) -> None:
        """Start the server (it imports in the background; `spawn` waits until it is ready)."""
        if self.proc is not None:
            return
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "runner.engines.forkserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=self.env,
            start_new_session=True,  # Ctrl-C in the terminal is the session's to handle, not the server's
        )

    def _message(self, timeout: float) -> dict[str, Any] | None:
        """The server's next answer to a request, waiting at most `timeout` seconds; None when none came.

        Reports of ended launches, which come whenever a child ends, are recorded on the way.
        """
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                readable, _, _ = select.select([self.proc.stdout], [], [], max(0.0, left))
                if not readable:
                    return None
                chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    raise ForkServerError(f"the fork server exited ({self._tail()})")
                self._buffer += chunk
            line, self._buffer = self._buffer.split(b"\n", 1)
            message: dict[str, Any] = json.loads(line)
            if "returncode" not in message:
                return message
            self.ended[int(message["pid"])] = int(message["returncode"])

    def _tail(self) -> str:
        if self._log is None:
            return "no output"
        self._log.seek(0)
        lines = self._log.read().decode("utf-8", errors="replace").strip().splitlines()
        return " | ".join(lines[-5:]) or "no output"

    def wait_ready(self) -> dict[str, Any]:
        """Block until the server has imported what launches need."""
        self.start()
        if not self.ready:
            message = self._message(READY_TIMEOUT_S)
            if message is None or not message.get("ready"):
                raise ForkServerError(f"the fork server did not become ready ({message or self._tail()})")
            self.ready = message
        return self.ready

    def spawn(self, argv: list[str], env: Mapping[str, str], stdout: str, stderr: str) -> ForkedLaunch:
        """Fork one launch (`argv`: what follows `accelerate launch`), its output written to the two files."""
        self.wait_ready()
        assert self.proc is not None and self.proc.stdin is not None
        request = {"argv": argv, "env": dict(env), "stdout": stdout, "stderr": stderr}
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        message = self._message(READY_TIMEOUT_S)
        if message is None or "pid" not in message:
            raise ForkServerError(f"the fork server did not start the launch ({message or self._tail()})")
        return ForkedLaunch(self, int(message["pid"]))

    def poll(self) -> None:
        """Read whatever the server has said, without waiting."""
        if self.proc is not None:
            self._message(0.0)

    def close(self) -> None:
        """Stop the server: closing its input is its signal to leave."""
        if self.proc is None:
            return
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            if self._log is not None:
                self._log.close()
            self.proc = None


@dataclass
class ForkedLaunch:
    """A launch the server forked: what the local engine uses of a Popen."""

    server: ForkServer
    pid: int

    def poll(self) -> int | None:
        """The return code once it ended, else None."""
        if self.pid not in self.server.ended:
            self.server.poll()
        return self.server.ended.get(self.pid)

    def wait(self) -> int:
        """Block until it ends; its return code (negative: killed by that signal)."""
        while self.poll() is None:
            time.sleep(0.02)
        return self.server.ended[self.pid]
