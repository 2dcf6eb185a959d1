"""The noise-aware verdict method, on synthetic measurements."""

from __future__ import annotations

import pytest

from runner.verdicts.stats import check_bounds, median_interval, repeats_to_settle


def test_five_values_use_the_min_max_envelope_widened_by_the_floor() -> None:
    interval = median_interval([1.0, 1.1, 0.9, 1.05, 0.95], noise_floor=0.0)
    assert (interval.low, interval.median, interval.high) == (0.9, 1.0, 1.1)
    assert interval.coverage == pytest.approx(1 - 2 / 32)
    widened = median_interval([1.0, 1.1, 0.9, 1.05, 0.95], noise_floor=0.1)
    assert widened.low == pytest.approx(0.81) and widened.high == pytest.approx(1.21)


def test_more_values_give_a_narrower_order_statistic_interval() -> None:
    values = [float(v) for v in range(1, 11)]  # 1..10
    interval = median_interval(values, noise_floor=0.0)
    assert (interval.low, interval.high) == (2.0, 9.0)  # k=2: coverage 97.9%; k=3 would be 89%
    assert interval.coverage >= 0.9


def test_a_single_value_is_only_trusted_to_the_noise_floor() -> None:
    interval = median_interval([2.0], noise_floor=0.05)
    assert (interval.low, interval.high) == (pytest.approx(1.9), pytest.approx(2.1))


def test_a_clear_pass() -> None:
    interval = median_interval([2.0, 2.1, 1.95, 2.05, 2.02], noise_floor=0.03)
    assert check_bounds(interval, at_least=1.5, at_most=None) == "pass"


def test_a_clear_fail() -> None:
    interval = median_interval([0.98, 1.0, 0.97, 1.01, 0.99], noise_floor=0.03)
    assert check_bounds(interval, at_least=1.8, at_most=None) == "fail"
    assert check_bounds(interval, at_least=None, at_most=0.5) == "fail"


def test_a_bound_inside_the_spread_is_inconclusive() -> None:
    values = [1.75, 1.82, 1.79, 1.85, 1.77]
    interval = median_interval(values, noise_floor=0.03)
    assert check_bounds(interval, at_least=1.8, at_most=None) == "inconclusive"


def test_a_bound_within_the_noise_floor_cannot_be_settled_by_repeats() -> None:
    values = [1.80, 1.81, 1.79, 1.80, 1.805]
    assert repeats_to_settle(values, bound=1.8, noise_floor=0.03) is None


def test_repeats_to_settle_grows_as_the_bound_nears() -> None:
    values = [1.5, 1.7, 1.6, 1.65, 1.55]
    far = repeats_to_settle(values, bound=1.9, noise_floor=0.01)
    near = repeats_to_settle(values, bound=1.66, noise_floor=0.01)
    assert far is not None and near is not None and near > far >= 5
    assert repeats_to_settle([1.6], bound=1.7, noise_floor=0.01) == 3  # a spread needs 3 repeats at least
