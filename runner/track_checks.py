"""What runner.track checks a script's reports against: what its optimizer and model really did.

A script reports its optimizer steps and samples (`track.step`); hooks count what its objects did:
the optimizer steps the optimizers really took, the training forwards of the model and their
batch sizes, and whether Accelerate was synchronising gradients at each report. A report that
contradicts them (a step reported per micro-batch under gradient accumulation, the samples of one
micro-batch reported for a whole step, a declared script.batch_size the script does not train)
would turn into a wrong global batch, wrong step counts and a wrong samples/s; it fails the run
instead, at the script's line that reports, naming the fix. Standard library only: runner.track
imports it in every process of a user's script.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

API_NAME = "runner.track"
# Counts that differ by less than this factor are not contradictions: an fp16 step the loss scaler
# skipped, or a report made just before the optimizer step, shift counts by one, not by a factor.
_FACTOR = 1.5
_RUNNER = str(Path(__file__).resolve().parent)


@dataclass
class Seen:
    """What the script's objects did (counted by hooks) and what it reported, in its main process."""

    accumulation: int = 1  # the Accelerator's gradient accumulation
    world: int = 1  # processes in the group
    optimizer_steps: dict[int, int] = field(default_factory=dict)  # id(optimizer) -> steps it took
    forwards: int = 0  # training forwards of the model (train mode, gradients on)
    forwards_since_report: int = 0
    max_forwards_per_step: int = 0  # the most training forwards between two reported steps
    max_micro_batch: int = 0  # the largest batch dimension a training forward saw
    calls: int = 0  # track.step calls
    reported_steps: int = 0
    max_step_samples: float = 0.0  # the most samples one reported optimizer step carried
    stepped_at_last_report: tuple[int, ...] = ()  # each optimizer's steps when the last report came
    unsynced_calls: int = 0  # reports made while accelerator.sync_gradients was False
    where: str = ""  # file:line of the script's first report
    where_unsynced: str = ""  # file:line of its first report between optimizer steps

    def reported(self, samples: int, steps: int, synchronised: bool | None) -> None:
        """One `track.step` call: `steps` optimizer steps with `samples` samples of this process."""
        self.calls += 1
        self.reported_steps += steps
        self.max_step_samples = max(self.max_step_samples, samples / steps)
        per_step = -(-self.forwards_since_report // steps)
        self.max_forwards_per_step = max(self.max_forwards_per_step, per_step)
        self.forwards_since_report = 0
        self.stepped_at_last_report = tuple(self.optimizer_steps.values())
        if not self.where:
            self.where = call_site()
        if synchronised is False:
            self.unsynced_calls += 1
            if not self.where_unsynced:
                self.where_unsynced = call_site()

    def forward(self, batch: int) -> None:
        """One training forward of the model, of `batch` samples (0 when no tensor input shows a batch)."""
        self.forwards += 1
        self.forwards_since_report += 1
        self.max_micro_batch = max(self.max_micro_batch, batch)

    def stepped(self) -> int:
        """The optimizer steps to compare the reports with: of the optimizer whose count is nearest the reported
        steps (a GAN's two optimizers, a critic stepped 5 times per step, an auxiliary one stepped rarely)."""
        counts = [c for c in self.stepped_at_last_report if c]
        return min(counts, key=lambda c: abs(c - self.reported_steps), default=0)


def call_site() -> str:
    """'my_train.py:47': the first frame outside accel-run and Accelerate (the script's line that reports)."""
    skipped = [_RUNNER]
    accelerate = sys.modules.get("accelerate")
    if accelerate is not None and accelerate.__file__:  # accelerator.log, on the tracker's way
        skipped.append(str(Path(accelerate.__file__).resolve().parent))
    frame = sys._getframe(1)
    while frame is not None:
        name = str(Path(frame.f_code.co_filename).resolve())
        if not any(name.startswith(folder) for folder in skipped):
            return f"{Path(name).name}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return "the script"


def _apart(a: float, b: float) -> bool:
    """Whether two counts differ by a factor, not by a step or two."""
    return max(a, b) >= _FACTOR * min(a, b) and abs(a - b) >= 2


def contradiction(seen: Seen, declared_batch: int | None = None, batch_arg: str | None = None) -> str:
    """The first way the reports contradict what the script's objects did, as a located sentence; '' if none.

    The model's batch dimension is read from its first tensor input, which is not always the batch (a
    sequence-first RNN): it only ever confirms a pattern the reported numbers show on their own, exactly.
    """
    reported, stepped, accumulation = seen.reported_steps, seen.stepped(), seen.accumulation
    per_optimizer_step = "once per optimizer step: after optimizer.step(), when accelerator.sync_gradients is True"
    whole_step = "samples= counts this process's samples of the whole optimizer step"
    if seen.unsynced_calls:
        return (
            f"{seen.where_unsynced}: {API_NAME}.step was called while gradients were not synchronised "
            f"({seen.unsynced_calls:,} of {seen.calls:,} calls came between optimizer steps, under gradient "
            f"accumulation {accumulation}), so it reported {reported:,} optimizer steps where the optimizer took "
            f"{stepped:,}: call it {per_optimizer_step}"
        )
    if stepped and _apart(reported, stepped):
        return (
            f"{seen.where}: the script reported {reported:,} optimizer steps, but its optimizer took {stepped:,} "
            f"(gradient accumulation {accumulation}): call {API_NAME}.step {per_optimizer_step} (steps=N reports N "
            "at once; through accelerator.log, pass step= the optimizer steps completed)"
        )
    per_step, micro, forwards = seen.max_step_samples, seen.max_micro_batch, seen.max_forwards_per_step
    # one forward per micro-batch (at most `accumulation` per step): a model called twice per batch is not judged
    one_each = micro > 0 and 1 <= forwards <= accumulation
    if one_each and forwards >= 2 and per_step == micro:
        return (
            f"{seen.where}: the script reported {per_step:g} samples per optimizer step, but the model trained "
            f"{micro * forwards:,} in this process per optimizer step ({forwards} micro-batches of {micro}, gradient "
            f"accumulation {accumulation}): {whole_step} (its batch x gradient accumulation)"
        )
    expected = declared_batch * accumulation if declared_batch is not None else None
    # an epoch shorter than one optimizer step carries fewer samples: not a contradiction
    if expected is not None and per_step != expected and not (per_step < expected and forwards < accumulation):
        trained = f" (the model trained micro-batches of {micro})" if one_each and micro * forwards == per_step else ""
        passed = (
            f"accel-run passes {batch_arg} {declared_batch}"
            if batch_arg
            else "script.batch_size_arg is null: your script must use it on its own"
        )
        return (
            f"{seen.where}: script.batch_size declares {declared_batch} samples per process and micro-batch "
            f"({expected:,} per optimizer step with gradient accumulation {accumulation}), but the script reported "
            f"{per_step:g} per optimizer step{trained}: give the declared batch to your DataLoader ({passed}), "
            f"and {whole_step}"
        )
    if one_each and seen.world > 1 and per_step == micro * forwards * seen.world:
        return (
            f"{seen.where}: the script reported {per_step:g} samples per optimizer step, the samples of all "
            f"{seen.world} processes, but {whole_step} in this process alone ({micro * forwards:,}): accel-run "
            "counts every process's samples itself"
        )
    return ""
