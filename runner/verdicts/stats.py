"""Noise-aware comparison of repeated measurements (pure arithmetic, no numpy).

Method (documented in the README): a distribution-free confidence interval for the median, from
order statistics. For n values sorted, [x(k), x(n+1-k)] covers the true median with probability
1 - 2 P(Binomial(n, 1/2) <= k-1); we take the narrowest such interval with at least 90% coverage.
For n <= 4 no interval reaches 90%, and we use the whole range [min, max] (the min/max envelope).
The interval is then widened by a relative noise floor (measure.noise_floor, default 3%), which
stands for the run-to-run drift that n repeats in one session cannot see, and keeps a single
measurement from looking exact. A bound outside the widened interval gives pass or fail; a bound
inside it gives inconclusive.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from runner.timing import CONFIDENCE, median_bounds
from runner.timing import spread as spread  # re-exported: results.records summarises with it too
from runner.vocab import Outcome

# Under this many repeats a timing has no measured spread: its interval is widened by
# SMALL_SAMPLE_NOISE instead of the noise floor, the launch-to-launch variation an undisturbed
# repeat may still show, so a single measurement decides only when it is far from the bound.
SMALL_SAMPLE = 3
SMALL_SAMPLE_NOISE = 0.25
# For large n the order-statistic interval of the median is about +-1.645 * 1.2533 * sigma / sqrt(n).
_HALF_WIDTH_FACTOR = 1.645 * 1.2533
MAX_SUGGESTED_REPEATS = 200


@dataclass(frozen=True)
class Interval:
    """Where the median of a measured quantity lies, after noise."""

    median: float
    low: float
    high: float
    n: int
    coverage: float  # of the order-statistic interval, before the noise floor

    def describe(self, fmt: str = "{:.3g}", unit: str = "") -> str:
        """'0.98x (0.95–1.01, n=5)': the median and the interval (noise floor included)."""
        return f"{fmt.format(self.median)}{unit} ({fmt.format(self.low)}–{fmt.format(self.high)}, n={self.n})"


def median_interval(values: Sequence[float], noise_floor: float) -> Interval:
    """The order-statistic confidence interval of the median, widened by the noise floor."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    low, high, coverage = median_bounds(ordered, CONFIDENCE)
    median = statistics.median(ordered)
    low -= abs(low) * noise_floor
    high += abs(high) * noise_floor
    return Interval(median, low, high, len(ordered), coverage)


def widen(interval: Interval, low_factor: float, high_factor: float) -> Interval:
    """The interval stretched by a launch's own interval (factors around its median, from its blocks)."""
    return Interval(
        interval.median,
        min(interval.low, interval.low * low_factor),
        max(interval.high, interval.high * high_factor),
        interval.n,
        interval.coverage,
    )


def timing_noise(n: int, noise_floor: float) -> float:
    """The relative widening of a timing's interval from n repeats (see SMALL_SAMPLE)."""
    return max(noise_floor, SMALL_SAMPLE_NOISE) if n < SMALL_SAMPLE else noise_floor


def _side(holds: bool, violated: bool) -> Outcome:
    return Outcome.PASS if holds else Outcome.FAIL if violated else Outcome.INCONCLUSIVE


def check_bounds(interval: Interval, at_least: float | None, at_most: float | None) -> Outcome:
    """pass: the whole interval satisfies the bounds; fail: none of it does; else inconclusive."""
    verdicts = []
    if at_least is not None:
        verdicts.append(_side(interval.low >= at_least, interval.high < at_least))
    if at_most is not None:
        verdicts.append(_side(interval.high <= at_most, interval.low > at_most))
    if Outcome.FAIL in verdicts:
        return Outcome.FAIL
    return Outcome.INCONCLUSIVE if Outcome.INCONCLUSIVE in verdicts else Outcome.PASS


def repeats_to_settle(values: Sequence[float], bound: float, noise_floor: float) -> int | None:
    """Roughly how many repeats would move the interval off the bound; None when none would.

    Uses a robust spread (1.4826 x MAD) and the large-n width of the median's interval. With a
    single value there is no spread yet: 3 repeats are the least that can measure one.
    """
    n = len(values)
    if n < SMALL_SAMPLE:
        return SMALL_SAMPLE
    median = statistics.median(values)
    gap = abs(median - bound) - abs(median) * noise_floor
    if gap <= 0:
        return None
    mad = statistics.median(abs(v - median) for v in values)
    sigma = 1.4826 * mad if mad > 0 else (max(values) - min(values)) / 2
    if sigma == 0:
        return n + 1
    needed = math.ceil((_HALF_WIDTH_FACTOR * sigma / gap) ** 2)
    return min(max(needed, n + 1, 5), MAX_SUGGESTED_REPEATS)


def paired_ratios(values: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Repeat k of a run over repeat k of its baseline (launched next to each other): drift cancels."""
    return [a / b for a, b in zip(values, baseline, strict=False) if b]
