"""The second clock's classification and arithmetic, on kernels shaped like an H200's bf16 train step.

The kernel names are the forms cuBLAS, cuBLASLt and ATen give their kernels on Hopper (shortened
where they run to hundreds of characters); the durations are shaped like train_large's bf16 step
on the H200 (0.58 ms of kernels in a 1.77 ms step, ../shared/gpu/README.md), not measured.
The last tests parse torch's own profiler event objects, built as a CUDA trace would give them.
"""

from __future__ import annotations

import pytest
from torch._C._autograd import DeviceType
from torch.autograd.profiler_util import EventList, FunctionEvent

from runner.worker.clock import device_works
from runner.worker.kernels import CLASSES, DeviceWork, busy_us, classify, read_clock

GEMM = "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off_kernel"
NVJET = "nvjet_tst_192x192_64x4_2x1_v_bz_coopB_TNT"
COPY = "void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda(at::TensorIteratorBase&)"
ADAM = "void at::native::multi_tensor_apply_kernel<FusedOptimizerTensorListMetadata<4>, FusedAdamMathFunctor<float, 4>>"
RELU = "void at::native::vectorized_elementwise_kernel<4, at::native::launch_clamp_scalar(at::TensorIteratorBase&)>"
NCCL = "ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)"
SDPA, SDPA_CPU = "aten::scaled_dot_product_attention", "aten::_scaled_dot_product_flash_attention_for_cpu"
BACKWARD = ("AddmmBackward0", "autograd::engine::evaluate_function: AddmmBackward0")


@pytest.mark.parametrize(
    ("work", "expected"),
    [
        (DeviceWork(GEMM, 30.0, ("aten::addmm", "aten::linear")), "matmul"),
        (DeviceWork(NVJET, 40.0, ("aten::mm", *BACKWARD)), "matmul"),
        # the bias copied into addmm's output: matmul work, though the kernel is a copy
        (DeviceWork(COPY, 2.0, ("aten::copy_", "aten::addmm", "aten::linear")), "matmul"),
        # autocast's cast of a weight to bf16, inside linear: a cast, though linear encloses it
        (DeviceWork(COPY, 8.0, ("aten::copy_", "aten::_to_copy", "aten::to", "aten::linear")), "cast"),
        (DeviceWork(COPY, 6.0, ("aten::copy_", "aten::_to_copy", "aten::to", "ToCopyBackward0")), "cast"),
        (DeviceWork(ADAM, 90.0, ("aten::_fused_adamw_", "Optimizer.step#AdamW.step")), "optimizer"),
        # clip_grad_norm_'s foreach norm uses the same multi-tensor kernel, outside the optimizer's range
        (DeviceWork(ADAM, 5.0, ("aten::_foreach_norm", "aten::linalg_vector_norm")), "other"),
        (DeviceWork(NCCL, 200.0, ("nccl:all_reduce",)), "communication"),
        (DeviceWork(NCCL, 200.0), "communication"),
        (DeviceWork("Memcpy HtoD (Pageable -> Device)", 3.0, ("aten::copy_", "aten::_to_copy", "aten::to")), "other"),
        (DeviceWork("Memset (Device)", 1.0, ("aten::zero_",)), "other"),
        (DeviceWork(RELU, 4.0, ("aten::clamp_min", "aten::relu")), "other"),
        (DeviceWork("flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128, 128, 4>>", 20.0, ()), "matmul"),
        (DeviceWork(GEMM, 30.0, ()), "matmul"),  # an unknown issuer: the name says GEMM
        (DeviceWork(COPY, 30.0, ()), "other"),
        # on a CPU the op itself comes first in its chain
        (DeviceWork("aten::addmm", 500.0, ("aten::addmm", "aten::linear")), "matmul"),
        (DeviceWork("aten::_to_copy", 5.0, ("aten::_to_copy", "aten::to", "aten::linear")), "cast"),
        (DeviceWork("aten::to", 1.0, ("aten::to", "aten::linear")), "matmul"),  # a no-op `to` converts nothing
        (DeviceWork("aten::_scaled_dot_product_flash_attention_for_cpu", 80.0, (SDPA_CPU, SDPA)), "matmul"),
        (DeviceWork("aten::scaled_dot_product_attention", 3.0, (SDPA,)), "matmul"),
    ],
)
def test_each_piece_of_device_work_is_classified_by_what_issued_it(work: DeviceWork, expected: str) -> None:
    assert classify(work) == expected


def test_busy_time_counts_overlapping_kernels_once() -> None:
    # backward's GEMMs on the compute stream while NCCL's all-reduce runs on its own
    works = [
        DeviceWork(GEMM, 60.0, start_us=20.0),
        DeviceWork(NCCL, 40.0, start_us=30.0),  # inside the GEMM's interval
        DeviceWork(COPY, 15.0, start_us=80.0),  # starts as the GEMM ends
        DeviceWork(ADAM, 80.0, start_us=150.0),
    ]
    assert busy_us(works) == 60 + 15 + 80
    assert busy_us([DeviceWork("aten::mm", 5.0), DeviceWork("aten::add", 2.0)]) == 7.0  # CPU self times add up


