"""Peak tensor memory on CPU: what runner.worker.memory counts, and what it does not."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from runner.worker.memory import cpu_tensor_peak_mb, step_peak_bytes, tensor_bytes

MiB = 2**20


def block(nbytes: int) -> torch.Tensor:
    return torch.empty(nbytes, dtype=torch.uint8)


# --- tensor_bytes: the storages live before a step ---------------------------------------------------


def test_views_of_one_storage_count_once() -> None:
    base = torch.zeros(256, 1024)  # 1 MiB of float32
    views = [base, base[:10], base.view(-1), base.t(), base.detach()]
    assert tensor_bytes(views) == 1 * MiB


def test_distinct_storages_add_up() -> None:
    assert (
        tensor_bytes([torch.zeros(1024, dtype=torch.float64), torch.zeros(1024, dtype=torch.int8)]) == 8 * 1024 + 1024
    )


def test_a_slice_counts_the_whole_storage_it_keeps_alive() -> None:
    assert tensor_bytes([torch.zeros(1000)[:1]]) == 4000


def test_nothing_empty_and_meta_tensors_count_zero() -> None:
    assert tensor_bytes([]) == 0
    assert tensor_bytes([torch.empty(0), torch.empty(1024, device="meta")]) == 0


def test_parameters_and_their_gradients_are_separate_storages() -> None:
    layer = nn.Linear(100, 10)  # 1010 parameters
    layer(torch.randn(4, 100)).sum().backward()
    tensors = [*layer.parameters(), *(p.grad for p in layer.parameters() if p.grad is not None)]
    assert tensor_bytes(tensors) == 2 * 1010 * 4


# --- step_peak_bytes: what one step allocates on top ---------------------------------------------------


def test_a_step_that_allocates_and_frees_a_known_tensor_peaks_at_its_size() -> None:
    def step() -> None:
        tensor = block(64 * MiB)
        tensor.fill_(1)
        del tensor

    peak = step_peak_bytes(step)
    assert 64 * MiB <= peak <= 64 * MiB * 1.01


def test_the_peak_is_the_highest_point_not_the_sum_of_allocations() -> None:
    def step() -> None:
        a, b = block(40 * MiB), block(40 * MiB)
        del a
        c = block(20 * MiB)  # 60 MiB live now; 100 MiB were allocated in all
        del b, c

    assert step_peak_bytes(step) == 80 * MiB


def test_a_tensor_the_step_keeps_counts_at_its_peak() -> None:
    kept: list[torch.Tensor] = []
    assert step_peak_bytes(lambda: kept.append(block(24 * MiB))) == 24 * MiB
    assert len(kept) == 1


def test_views_and_in_place_ops_allocate_nothing() -> None:
    tensor = torch.ones(1024, 1024)

    def step() -> None:
        tensor.view(-1, 4).t()
        tensor.mul_(2)  # a scalar operand may take a few bytes, never a tensor's worth

    assert step_peak_bytes(step) < 1024


def test_freeing_memory_from_before_the_step_does_not_offset_what_the_step_allocates() -> None:
    outside = [block(50 * MiB)]  # allocated before any profiling: its free is not reported
    earlier: list[torch.Tensor] = []
    step_peak_bytes(lambda: earlier.append(block(50 * MiB)))  # allocated under an earlier profile: reported

    for held in (outside, earlier):

        def step(held: list[torch.Tensor] = held) -> None:
            held.clear()
            fresh = block(30 * MiB)
            del fresh

        assert step_peak_bytes(step) == 30 * MiB  # a running sum of every event would say 0 for `earlier`


def test_allocations_on_other_threads_are_not_seen() -> None:
    """A limit of the profiler: it records the thread that runs the step (autograd's CPU backward included)."""

    def step() -> None:
        thread = threading.Thread(target=lambda: block(16 * MiB).fill_(0))
        thread.start()
        thread.join()

    assert step_peak_bytes(step) == 0


# --- cpu_tensor_peak_mb: resident plus the step's peak -------------------------------------------------


def test_the_peak_is_the_resident_storages_plus_the_step_peak() -> None:
    weights = torch.zeros(2 * MiB)  # 8 MiB
    resident = (t for t in [weights, weights[1:], weights.view(2, -1)])  # any iterable, read once

    def step() -> None:
        block(16 * MiB).fill_(0)

    peak = cpu_tensor_peak_mb(step, resident)
    assert peak == pytest.approx(8 + 16, abs=0.01)


def mlp(dims: list[int]) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for width, out in zip(dims[:-1], dims[1:], strict=True):
        layers += [nn.Linear(width, out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def training_step(
    model: nn.Module, batch: int, bf16: bool = False, momentum: float = 0.0
) -> tuple[Callable[[], None], list[torch.Tensor]]:
    """A step (forward, backward, SGD update) and the tensors that outlive it: parameters, momentum, the batch.

    The update is written out: torch.optim's first use in a process imports dynamo, which takes seconds.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    x = torch.randn(batch, linears[0].in_features)
    y = torch.randint(0, linears[-1].out_features, (batch,))
    buffers = {p: torch.zeros_like(p) for p in model.parameters()} if momentum else {}

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        with torch.no_grad():
            for param in model.parameters():
                assert param.grad is not None
                update = buffers[param].mul_(momentum).add_(param.grad) if momentum else param.grad
                param.add_(update, alpha=-0.1)  # in place: no temporary
                param.grad = None  # like zero_grad(set_to_none=True): the next step allocates them again

    return step, [*model.parameters(), *buffers.values(), x, y]


def test_a_training_step_holds_every_gradient_at_its_peak() -> None:
    model = mlp([256, 512, 512, 10])
    param_bytes = tensor_bytes(model.parameters())
    assert param_bytes <= step_peak_bytes(training_step(model, batch=32)[0]) <= 1.2 * param_bytes


def test_a_training_step_peaks_at_parameters_state_and_data_plus_gradients() -> None:
    model = mlp([256, 512, 10])
    step, resident = training_step(model, batch=8, momentum=0.9)
    param_bytes = tensor_bytes(model.parameters())
    data_bytes = 8 * 256 * 4 + 8 * 8
    assert tensor_bytes(resident) == 2 * param_bytes + data_bytes  # parameters, momentum, the batch
    peak = cpu_tensor_peak_mb(step, resident) * MiB
    assert 3 * param_bytes + data_bytes <= peak <= 3.2 * param_bytes + data_bytes  # + gradients, small activations


def sgd_peaks(dims: list[int], batch: int) -> dict[bool, int]:
    return {bf16: step_peak_bytes(training_step(mlp(dims), batch, bf16)[0]) for bf16 in (False, True)}


def test_bf16_autocast_shrinks_the_activation_peak_of_a_large_batch() -> None:
    """At a large batch the activations dominate, and autocast saves them in bf16: about two thirds the peak."""
    peaks = sgd_peaks([64, 256, 256, 4], batch=4096)
    assert peaks[True] < 0.8 * peaks[False]


def test_bf16_autocast_grows_the_peak_of_a_small_batch() -> None:
    """At a small batch the gradients dominate; they stay float32 and autocast adds bf16 copies of the weights."""
    peaks = sgd_peaks([256, 2048, 10], batch=16)
    weight_copies = tensor_bytes(p for p in mlp([256, 2048, 10]).parameters() if p.dim() == 2) // 2
    assert peaks[True] > peaks[False] + weight_copies / 2
