"""Fault injection for accel-run's own tests: ACCEL_RUN_FAILPOINT=ACTION:STEP[:RANK] in a run's environment.

ACTION is raise (an exception), exit (exit code 3), kill (SIGKILL this process), abort (SIGABRT,
as a C++ runtime does) or hang (sleep forever, so the other ranks block in their next collective).
It fires after optimizer step STEP, or with STEP `end` after the rank finished its work (metrics
written, done marker set: a fault at exit), on RANK (default: every rank). Tests set it through
the spec's launch.env, so the faults go through the real launcher and the real process group;
without the variable nothing happens.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from runner.vocab import FAILPOINT_VAR as VARIABLE

ACTIONS = ("raise", "exit", "kill", "abort", "hang")
AT_END = -2  # STEP `end`


class Failpoint:
    """A parsed failpoint, or an inert one."""

    def __init__(self, spec: str | None) -> None:
        self.action, self.step, self.rank = "", -1, None
        if not spec:
            return
        parts = spec.split(":")
        if parts[0] not in ACTIONS or len(parts) not in (2, 3):
            raise SystemExit(f"{VARIABLE}={spec!r}: expected ACTION:STEP[:RANK] with ACTION {', '.join(ACTIONS)}")
        self.action, self.step = parts[0], AT_END if parts[1] == "end" else int(parts[1])
        self.rank = int(parts[2]) if len(parts) == 3 else None

    @staticmethod
    def from_env() -> Failpoint:
        """The failpoint of this process's environment."""
        return Failpoint(os.environ.get(VARIABLE))

    def fire_at_end(self, rank: int) -> None:
        """Inject the fault of STEP `end`: after this rank's work is finished and marked done."""
        self.fire(AT_END, rank)

    def fire(self, step: int, rank: int) -> None:
        """Inject the fault if this is its step and rank."""
        if step != self.step or (self.rank is not None and rank != self.rank):
            return
        print(
            f"accel-run failpoint: {self.action} at step {step} on rank {rank} at t={time.time():.3f}",
            file=sys.stderr,
            flush=True,
        )
        if self.action == "raise":
            raise RuntimeError(f"injected failure at step {step} (ACCEL_RUN_FAILPOINT)")
        if self.action == "exit":
            os._exit(3)
        if self.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.action == "abort":
            os.abort()
        while self.action == "hang":
            time.sleep(3600)
