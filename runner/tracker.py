"""AccelRunTracker: an Accelerate tracker (`log_with`) that reports `accelerator.log` calls to accel-run.

A script that already logs needs one line: `Accelerator(log_with=AccelRunTracker(samples_per_step=64))`
(with `accelerator.init_trackers(...)` and `accelerator.end_training()`, as every tracker needs).
Each `accelerator.log({...}, step=N)` with a `loss` (or `train_loss`) ends optimizer steps: N is
the number of steps completed (a `completed_steps` counter), so a script logging every 10 steps
ends 10 at a time (without `step`, one); `eval_loss` and `accuracy` (or `eval_accuracy`) are evaluation
results; `samples` and `tokens` in the values override the constructor's counts. Accelerate calls
trackers on the main process only, which is the process that writes accel-run's report.
This module imports accelerate: runner.track imports it only when AccelRunTracker is asked for.
"""

from __future__ import annotations

from typing import Any

from accelerate.tracking import GeneralTracker

from runner.worker import reports as track


class AccelRunTracker(GeneralTracker):  # type: ignore[misc]  # accelerate is untyped
    """Report `accelerator.log` to accel-run: steps with their samples, losses, eval metrics, the set-up."""

    name = "accel-run"
    requires_logging_directory = False

    def __init__(self, samples_per_step: int, tokens_per_step: int | None = None) -> None:
        """`samples_per_step`: the samples one process trains per optimizer step (batch x accumulation)."""
        super().__init__()
        self.samples_per_step, self.tokens_per_step = samples_per_step, tokens_per_step
        self.last_step = 0  # optimizer steps completed at the last logged loss

    def start(self) -> None:
        """`accelerator.init_trackers`: the Accelerator exists now; its set-up is what accel-run checks."""
        track.observe_accelerate()

    @property
    def tracker(self) -> Any:
        """The underlying tracking object (Accelerate's protocol): here, runner.track's core module."""
        return track

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        """One `accelerator.log` call: a loss ends the steps since the last one; eval values are recorded."""
        loss = values.get("loss", values.get("train_loss"))
        if loss is not None:
            steps = 1 if step is None else max(1, step - self.last_step)
            self.last_step = self.last_step + 1 if step is None else step
            samples = int(values.get("samples", self.samples_per_step * steps))
            tokens = values.get("tokens", None if self.tokens_per_step is None else self.tokens_per_step * steps)
            track.step(samples, loss=loss, tokens=tokens, steps=steps)
        accuracy = values.get("accuracy", values.get("eval_accuracy"))
        if values.get("eval_loss") is not None or accuracy is not None:
            track.evaluate(eval_loss=values.get("eval_loss"), accuracy=accuracy)

    def finish(self) -> None:
        """`accelerator.end_training()`: write the report now (accel-run's wrapper would at the script's end)."""
        track.finish()
