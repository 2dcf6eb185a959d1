"""Stage 6, check: every expectation against the measurements, as a verdict with its reasons.

Verdicts: pass, fail, inconclusive (a noisy measurement whose spread contains the bound), error
(a run it needs did not finish: never silently skipped) and skipped (a run it needs was left out
with --only: shown, not counted). Timings are noisy and judged with
the interval of stats.py; losses, accuracy and step counts are fixed by seeds and compared directly.
Runs compared with each other are paired repeat by repeat (the runner interleaves them).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, replace
from typing import Any

from runner.results import NOISY_METRICS, RunRecord
from runner.spec import (
    BoundExpectation,
    CloseExpectation,
    ExperimentSpec,
    RatioExpectation,
    SpeedupExpectation,
)
from runner.stats import Interval, check_bounds, median_interval, paired_ratios, repeats_to_settle

_SYMBOL = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "error": "ERROR", "skipped": "SKIP"}


@dataclass(frozen=True)
class Verdict:
    """One expectation's outcome; summary.json stores it as is."""

    title: str
    kind: str
    verdict: str
    measured: float | None
    expected: str
    message: str
    runs: tuple[str, ...] = ()
    interval: dict[str, Any] | None = None
    repeats_needed: int | None = None
    metric: str = ""
    at_least: float | None = None
    at_most: float | None = None

    def line(self) -> str:
        """`FAIL  dual >= 1.8x faster than single: measured 0.98x, needs >= 1.8x (46% short)`"""
        return verdict_line(self.verdict, self.title, self.message)

    def as_json(self) -> dict[str, Any]:
        """For summary.json."""
        data = asdict(self)
        data["runs"] = list(self.runs)
        return data


def verdict_line(verdict: str, title: str, message: str) -> str:
    """One expectation as one line: verdict, title, measured value, bound, margin."""
    return f"{_SYMBOL[verdict]:<5} {title}: {message}"


def default_title(expectation: Any) -> str:
    """A readable name for an expectation without a title."""
    if isinstance(expectation, SpeedupExpectation):
        bounds = _bounds_text(expectation.at_least, expectation.at_most, "x")
        return f"{expectation.run} {bounds} faster than {expectation.baseline}"
    if isinstance(expectation, RatioExpectation):
        bounds = _bounds_text(expectation.at_least, expectation.at_most, "x")
        return f"{expectation.metric} of {expectation.run} {bounds} {expectation.baseline}'s"
    if isinstance(expectation, BoundExpectation):
        return (
            f"{expectation.metric} of {expectation.run} {_bounds_text(expectation.at_least, expectation.at_most, '')}"
        )
    tolerance = _tolerance_text(expectation)
    return f"{expectation.metric} of {expectation.run} within {tolerance} of {expectation.baseline}"


def _bounds_text(at_least: float | None, at_most: float | None, unit: str) -> str:
    parts = []
    if at_least is not None:
        parts.append(f">= {at_least:g}{unit}")
    if at_most is not None:
        parts.append(f"<= {at_most:g}{unit}")
    return " and ".join(parts)


def _tolerance_text(expectation: CloseExpectation) -> str:
    parts = []
    if expectation.rel_tol is not None:
        parts.append(f"{expectation.rel_tol:.0%}")
    if expectation.abs_tol is not None:
        parts.append(f"{expectation.abs_tol:g}")
    return " or ".join(parts)


def _fmt(value: float, unit: str = "") -> str:
    return f"{value:.4g}{unit}" if abs(value) < 1e4 else f"{value:,.0f}{unit}"


def _margin(measured: float, at_least: float | None, at_most: float | None) -> str:
    """How far the measurement is from the nearest bound, as a share of the bound."""
    distances = [
        sign * (measured - bound) / abs(bound)
        for bound, sign in ((at_least, 1), (at_most, -1))
        if bound is not None and bound != 0
    ]
    if not distances:
        return ""
    nearest = min(distances)  # a violated bound (negative) first, else the closest one
    return f"{abs(nearest):.0%} {'margin' if nearest >= 0 else 'short'}"


def check_expectations(spec: ExperimentSpec, runs: dict[str, RunRecord]) -> list[Verdict]:
    """Every expectation of the spec, in order."""
    return [check_one(expectation, runs) for expectation in spec.expect]


def check_one(expectation: Any, runs: dict[str, RunRecord]) -> Verdict:
    """One expectation's verdict, carrying its bounds (the Why compares with them)."""
    verdict = _check(expectation, runs)
    return replace(
        verdict, at_least=getattr(expectation, "at_least", None), at_most=getattr(expectation, "at_most", None)
    )


def _check(expectation: Any, runs: dict[str, RunRecord]) -> Verdict:
    title = expectation.title or default_title(expectation)
    names = tuple(n for n in (expectation.run, getattr(expectation, "baseline", None)) if n)
    kind = expectation.kind
    metric = "samples_per_s" if isinstance(expectation, SpeedupExpectation) else expectation.metric
    for name in names:
        record = runs.get(name)
        if record is None or not record.selected:  # left out on purpose: shown, not counted
            message = f"not evaluated: run '{name}' was not selected (--only)"
            return Verdict(title, kind, "skipped", None, "", message, names, metric=metric)
        if record.status.value != "ok":
            state = f"is {record.status.value}"
            why = f": {record.reason}" if record.reason else ""
            return Verdict(
                title, kind, "error", None, "", f"cannot be evaluated: run '{name}' {state}{why}", names, metric=metric
            )
        if not record.values(metric):
            return Verdict(
                title,
                kind,
                "error",
                None,
                "",
                f"cannot be evaluated: run '{name}' has no {metric}",
                names,
                metric=metric,
            )
    if isinstance(expectation, SpeedupExpectation | RatioExpectation):
        return _check_ratio(expectation, runs, title, metric, names)
    if isinstance(expectation, BoundExpectation):
        return _check_bound(expectation, runs[expectation.run], title, names)
    return _check_close(expectation, runs, title, names)


