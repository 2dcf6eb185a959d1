"""Blocks of steps: one launch's estimate of its speed, and whether that estimate can decide a verdict.

Standard library only: the worker cuts its timed part into blocks with it, and the verdicts read
what it wrote, so both stages judge a launch by the same rule.

The method (the README's "How a launch is timed" gives the references' numbers beside ours):
- The timed part is cut into blocks of whole optimizer steps, each at least `block_s` long
  (asv takes samples of 10 ms, pyperf of 100 ms; a device synchronisation costs tens of
  microseconds, so at 20 ms it is under 1e-3 of a block). One synchronisation closes a block;
  there is none per step.
- Warm-up ends when the blocks are stationary: leading blocks whose rate lies outside the
  Tukey fences (quartiles +- 1.5 IQR) of the blocks after them are warm-up, not timing
  (pyperf's warm-up test asks the same of its first value).
- The launch's estimate is the median block rate, with the distribution-free interval of the
  median from order statistics (as asv's). A launch is unfit to time when it has fewer than
  `min_blocks` blocks (nvbench asks for 10 samples), when the IQR/median of its block rates is
  over `max_spread` (torch.utils.benchmark warns at 10% and calls 25% "significant
  environmental influence"), or when its first and second halves disagree by more than that (the
  machine changed while it was timed); a smaller disagreement widens the launch's interval to hold
  both halves' speeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.90  # of the interval of a launch's median block rate (the verdicts use the same)
FENCE = 1.5  # Tukey's fences for a warm-up block
MAX_WARMUP_SHARE = 0.5  # at most this share of the blocks can be declared warm-up
MAX_STORED_BLOCKS = 400  # blocks grow longer when a launch would give more (metrics.json stays small)


def _binomial_cdf(k: int, n: int) -> float:
    return float(sum(math.comb(n, i) for i in range(k + 1))) / float(2**n)


def median_bounds(ordered: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(low, high, coverage): the narrowest order-statistic interval of the median with at least `confidence`.

    `ordered` must be sorted. For n values, [x(k), x(n+1-k)] covers the median with probability
    1 - 2 P(Binomial(n, 1/2) <= k-1); when no k reaches `confidence` (n <= 4 at 90%), the whole range.
    """
    n = len(ordered)
    if n == 0:
        raise ValueError("no values")
    k, coverage = 1, 1 - 2 * _binomial_cdf(0, n) if n > 1 else 0.0
    for candidate in range(2, n // 2 + 1):
        cover = 1 - 2 * _binomial_cdf(candidate - 1, n)
        if cover < confidence:
            break
        k, coverage = candidate, cover
    return ordered[k - 1], ordered[n - k], coverage


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


@dataclass(frozen=True)
class Rules:
    """What makes a launch's blocks fit to time (measure.min_blocks and measure.max_spread)."""

    min_blocks: int = 10
    max_spread: float = 0.5

    @property
    def max_drift(self) -> float:
        """How far the halves' medians may part before the launch is unfit: the spread allowed.

        A smaller drift widens the launch's interval instead (see estimate): on an H200 VM, steps
        bound by the host's kernel launches drifted 10-20% within a launch of a few seconds.
        """
        return self.max_spread


@dataclass(frozen=True)
class Estimate:
    """One launch's speed from its blocks: the median rate (steps/s) and where it lies."""

    rate: float  # median steps per second over the blocks kept
    low: float  # the interval of that median (CONFIDENCE), steps per second
    high: float
    blocks: int  # blocks kept
    warmup_blocks: int  # leading blocks that were not yet stationary
    steps: int  # steps in the blocks kept
    seconds: float  # their seconds
    spread: float  # IQR / median of the block rates
    drift: float  # |median of the first half - of the second half| / median

    @property
    def relative_halfwidth(self) -> float:
        """The larger side of the interval, as a share of the median."""
        return max(self.rate - self.low, self.high - self.rate) / self.rate if self.rate > 0 else math.inf

    def problem(self, rules: Rules) -> tuple[str, str] | None:
        """(kind, sentence) when these blocks cannot decide a timing verdict; None when they can."""
        return block_problem(self.blocks, self.seconds, self.spread, self.drift, rules)

    def as_metrics(self) -> dict[str, float | int]:
        """The estimate's figures for metrics.json (the caller scales the rate into samples/s)."""
        return {
            "timed_blocks": self.blocks,
            "warmup_blocks": self.warmup_blocks,
            "block_spread": round(self.spread, 6),
            "block_drift": round(self.drift, 6),
            # the interval as factors of the median: a rate's interval is [rate * low, rate * high]
            "rate_ci_low": round(self.low / self.rate, 6),
            "rate_ci_high": round(self.high / self.rate, 6),
        }


def block_problem(blocks: int, seconds: float, spread: float, drift: float, rules: Rules) -> tuple[str, str] | None:
    """(kind, sentence) when a launch's blocks cannot decide a timing verdict; None when they can.

    Kinds: "short" (too few blocks: another launch of the same run gives as few), "spread" and
    "drift" (the machine changed while it was timed: another launch may not).
    """
    if blocks < rules.min_blocks:
        return "short", (
            f"its timed part gave {blocks} block(s) of steps ({seconds:.2f} s), under measure.min_blocks "
            f"({rules.min_blocks})"
        )
    if spread > rules.max_spread:
        return "spread", (
            f"its {blocks} blocks of steps varied too much: IQR/median {spread:.0%}, "
            f"over measure.max_spread ({rules.max_spread:.0%})"
        )
    if drift > rules.max_drift:
        return "drift", (
            f"its speed changed while it was timed: the two halves of its blocks ran {drift:.0%} apart "
            f"(over measure.max_spread, {rules.max_spread:.0%})"
        )
    return None


def _stationary_start(rates: Sequence[float]) -> int:
    """How many leading blocks are warm-up: each outside the fences of the blocks after it."""
    start = 0
    limit = int(len(rates) * MAX_WARMUP_SHARE)
    while start < limit and len(rates) - start > 2:
        rest = rates[start + 1 :]
        q1, q3 = _quartiles(rest)
        fence = FENCE * (q3 - q1)
        if q1 - fence <= rates[start] <= q3 + fence:
            break
        start += 1
    return start


def estimate(steps: Sequence[int], seconds: Sequence[float]) -> Estimate | None:
    """The estimate of blocks given as steps and seconds each (in order); None without a usable block."""
    pairs = [(n, s) for n, s in zip(steps, seconds, strict=True) if n > 0 and s > 0]
    if not pairs:
        return None
    rates = [n / s for n, s in pairs]
    start = _stationary_start(rates)
    kept, kept_pairs = rates[start:], pairs[start:]
    ordered = sorted(kept)
    median = statistics.median(ordered)
    low, high, _ = median_bounds(ordered)
    q1, q3 = _quartiles(ordered)
    half = len(kept) // 2
    halves = (statistics.median(kept[:half]), statistics.median(kept[-half:])) if half >= 2 else (median, median)
    drift = abs(halves[0] - halves[1]) / median
    # a speed that moved while the launch was timed: its interval holds both halves' speeds
    low, high = min(low, *halves), max(high, *halves)
    return Estimate(
        rate=median,
        low=low,
        high=high,
        blocks=len(kept),
        warmup_blocks=start,
        steps=sum(n for n, _ in kept_pairs),
        seconds=sum(s for _, s in kept_pairs),
        spread=(q3 - q1) / median if median > 0 else math.inf,
        drift=drift,
    )


def steps_per_block(step_s: float, block_s: float, remaining_steps: int) -> int:
    """Whole steps per block: at least `block_s` of them, and no more than MAX_STORED_BLOCKS blocks in all."""
    by_time = math.ceil(block_s / step_s) if step_s > 0 else 1
    by_count = math.ceil(remaining_steps / MAX_STORED_BLOCKS) if remaining_steps > 0 else 1
    return max(1, by_time, by_count)


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """median, min, max and a robust spread (MAD) of per-repeat values."""
    median = statistics.median(values)
    return {
        "median": median,
        "min": min(values),
        "max": max(values),
        "mad": statistics.median(abs(v - median) for v in values),
        "n": len(values),
    }
