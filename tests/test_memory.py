"""Training memory by part: what runner.worker.memory counts and what it does not, on CPU in process, through a
device allocator's figures, and in real launches (where the data set is measured and left out of the peak)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import run_cli
from runner.verdicts.why import explain
from runner.worker.memory import (
    MemoryParts,
    allocator_step_peak,
    step_peak_bytes,
    step_peak_of,
    tensor_bytes,
    training_memory,
)

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


# --- training_memory: each part measured, the data set apart -------------------------------------------


SAMPLES, FEATURES, HIDDEN, CLASSES = 4096, 256, 512, 10


def adam_parts(batch: int, bf16: bool = False, device: str = "cpu") -> tuple[MemoryParts, int]:
    """The parts of one Adam step of a 256 -> 512 -> 10 MLP on a resident data set; and its parameter bytes.

    As the worker does: batches drawn from the data set, the optimizer's state present (one step first).
    """
    model = mlp([FEATURES, HIDDEN, CLASSES]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=False)
    data = torch.randn(SAMPLES, FEATURES, device=device)
    labels = torch.randint(0, CLASSES, (SAMPLES,), device=device)

    def step() -> None:
        index = torch.randint(0, SAMPLES, (batch,), device=device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            logits = model(data.index_select(0, index))
        F.cross_entropy(logits.float(), labels.index_select(0, index)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # Adam's moments exist from its first step on
    state = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    parts = training_memory(
        step,
        parameters=model.parameters(),
        optimizer_state=state,
        data=[data, labels],
        optimizer=optimizer,
        step_peak=step_peak_of(torch.device(device)),
    )
    return parts, tensor_bytes(model.parameters())


def test_each_part_of_an_adam_step_is_measured() -> None:
    parts, param_bytes = adam_parts(batch=32)
    assert param_bytes == (FEATURES * HIDDEN + HIDDEN + HIDDEN * CLASSES + CLASSES) * 4
    assert parts.parameters == param_bytes
    assert parts.gradients == param_bytes  # one float32 gradient per parameter, when the optimizer steps
    assert parts.optimizer_state == 2 * param_bytes + 4 * 4  # two moments, and a step count per parameter tensor
    assert parts.data == SAMPLES * FEATURES * 4 + SAMPLES * 8
    assert parts.activations == parts.step_peak - parts.gradients > 0
    # the data set is measured, not counted: training memory is the state plus what the step holds
    assert parts.training == parts.parameters + parts.optimizer_state + parts.step_peak
    assert parts.training == parts.parameters + parts.gradients + parts.optimizer_state + parts.activations
    metrics = parts.as_metrics()
    assert metrics["peak_memory_mb"] == round(parts.training / MiB, 4)
    assert metrics["memory_data_mb"] == round(parts.data / MiB, 4)


def test_a_larger_batch_grows_the_activations_only() -> None:
    small, _ = adam_parts(batch=32)
    large, _ = adam_parts(batch=1024)
    for part in ("parameters", "gradients", "optimizer_state", "data"):
        assert getattr(large, part) == getattr(small, part), part
    # each more sample keeps at least its input rows, the hidden layer and its ReLU for the backward pass
    assert large.activations - small.activations >= (1024 - 32) * (FEATURES + 2 * HIDDEN) * 4


def test_bf16_autocast_leaves_the_training_state_and_gradients_float32() -> None:
    fp32, param_bytes = adam_parts(batch=1024)
    bf16, _ = adam_parts(batch=1024, bf16=True)
    assert (bf16.parameters, bf16.gradients, bf16.optimizer_state) == (param_bytes, param_bytes, 2 * param_bytes + 16)
    assert bf16.activations < fp32.activations  # what bf16 can shrink, at a batch where activations count


class CountedAllocator:
    """An allocator's figures kept by hand, as torch.cuda keeps them: bytes allocated now, the peak since a reset."""

    def __init__(self) -> None:
        self.now = self.high = 0
        self.calls: list[str] = []

    def allocate(self, size: int) -> None:
        self.now += size
        self.high = max(self.high, self.now)

    def free(self, size: int) -> None:
        self.now -= size

    def synchronize(self) -> None:
        self.calls.append("synchronize")

    def reset_peak(self) -> None:
        self.calls.append("reset_peak")
        self.high = self.now

    def allocated(self) -> int:
        return self.now

    def peak(self) -> int:
        return self.high


def test_on_a_device_the_step_peak_is_the_allocators_peak_above_what_was_allocated_before() -> None:
    counted = CountedAllocator()
    counted.allocate(1000)  # the training state and the data set, resident
    counted.allocate(5000)  # a peak from before (evaluation, say): a reset forgets it
    counted.free(5000)

    def step() -> None:
        counted.allocate(300)  # activations
        counted.allocate(200)  # gradients
        counted.free(300)
        counted.allocate(50)  # an optimizer temporary
        counted.free(250)

    assert allocator_step_peak(counted)(step) == 500
    assert counted.calls == ["synchronize", "reset_peak", "synchronize"]  # the device idle before the peak is read


