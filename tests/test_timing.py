"""A launch timed in blocks of steps (runner.timing): its estimate, its warm-up, when it is fit to decide."""

from __future__ import annotations

import random

import pytest

from runner.timing import Rules, block_problem, estimate, median_bounds, steps_per_block


def blocks(rates: list[float], steps: int = 10) -> tuple[list[int], list[float]]:
    """Blocks of `steps` steps running at each rate (steps per second)."""
    return [steps] * len(rates), [steps / rate for rate in rates]


def test_the_estimate_is_the_median_block_rate_with_an_order_statistic_interval() -> None:
    rates = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 99.8, 100.1, 99.9, 100.3, 99.7, 100.0]
    found = estimate(*blocks(rates))
    assert found is not None
    assert found.rate == pytest.approx(100.0)
    assert found.blocks == 12 and found.warmup_blocks == 0 and found.steps == 120
    assert found.low <= found.rate <= found.high
    assert (found.low, found.high) == (99.7, 100.3)  # 12 values at 90%: the 3rd from each end
    assert found.problem(Rules()) is None


def test_slow_leading_blocks_are_warm_up_not_timing() -> None:
    rates = [20.0, 60.0, *([100.0, 101.0, 99.0] * 5)]
    found = estimate(*blocks(rates))
    assert found is not None
    assert found.warmup_blocks == 2
    assert found.blocks == 15
    assert found.rate == 100.0


def test_a_slow_block_in_the_middle_is_kept_and_the_median_shrugs_it_off() -> None:
    rates = [100.0] * 6 + [10.0] + [100.0] * 6
    found = estimate(*blocks(rates))
    assert found is not None and found.warmup_blocks == 0 and found.blocks == 13 and found.rate == 100.0


def test_too_few_blocks_are_short_and_another_launch_would_give_as_few() -> None:
    found = estimate(*blocks([100.0] * 6))
    assert found is not None
    assert found.problem(Rules(min_blocks=10)) == (
        "short",
        "its timed part gave 6 block(s) of steps (0.60 s), under measure.min_blocks (10)",
    )


def test_a_wide_spread_of_block_rates_is_unfit() -> None:
    rates = [60.0, 140.0] * 10
    found = estimate(*blocks(rates))
    assert found is not None
    kind, sentence = found.problem(Rules()) or ("", "")
    assert kind == "spread"
    assert sentence == ("its 20 blocks of steps varied too much: IQR/median 80%, over measure.max_spread (50%)")


def test_halves_that_disagree_widen_the_interval_to_hold_both_speeds() -> None:
    rates = [100.0] * 10 + [85.0] * 10
    found = estimate(*blocks(rates))
    assert found is not None
    assert found.drift == pytest.approx(15 / 92.5)
    assert found.problem(Rules()) is None
    assert (found.low, found.high) == pytest.approx((85.0, 100.0))


def test_halves_further_apart_than_the_spread_allowed_are_drift() -> None:
    assert block_problem(20, 0.4, 0.10, 0.60, Rules()) == (
        "drift",
        "its speed changed while it was timed: the two halves of its blocks ran 60% apart "
        "(over measure.max_spread, 50%)",
    )


def test_block_problem_is_the_same_rule_the_verdicts_apply_to_stored_figures() -> None:
    assert block_problem(12, 0.3, 0.05, 0.02, Rules()) is None
    assert (block_problem(12, 0.3, 0.60, 0.02, Rules()) or ("",))[0] == "spread"
    assert (block_problem(9, 0.3, 0.05, 0.02, Rules()) or ("",))[0] == "short"


def test_no_block_no_estimate() -> None:
    assert estimate([], []) is None
    assert estimate([0], [0.0]) is None


@pytest.mark.parametrize("n", [5, 9, 20, 101])
def test_the_median_interval_covers_the_median_at_least_as_often_as_it_says(n: int) -> None:
    generator = random.Random(n)
    covered = 0
    trials = 2000
    for _ in range(trials):
        values = sorted(generator.gauss(0, 1) for _ in range(n))
        low, high, _ = median_bounds(values)
        covered += low <= 0 <= high
    _, _, coverage = median_bounds(list(range(n)))
    assert covered / trials >= min(coverage, 0.9) - 0.03


def test_blocks_hold_whole_steps_for_at_least_the_block_time_and_stay_few() -> None:
    assert steps_per_block(0.00177, 0.02, 100) == 12  # the H200's bf16 step: 12 steps a block
    assert steps_per_block(0.5, 0.02, 100) == 1  # a step longer than a block is a block
    assert steps_per_block(0.001, 0.02, 1_000_000) == 2500  # at most 400 blocks however long it trains
