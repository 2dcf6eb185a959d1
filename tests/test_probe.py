"""The attribution probe, run for real on this machine's CPU in-process.

The probe is the worker's own code (runner.worker.probe), driven through a real Accelerator on
CPU; nothing of ours is replaced. Timings are compared only with each other (a bigger model
against a smaller one, the busy time against the wall of the same window), never with a target.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from runner.worker.probe import attribution


@pytest.fixture
def accelerator() -> Iterator[Accelerator]:
    yield Accelerator(cpu=True)
    AcceleratorState._reset_state(True)  # the next test starts from no process state


def trained(accelerator: Accelerator, width: int) -> tuple[Any, Any, torch.Tensor, torch.Tensor, Callable[[], None]]:
    """A two-layer MLP of `width`, AdamW (foreach), its data, and one whole training step."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, 10))
    optimizer = torch.optim.AdamW(model.parameters(), foreach=True)
    model, optimizer = accelerator.prepare(model, optimizer)
    inputs, labels = torch.randn(512, width), torch.randint(0, 10, (512,))

    def whole_step() -> None:
        index = torch.randint(0, 512, (32,))
        accelerator.backward(F.cross_entropy(model(inputs[index]), labels[index]))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return model, optimizer, inputs, labels, whole_step


def adam_steps(optimizer: Any) -> set[int]:
    """The step count AdamW keeps per parameter: it counts only steps that found a gradient."""
    return {int(state["step"]) for state in optimizer.optimizer.state.values()}


def test_the_optimizer_is_timed_on_real_gradients(accelerator: Accelerator) -> None:
    # Before the fix the probe timed raw.step right after zero_grad(set_to_none=True): AdamW skipped
    # every parameter, kept no state, and "took" 0.05 ms for 31.5M parameters on an H200.
    model, optimizer, inputs, labels, _ = trained(accelerator, 32)
    probe = attribution(accelerator, model, optimizer, inputs, labels, batch=32, accumulation=1, step_time_s=0.01)
    assert len(optimizer.optimizer.state) == 4  # two weights, two biases: every parameter was stepped
    assert adam_steps(optimizer) == {probe["probes"]}


def test_the_optimizer_time_grows_with_the_parameters(accelerator: Accelerator) -> None:
    small = trained(accelerator, 32)  # 1,386 parameters
    large = trained(accelerator, 2048)  # 4,216,842 parameters: AdamW reads and writes 4 x 17 MB per step
    times = []
    for model, optimizer, inputs, labels, _ in (small, large):
        probe = attribution(accelerator, model, optimizer, inputs, labels, batch=32, accumulation=1, step_time_s=0.01)
        times.append(probe["optimizer_s"])
    assert times[1] > 5 * times[0]  # measured 44x on a 2-core machine; an empty step is flat