@pytest.mark.gpu
def test_on_a_gpu_the_parts_are_those_measured_on_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cpu, param_bytes = adam_parts(batch=256)
    gpu, _ = adam_parts(batch=256, device="cuda")
    assert (gpu.parameters, gpu.gradients, gpu.optimizer_state, gpu.data) == (
        cpu.parameters,
        cpu.gradients,
        cpu.optimizer_state,
        cpu.data,
    )
    assert gpu.activations > 256 * (FEATURES + 2 * HIDDEN) * 4  # the CUDA allocator's peak above the state


# --- real launches: what summary.json says of each run's memory ------------------------------------------

MEMORY_SPEC = """\
name: memory
model: {kind: mlp, input_dim: 64, hidden: [256], classes: 8}
data: {kind: synthetic-classification, samples: 8192, features: 64, classes: 8}
train: {max_steps: 12, batch_size: 256, eval_samples: 1024, optimizer: {kind: adamw, lr: 0.001}}
launch: {device: cpu}
measure: {warmup_steps: 2, repeats: 1, attribution: false, extend_share: 0}
runs:
  fp32: {}
  bf16: {launch: {mixed_precision: bf16}}
  accum-4: {train: {batch_size: 64, gradient_accumulation_steps: 4}}
expect:
  - {kind: ratio, run: accum-4, baseline: fp32, metric: peak_memory_mb, at_most: 0.9}
"""


@pytest.mark.slow
def test_launches_measure_each_part_and_leave_the_data_set_out_of_the_peak(tmp_path: Path) -> None:
    spec = tmp_path / "memory.yaml"
    spec.write_text(MEMORY_SPEC)
    done = run_cli(str(spec), "--output", str(tmp_path / "out"), "--no-progress")
    assert done.returncode in (0, 1), done.stderr
    (summary_file,) = (tmp_path / "out").glob("memory/*/summary.json")
    summary = json.loads(summary_file.read_text())
    metrics = {name: run["metrics"] for name, run in summary["runs"].items()}
    params = (64 * 256 + 256 + 256 * 8 + 8) * 4 / MiB
    data = ((8192 + 1024) * 64 * 4 + (8192 + 1024) * 8) / MiB  # train and eval samples with their labels
    for name, m in metrics.items():
        assert m["peak_memory_source"] == "training_peak", name
        assert m["memory_parameters_mb"] == pytest.approx(params, abs=1e-4), name
        assert m["memory_gradients_mb"] == pytest.approx(params, abs=1e-4), name  # fp32 under autocast too
        assert m["memory_optimizer_mb"] == pytest.approx(2 * params, abs=1e-3), name  # AdamW's two moments
        assert m["memory_data_mb"] == pytest.approx(data, abs=1e-4), name  # measured in every run, the same
        parts = sum(m[f"memory_{part}_mb"] for part in ("parameters", "gradients", "optimizer", "activations"))
        assert m["peak_memory_mb"] == pytest.approx(parts, abs=5e-4), name  # the data set is not in the peak
        assert m["peak_memory_mb"] < m["memory_data_mb"], name  # here the data set is larger than training
    # a quarter of the micro-batch: a quarter of the batch's activations, and a peak that shows the saving
    assert metrics["accum-4"]["memory_activations_mb"] < 0.5 * metrics["fp32"]["memory_activations_mb"]
    assert metrics["bf16"]["memory_activations_mb"] < metrics["fp32"]["memory_activations_mb"]
    (verdict,) = summary["expectations"]
    assert verdict["verdict"] == "pass", verdict["message"]
    why = explain({**verdict, "verdict": "fail"}, summary["runs"], summary["environment"])  # the Why of a miss
    assert why is not None
    assert why["sentences"][1].startswith("by part, 'accum-4' vs 'fp32': parameters ")
    assert why["sentences"][2].startswith(f"not counted: the data set kept in memory, {data:.3g} MB in 'accum-4'")
    assert why["sentences"][3].startswith("the training state (parameters, gradients, optimizer state) is ") and why[
        "sentences"
    ][3].endswith(
        "is all activations ({:.2f}x)".format(
            metrics["accum-4"]["memory_activations_mb"] / metrics["fp32"]["memory_activations_mb"]
        )
    )


def test_both_reporters_see_the_compute_dtype_once_and_unhook() -> None:
    from runner.worker.device import peak_memory_mb, sync, watch_compute_dtype

    model, seen = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), []
    watch_compute_dtype(model, seen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.zeros(3, 4))
    model(torch.zeros(3, 4))
    assert seen == ["torch.bfloat16"]  # the first forward's, then the hook is gone
    unwatched: list[str] = []
    relu = nn.ReLU()
    watch_compute_dtype(relu, unwatched)  # no Linear layer: not known, not guessed
    relu(torch.zeros(1))
    assert unwatched == []
    sync(torch.device("cpu"))  # nothing queued on a CPU
    peak, source = peak_memory_mb(None)
    assert peak > 0 and source == "peak_rss"