def _noise_floor(records: list[RunRecord]) -> float:
    return max(r.noise_floor for r in records)


def _paired(run: RunRecord, base: RunRecord, metric: str) -> tuple[list[float], list[float]]:
    a, b = run.values(metric), base.values(metric)
    n = min(len(a), len(b))
    return a[:n], b[:n]


def _judge(
    values: list[float], floor: float, at_least: float | None, at_most: float | None
) -> tuple[Interval, str, int | None, str]:
    interval = median_interval(values, floor)
    verdict = check_bounds(interval, at_least, at_most)
    needed = None
    note = ""
    if verdict == "inconclusive":
        bound = at_least if at_least is not None and interval.low < at_least <= interval.high else at_most
        needed = repeats_to_settle(values, bound if bound is not None else interval.median, floor)
        if needed is None:
            note = (
                f"; the bound is within the {floor:.0%} noise floor of the measurement, "
                "no number of repeats will settle it (move the bound or lower measure.noise_floor)"
            )
        else:
            note = (
                f"; the bound lies inside the spread: about {needed} repeats (measure.repeats) would likely settle it"
            )
    return interval, verdict, needed, note


def _check_ratio(
    expectation: Any, runs: dict[str, RunRecord], title: str, metric: str, names: tuple[str, ...]
) -> Verdict:
    run, base = runs[expectation.run], runs[expectation.baseline]
    a, b = _paired(run, base, metric)
    if not b or any(v == 0 for v in b):
        return Verdict(
            title,
            expectation.kind,
            "error",
            None,
            "",
            f"cannot divide: {metric} of '{base.name}' is 0",
            names,
            metric=metric,
        )
    ratios = paired_ratios(a, b)
    unit = "x"
    expected = _bounds_text(expectation.at_least, expectation.at_most, unit)
    noisy = metric in NOISY_METRICS
    if noisy:
        interval, verdict, needed, note = _judge(
            ratios, _noise_floor([run, base]), expectation.at_least, expectation.at_most
        )
        measured = interval.median
        shown = interval.describe("{:.2f}", unit) if interval.n > 1 else f"{measured:.2f}{unit}"
    else:
        measured = statistics.median(ratios)  # fixed by the seeds: every repeat gives the same value
        interval, needed, note = None, None, ""
        verdict = check_bounds(median_interval([measured], 0.0), expectation.at_least, expectation.at_most)
        shown = f"{measured:.2f}{unit}"
    margin = _margin(measured, expectation.at_least, expectation.at_most)
    message = f"measured {shown}, needs {expected}" + (f" ({margin})" if margin else "") + note
    return Verdict(
        title,
        expectation.kind,
        verdict,
        measured,
        expected,
        message,
        names,
        interval.__dict__ if interval else None,
        needed,
        metric,
    )


def _check_bound(expectation: BoundExpectation, run: RunRecord, title: str, names: tuple[str, ...]) -> Verdict:
    values = run.values(expectation.metric)
    expected = _bounds_text(expectation.at_least, expectation.at_most, "")
    if expectation.metric in NOISY_METRICS:
        interval, verdict, needed, note = _judge(values, run.noise_floor, expectation.at_least, expectation.at_most)
        measured = interval.median
        shown = interval.describe() if interval.n > 1 else _fmt(measured)
        interval_data: dict[str, Any] | None = interval.__dict__
    else:
        measured = statistics.median(values)
        verdict = check_bounds(median_interval([measured], 0.0), expectation.at_least, expectation.at_most)
        shown, needed, note, interval_data = _fmt(measured), None, "", None
    margin = _margin(measured, expectation.at_least, expectation.at_most)
    message = f"measured {shown}, needs {expected}" + (f" ({margin})" if margin else "") + note
    return Verdict(
        title, expectation.kind, verdict, measured, expected, message, names, interval_data, needed, expectation.metric
    )


def _check_close(
    expectation: CloseExpectation, runs: dict[str, RunRecord], title: str, names: tuple[str, ...]
) -> Verdict:
    run, base = runs[expectation.run], runs[expectation.baseline]
    a, b = _paired(run, base, expectation.metric)
    value, reference = statistics.median(a), statistics.median(b)
    difference = abs(value - reference)
    relative = difference / abs(reference) if reference else None
    tolerance = _tolerance_text(expectation)
    expected = f"within {tolerance} of {_fmt(reference)}"
    apart = f"{relative:.1%} apart" if relative is not None else f"{_fmt(difference)} apart"
    note, interval_data, needed = "", None, None
    if expectation.metric in NOISY_METRICS and expectation.abs_tol is None and all(b):
        # a noisy metric with a relative tolerance: judge the interval of the paired ratios
        tol = expectation.rel_tol or 0.0
        interval, verdict, needed, note = _judge(
            [x / y for x, y in zip(a, b, strict=True)], _noise_floor([run, base]), 1 - tol, 1 + tol
        )
        interval_data = interval.__dict__
    else:
        within = (expectation.rel_tol is not None and relative is not None and relative <= expectation.rel_tol) or (
            expectation.abs_tol is not None and difference <= expectation.abs_tol
        )
        verdict = "pass" if within else "fail"
    message = f"measured {_fmt(value)} vs {_fmt(reference)} ({apart}), needs within {tolerance}" + note
    return Verdict(
        title, expectation.kind, verdict, relative, expected, message, names, interval_data, needed, expectation.metric
    )