def h200_bf16_step(index: int) -> list[DeviceWork]:
    """One bf16 step's kernels, back to back from `index` x 1770 us: 0.58 ms of work in a 1.77 ms step."""
    start = index * 1770.0
    kernels = [
        (GEMM, 150.0, ("aten::addmm", "aten::linear")),
        (COPY, 130.0, ("aten::copy_", "aten::_to_copy", "aten::to", "aten::linear")),
        (RELU, 40.0, ("aten::clamp_min", "aten::relu")),
        (NVJET, 150.0, ("aten::mm", *BACKWARD)),
        (ADAM, 110.0, ("aten::_fused_adamw_", "Optimizer.step#AdamW.step")),
    ]
    works = []
    for name, duration, chain in kernels:
        works.append(DeviceWork(name, duration, chain, start))
        start += duration + 200.0  # the GPU waits 200 us for the CPU after each kernel
    return works


def test_a_profiled_window_reduces_to_figures_per_step() -> None:
    works = [w for step in range(5) for w in h200_bf16_step(step)]
    reading = read_clock(works, clock="cuda_kernels", steps=5, wall_s=0.00177, profiled_wall_s=0.0031)
    assert reading.busy_s == pytest.approx(0.00058)
    assert reading.busy_share == pytest.approx(0.58 / 1.77)  # kernels against the wall without the profiler
    on_cpu = read_clock(works, clock="cpu_ops", steps=5, wall_s=0.00177, profiled_wall_s=0.0031)
    assert on_cpu.busy_share == pytest.approx(0.58 / 3.1)  # CPU self time against the profiled steps' wall
    assert reading.launches == 5 and reading.optimizer_launches == 1
    assert reading.by_class_s == pytest.approx(
        {"matmul": 0.0003, "cast": 0.00013, "optimizer": 0.00011, "communication": 0.0, "other": 0.00004}
    )
    data = reading.as_json()
    assert set(data) == {
        "device_clock",
        "device_clock_steps",
        "device_wall_s",
        "device_busy_s",
        "device_busy_share",
        "device_launches_per_step",
        "device_optimizer_launches_per_step",
        "device_profiled_wall_s",
        *(f"device_{name}_s" for name in CLASSES),
    }
    assert (data["device_clock"], data["device_busy_share"], data["device_cast_s"]) == ("cuda_kernels", 0.3277, 0.00013)


def cpu_op(op_id: int, name: str, start: float, end: float) -> FunctionEvent:
    return FunctionEvent(id=op_id, name=name, thread=1, start_us=start, end_us=end, use_device="cuda")


def gpu_kernel(correlation: int, name: str, start: float, end: float, issuer: int) -> FunctionEvent:
    return FunctionEvent(
        id=correlation,
        name=name,
        thread=7,  # the stream
        start_us=start,
        end_us=end,
        use_device="cuda",
        device_type=DeviceType.CUDA,
        linked_correlation_id=issuer,
    )


def test_a_cuda_trace_links_each_kernel_to_the_ops_that_issued_it() -> None:
    # torch's own event objects, arranged as the profiler returns a CUDA trace: CPU ops nested by time
    # on one thread, a cudaLaunchKernel runtime event inside its op, kernels on the device linked back
    events = EventList(
        [
            cpu_op(1, "aten::linear", 0, 50),
            cpu_op(2, "aten::addmm", 10, 40),
            FunctionEvent(id=900, name="cudaLaunchKernel", thread=1, start_us=12, end_us=16, linked_correlation_id=2),
            cpu_op(3, "aten::to", 55, 95),
            cpu_op(4, "aten::_to_copy", 56, 94),
            cpu_op(6, "aten::copy_", 60, 90),
            cpu_op(7, "Optimizer.step#AdamW.step", 100, 200),
            cpu_op(5, "aten::_fused_adamw_", 110, 190),
            gpu_kernel(900, GEMM, 20, 80, issuer=2),
            gpu_kernel(901, COPY, 80, 95, issuer=6),
            gpu_kernel(902, ADAM, 150, 230, issuer=5),
            gpu_kernel(903, NCCL, 30, 70, issuer=0),  # issued by nothing in the trace
        ],
        use_device="cuda",
    )
    events._build_tree()
    works = device_works(events, "cuda")
    assert [(w.name, w.chain, classify(w)) for w in works] == [
        (GEMM, ("aten::addmm", "aten::linear"), "matmul"),
        (COPY, ("aten::copy_", "aten::_to_copy", "aten::to"), "cast"),
        (ADAM, ("aten::_fused_adamw_", "Optimizer.step#AdamW.step"), "optimizer"),
        (NCCL, (), "communication"),
    ]
    reading = read_clock(works, clock="cuda_kernels", steps=1, wall_s=0.0003)
    assert reading.busy_s == pytest.approx(155e-6)  # the all-reduce overlapped the GEMM
    assert reading.by_class_s["communication"] == pytest.approx(40e-6)


def test_the_cpu_clock_reads_aten_self_time() -> None:
    events = EventList([cpu_op(1, "aten::linear", 0, 50), cpu_op(2, "aten::addmm", 10, 40)], use_device=None)
    events._build_tree()
    works = device_works(events, "cpu")
    assert [(w.name, w.duration_us, w.chain) for w in works] == [
        ("aten::linear", 20.0, ("aten::linear",)),
        ("aten::addmm", 30.0, ("aten::addmm", "aten::linear")),
    ]
