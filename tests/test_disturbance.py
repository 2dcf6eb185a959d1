"""The disturbance of a launch: the share of the cores other work took while it was timed, and its limit."""

from __future__ import annotations

from runner.worker.disturbance import CpuSample, cpu_disturbance, over_limit


def samples(busy_s: float, wall: float = 2.0, cpus: int = 2) -> tuple[CpuSample, CpuSample]:
    """Two readings `wall` seconds apart, the cores busy for `busy_s` seconds in all between them."""
    return CpuSample(10.0, 100.0, 0.0, 1.0, cpus), CpuSample(10.0 + wall, 100.0 + busy_s, 0.0, 1.0, cpus)


def test_the_ranks_own_cpu_is_not_counted_as_others() -> None:
    start, end = samples(busy_s=2.4)  # 4 core-seconds of capacity; the ranks used 2.0 of the 2.4 busy
    assert cpu_disturbance(start, end, ranks_cpu_s=2.0)["others_share"] == 0.1
    assert not over_limit(start, end, 2.0, limit=0.10)
    assert over_limit(start, end, 1.0, limit=0.10)  # the same busy time with ranks using less: others took 35%


def test_no_reading_and_a_limit_of_1_are_never_over() -> None:
    start, end = samples(busy_s=4.0)
    assert over_limit(start, end, 0.0, limit=0.5)
    assert not over_limit(start, end, 0.0, limit=1.0)  # measure.max_disturbance 1 accepts any load
    unread = CpuSample(10.0, None, None, 1.0, 2)
    assert not over_limit(unread, CpuSample(12.0, None, None, 1.0, 2), 0.0, limit=0.1)
