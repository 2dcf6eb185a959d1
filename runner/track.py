"""Report from your own Accelerate training script to accel-run: steps, losses, eval metrics, set-up.

    from runner import track

    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    track.setup(accelerator, model)                  # what the Accelerator really is: declared = observed
    for x, y in loader:
        ...                                          # forward, backward, optimizer step
        track.step(samples=len(x), loss=loss)        # once per optimizer step, this process's samples
    track.evaluate(eval_loss=..., accuracy=...)      # optional

accel-run times the steps after measure.warmup_steps from these calls and writes metrics.json
into the launch folder, which it finds through ACCEL_RUN_PLAN (set by the compiled launch); its
wrapper (runner.worker.script) finishes the report when the script returns. A script that
already calls `accelerator.log` can report with one line instead: AccelRunTracker in `log_with`.

Cheap to import: the standard library only (the work is done in runner.worker.reports). Outside
accel-run (no ACCEL_RUN_PLAN) every call does nothing, so the script runs alone too.
"""

from __future__ import annotations

from typing import Any

from runner.worker.reports import (
    active,
    contradicted,
    evaluate,
    finish,
    missing,
    observe_accelerate,
    setup,
    step,
)

# and AccelRunTracker, imported on demand (module __getattr__ below)
__all__ = ["active", "contradicted", "evaluate", "finish", "missing", "observe_accelerate", "setup", "step"]


def __getattr__(name: str) -> Any:
    """AccelRunTracker lives in runner.tracker (it imports accelerate); imported here only when asked for."""
    if name == "AccelRunTracker":
        from runner.tracker import AccelRunTracker

        return AccelRunTracker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
