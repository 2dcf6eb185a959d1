"""The attribution probe and the second clock, run for real on this machine's CPU in-process.

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

from runner.worker.clock import device_clock, window_steps
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


def test_the_probe_ends_with_the_second_clock_on_the_whole_step(accelerator: Accelerator) -> None:
    model, optimizer, inputs, labels, whole_step = trained(accelerator, 256)
    before = adam_steps(optimizer)
    probe = attribution(
        accelerator, model, optimizer, inputs, labels, batch=32, accumulation=1, step_time_s=0.01, whole_step=whole_step
    )
    wall_steps, profiled_steps = window_steps(0.01)
    assert (wall_steps, profiled_steps) == (50, 5)
    assert window_steps(0.00177) == (50, 5) and window_steps(0.1) == (5, 2) and window_steps(3.0) == (2, 1)
    assert probe["device_clock"] == "cpu_ops"
    assert probe["device_clock_steps"] == profiled_steps
    # every optimizer step of the window went through the training step's own code, with gradients
    assert adam_steps(optimizer) == {max(before, default=0) + 2 * probe["probes"] + wall_steps + profiled_steps}
    assert 0 < probe["device_busy_s"] <= probe["device_profiled_wall_s"]
    # on a CPU the ops' self time is held against the wall of the same, profiled, steps
    assert probe["device_busy_share"] == pytest.approx(
        probe["device_busy_s"] / probe["device_profiled_wall_s"], abs=1e-4
    )
    assert probe["device_busy_share"] <= 1
    assert probe["device_optimizer_s"] > 0 and probe["device_matmul_s"] > 0
    assert probe["device_communication_s"] == 0  # one process: no all-reduce
    assert probe["device_optimizer_launches_per_step"] > 0


def test_the_clock_splits_cpu_time_by_what_the_ops_do(accelerator: Accelerator) -> None:
    _, _, _, _, whole_step = trained(accelerator, 256)
    reading = device_clock(whole_step, torch.device("cpu"), step_time_s=0.05)
    assert reading is not None
    parts = reading.by_class_s
    assert parts["matmul"] > 0 and parts["optimizer"] > 0 and parts["other"] > 0  # the loss, ReLU, indexing
    assert parts["communication"] == 0  # one process: no all-reduce
    assert reading.busy_s == pytest.approx(sum(parts.values()))  # CPU self times are disjoint: the union is the sum
    assert 0 < reading.optimizer_launches < reading.launches
    # the same code path issues the same ops every step
    again = device_clock(whole_step, torch.device("cpu"), step_time_s=0.05)
    assert again is not None and (again.launches, again.optimizer_launches) == (
        reading.launches,
        reading.optimizer_launches,
    )


def test_autocast_casts_are_counted_as_casts(accelerator: Accelerator) -> None:
    _, _, _, _, whole_step = trained(accelerator, 256)

    def bf16_step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            whole_step()

    reading = device_clock(bf16_step, torch.device("cpu"), step_time_s=0.05)
    assert reading is not None and reading.by_class_s["cast"] > 0
