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
from typing import Any, assert_never

from runner.contract import MetricValue
from runner.metrics import MEMORY_METRICS, NOISY_METRICS, TIMING_METRICS
from runner.results.records import LaunchRecord, RunRecord
from runner.spec.models import (
    AnyExpectation,
    BoundExpectation,
    CloseExpectation,
    ExperimentSpec,
    RatioExpectation,
    SpeedupExpectation,
)
from runner.verdicts.stats import (
    SMALL_SAMPLE,
    Interval,
    check_bounds,
    median_interval,
    paired_ratios,
    repeats_to_settle,
    timing_noise,
    widen,
)
from runner.vocab import Outcome, Status, precision_name

# A speedup this far above what the declared change can give is a disturbed measurement, not a result.
# Generous on purpose: caches and memory bandwidth can make real scaling a little superlinear.
CEILING_MARGIN = 0.25
_SYMBOL = {
    Outcome.PASS: "PASS",
    Outcome.FAIL: "FAIL",
    Outcome.INCONCLUSIVE: "INCONCLUSIVE",
    Outcome.ERROR: "ERROR",
    Outcome.SKIPPED: "SKIP",
}


@dataclass(frozen=True)
class RunRepeats:
    """One run's repeats under a verdict: how many finished of those planned, and how many were unfit to time."""

    run: str
    finished: int
    planned: int
    unfit: int = 0  # left out of the verdict's timing (counted for timing verdicts only)


@dataclass(frozen=True)
class Verdict:
    """One expectation's outcome; summary.json stores it as is."""

    title: str
    kind: str
    verdict: Outcome
    measured: float | None
    expected: str
    message: str
    runs: tuple[str, ...] = ()
    interval: Interval | None = None  # timings only: where the median lies, after noise
    repeats_needed: int | None = None
    metric: str = ""
    at_least: float | None = None
    at_most: float | None = None
    repeats_used: int | None = None  # the repeats (pairs, for two runs) the verdict rests on
    repeats_unfit: int = 0  # launches left out of a timing: disturbed or too short
    stopped: str = ""  # why no more repeats were launched (decided, a budget, fixed)
    cause: str = ""  # why an inconclusive verdict rests on no usable measurement: unfit, ceiling, rss
    unfit_kind: str = ""  # cause unfit: the TimingProblem kind (short, spread, drift, disturbed, step_vs_probe)
    repeats_by_run: tuple[RunRepeats, ...] = ()  # each run's repeats: finished, planned, left out unfit

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
    return f"{_SYMBOL[Outcome(verdict)]:<5} {title}: {message}"


def default_title(expectation: AnyExpectation) -> str:
    """A readable name for an expectation without a title."""
    match expectation:
        case SpeedupExpectation():
            bounds = _bounds_text(expectation.at_least, expectation.at_most, "x")
            return f"{expectation.run} {bounds} faster than {expectation.baseline}"
        case RatioExpectation():
            bounds = _bounds_text(expectation.at_least, expectation.at_most, "x")
            return f"{expectation.metric} of {expectation.run} {bounds} {expectation.baseline}'s"
        case BoundExpectation():
            bounds = _bounds_text(expectation.at_least, expectation.at_most, "")
            return f"{expectation.metric} of {expectation.run} {bounds}"
        case CloseExpectation():
            tolerance = _tolerance_text(expectation)
            return f"{expectation.metric} of {expectation.run} within {tolerance} of {expectation.baseline}"
        case _:
            assert_never(expectation)


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


def check_one(expectation: AnyExpectation, runs: dict[str, RunRecord]) -> Verdict:
    """One expectation's verdict, carrying its bounds (the Why compares with them)."""
    verdict = _check(expectation, runs)
    return replace(
        verdict, at_least=getattr(expectation, "at_least", None), at_most=getattr(expectation, "at_most", None)
    )


def timing_judged_runs(spec: ExperimentSpec, runs: dict[str, RunRecord]) -> frozenset[str]:
    """The runs whose timing an expectation that will be checked reads: one on a timing metric whose
    runs all take part (not left out by --only, not skipped for want of GPUs)."""
    judged: set[str] = set()
    for expectation in spec.expect:
        names = run_names(expectation)
        if metric_of(expectation) in TIMING_METRICS and all(n in runs and runs[n].selected for n in names):
            judged.update(names)
    return frozenset(judged)


def metric_of(expectation: AnyExpectation) -> str:
    """The metric an expectation judges (a speedup judges samples/s)."""
    return "samples_per_s" if isinstance(expectation, SpeedupExpectation) else str(expectation.metric)


def run_names(expectation: AnyExpectation) -> tuple[str, ...]:
    """The run (and the baseline) an expectation compares, by name."""
    names = []
    for ref in (expectation.run, getattr(expectation, "baseline", None)):
        if isinstance(ref, str):
            names.append(ref)
        elif ref is not None:  # validation expands a settings mapping into one expectation per pair of names
            raise TypeError(f"an expectation still names runs by settings ({ref!r}): check a validated spec")
    return tuple(names)


def _check(expectation: AnyExpectation, runs: dict[str, RunRecord]) -> Verdict:
    title = expectation.title or default_title(expectation)
    names = run_names(expectation)
    kind = expectation.kind
    metric = metric_of(expectation)

    def verdict(outcome: Outcome, message: str, needed: int | None = None, cause: str = "", unfit: str = "") -> Verdict:
        return Verdict(
            title,
            kind,
            outcome,
            None,
            "",
            message,
            names,
            repeats_needed=needed,
            metric=metric,
            cause=cause,
            unfit_kind=unfit,
        )

    for name in names:
        record = runs.get(name)
        if record is not None and record.skip_reason:  # this machine is too small for it: shown, not counted
            return verdict(Outcome.SKIPPED, f"not evaluated: run '{name}' {record.skip_reason}")
        if record is None or not record.selected:  # left out on purpose: shown, not counted
            return verdict(Outcome.SKIPPED, f"not evaluated: run '{name}' was not selected (--only)")
        # an incomplete run (the session was interrupted) is judged on the repeats that finished
        if record.status not in (Status.OK, Status.INCOMPLETE):
            why = f": {record.reason}" if record.reason else ""
            return verdict(Outcome.ERROR, f"cannot be evaluated: run '{name}' is {record.status.value}{why}")
        # a timing no launch could measure (not one block of steps) is unfit, said below; no figure at all is an error
        unmeasured = not (metric in TIMING_METRICS and record.timing_problems())
        if not record.values(metric, fit_only=False) and unmeasured:
            return verdict(Outcome.ERROR, f"cannot be evaluated: run '{name}' has no {metric}")
    if metric in TIMING_METRICS:
        for name in names:
            unfit = _unfit(runs[name], metric)
            if unfit is not None:
                return verdict(Outcome.INCONCLUSIVE, unfit[0], unfit[1], "unfit", unfit[2])
    if metric in MEMORY_METRICS and len(names) == 2:
        rss = [n for n in names if _memory_source(runs[n]) == "peak_rss"]
        if rss:
            return verdict(Outcome.INCONCLUSIVE, _RSS_SENTENCE.format(run=rss[0]), cause="rss")
    match expectation:
        case SpeedupExpectation() | RatioExpectation():
            return _check_ratio(expectation, runs, title, metric, names)
        case BoundExpectation():
            return _check_bound(expectation, runs[names[0]], title, names)  # names: run (, baseline)
        case CloseExpectation():
            return _check_close(expectation, runs, title, names)
        case _:
            assert_never(expectation)


_RSS_SENTENCE = (
    "cannot be compared: peak memory of '{run}' is the process's peak RSS (no tensor memory was measured), "
    "which includes a few hundred MB of Python and torch runtime, so a ratio of it cannot show a saving"
)


def _memory_source(record: RunRecord) -> str | None:
    first = _first(record)
    source = first.metrics.get("peak_memory_source") if first else None
    return str(source) if source is not None else None


def _unfit(record: RunRecord, metric: str) -> tuple[str, int | None, str] | None:
    """(sentence, repeats that may settle it, the problem's kind) when no repeat of `record` can time `metric`."""
    if record.values(metric):
        return None
    problems = record.timing_problems()
    if not problems:
        return None
    repeat, problem = problems[-1]  # the latest says most about the machine now
    count = len(record.ok_launches())
    which = "its only repeat" if count == 1 else f"none of its {count} repeats is fit to time; repeat {repeat}"
    sentence = f"cannot be timed: '{record.name}': {which}: {problem.sentence}"
    if not problem.repeatable:
        fix = "raise train.epochs or train.max_steps, or " + (
            "lower measure.min_duration_s" if "min_duration_s" in problem.sentence else "raise measure.extend_share"
        )
        return f"{sentence} ({fix})", None, problem.kind
    return sentence, count + 1, problem.kind


def _no_pairs(title: str, kind: str, names: tuple[str, ...], metric: str) -> Verdict:
    """Both runs have repeats fit to time, but never the same repeat: the next pair may be."""
    message = f"cannot be timed: no repeat of '{names[0]}' and '{names[1]}' was fit to time side by side"
    return Verdict(title, kind, Outcome.INCONCLUSIVE, None, "", message, names, None, 1, metric, cause="unfit")


def _noise_floor(records: list[RunRecord]) -> float:
    return max(r.noise_floor for r in records)


def _paired(run: RunRecord, base: RunRecord, metric: str) -> tuple[list[float], list[float]]:
    """Repeat k of the run with repeat k of its baseline (launched side by side), where both are fit."""
    a, b = run.by_repeat(metric), base.by_repeat(metric)
    both = sorted(set(a) & set(b))
    return [a[k] for k in both], [b[k] for k in both]


def _judge(
    values: list[float],
    floor: float,
    at_least: float | None,
    at_most: float | None,
    timing: bool,
    within: tuple[float, float] = (1.0, 1.0),
) -> tuple[Interval, Outcome, int | None, str]:
    """The interval of the values' median, its verdict, the repeats that may settle it, and a note.

    `within`: for a single launch (pair), the factors of its own interval from its blocks; the
    launch-to-launch allowance (stats.SMALL_SAMPLE_NOISE) widens it further, because one launch
    cannot see the variation between launches.
    """
    if timing:
        floor = timing_noise(len(values), floor)
    interval = median_interval(values, floor)
    if len(values) == 1 and within != (1.0, 1.0):
        interval = widen(interval, *within)
    verdict = check_bounds(interval, at_least, at_most)
    needed = None
    note = ""
    if verdict == Outcome.INCONCLUSIVE:
        bound = at_least if at_least is not None and interval.low < at_least <= interval.high else at_most
        needed = repeats_to_settle(values, bound if bound is not None else interval.median, floor)
        if timing and len(values) < SMALL_SAMPLE:
            note = f"; {len(values)} repeat(s) cannot measure a spread: {SMALL_SAMPLE} or more may settle it"
        elif needed is None:
            note = (
                f"; the bound is within the {floor:.0%} noise floor of the measurement, "
                "no number of repeats will settle it (move the bound or lower measure.noise_floor)"
            )
        else:
            note = (
                f"; the bound lies inside the spread: about {needed} repeats (measure.repeats) would likely settle it"
            )
    return interval, verdict, needed, note


def _ceiling(expectation: AnyExpectation, run: RunRecord, base: RunRecord) -> tuple[float, str] | None:
    """The largest speedup the declared difference between two runs can give, and what it rests on.

    Known for two changes alone: more processes at equal per-process work (N/M), and mixed
    precision (matmuls at most free, every other op at most 2x faster on half the bytes).
    """
    if not isinstance(expectation, SpeedupExpectation):
        return None
    r, b = _first(run), _first(base)
    if r is None or b is None or r.metrics.get("params") != b.metrics.get("params"):
        return None
    n_run, n_base = _count(r.metrics.get("processes"), 1), _count(b.metrics.get("processes"), 1)
    per_process = [
        _count(m.metrics.get("global_batch_size"), 0) / _count(m.metrics.get("processes"), 1) for m in (r, b)
    ]
    same_precision = r.metrics.get("mixed_precision") == b.metrics.get("mixed_precision")
    if n_run != n_base and same_precision and per_process[0] == per_process[1]:
        return n_run / n_base, f"{n_run} processes can give over {n_base} at equal per-process work"
    share = b.attribution.get("matmul_share")
    if n_run == n_base and not same_precision and isinstance(share, int | float) and share < 1:
        cap = 2 / (1 - share)
        low, high = (precision_name(m.metrics.get("mixed_precision")) for m in (r, b))
        return cap, (
            f"{low} can give over {high} here (matmuls are {share:.0%} of the baseline's "
            "forward+backward: free matmuls and every other op 2x faster would give that much)"
        )
    return None


def _first(record: RunRecord) -> LaunchRecord | None:
    launches = record.ok_launches()
    return launches[0] if launches else None


def _count(value: MetricValue, missing: int) -> int | float:
    """A metric that counts (processes, a batch): `missing` where it is absent, null or 0."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) and value else missing


# Speedups and ratios share the pairing, the interval and the ceiling; splitting would pass them around.
def _check_ratio(
    expectation: SpeedupExpectation | RatioExpectation,
    runs: dict[str, RunRecord],
    title: str,
    metric: str,
    names: tuple[str, ...],
) -> Verdict:
    run, base = runs[names[0]], runs[names[1]]  # names: run, baseline (resolved by validation)
    a, b = _paired(run, base, metric)
    if not a:
        message = f"cannot be timed: no repeat of '{run.name}' and '{base.name}' was fit to time side by side"
        return Verdict(
            title, expectation.kind, Outcome.INCONCLUSIVE, None, "", message, names, None, 1, metric, cause="unfit"
        )
    if any(v == 0 for v in b):
        return Verdict(
            title,
            expectation.kind,
            Outcome.ERROR,
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
        timing = metric in TIMING_METRICS
        interval, verdict, needed, note = _judge(
            ratios,
            _noise_floor([run, base]),
            expectation.at_least,
            expectation.at_most,
            timing,
            _pair_factors(run, base, metric) if len(ratios) == 1 else (1.0, 1.0),
        )
        measured = interval.median
        shown = interval.describe("{:.2f}", unit) if interval.n > 1 else f"{measured:.2f}{unit}"
        ceiling = _ceiling(expectation, run, base)
        if ceiling is not None and measured > ceiling[0] * (1 + CEILING_MARGIN):
            verdict, needed = Outcome.INCONCLUSIVE, len(ratios) + 1
            note = (
                f"; beyond the {ceiling[0]:.2f}x that {ceiling[1]}, even with a {CEILING_MARGIN:.0%} margin: "
                "the machine was not the same for both runs"
            )
            return Verdict(
                title, expectation.kind, verdict, measured, expected, f"measured {shown}{note}", names,
                interval, needed, metric, cause="ceiling",
            )  # fmt: skip
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
        interval,
        needed,
        metric,
    )


def _fit_launch(record: RunRecord, metric: str) -> LaunchRecord | None:
    """The first launch of `record` that is fit to time `metric`."""
    fit = record.by_repeat(metric)
    return next((launch for launch in record.ok_launches() if launch.repeat in fit), None)


def _pair_factors(run: RunRecord, base: RunRecord, metric: str) -> tuple[float, float]:
    """The interval of one pair's ratio from both launches' blocks: run's low over base's high, and back."""
    a, b = _fit_launch(run, metric), _fit_launch(base, metric)
    if a is None or b is None:
        return 1.0, 1.0
    (a_low, a_high), (b_low, b_high) = a.interval_factors(metric), b.interval_factors(metric)
    return a_low / b_high, a_high / b_low


def _check_bound(expectation: BoundExpectation, run: RunRecord, title: str, names: tuple[str, ...]) -> Verdict:
    values = run.values(expectation.metric)
    expected = _bounds_text(expectation.at_least, expectation.at_most, "")
    if expectation.metric in NOISY_METRICS:
        single = _fit_launch(run, expectation.metric) if len(values) == 1 else None
        interval, verdict, needed, note = _judge(
            values,
            run.noise_floor,
            expectation.at_least,
            expectation.at_most,
            expectation.metric in TIMING_METRICS,
            single.interval_factors(expectation.metric) if single else (1.0, 1.0),
        )
        measured = interval.median
        shown = interval.describe() if interval.n > 1 else _fmt(measured)
        interval_data: Interval | None = interval
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
    run, base = runs[names[0]], runs[names[1]]
    a, b = _paired(run, base, expectation.metric)
    if not a:
        message = f"cannot be timed: no repeat of '{run.name}' and '{base.name}' was fit to time side by side"
        return Verdict(
            title,
            expectation.kind,
            Outcome.INCONCLUSIVE,
            None,
            "",
            message,
            names,
            None,
            1,
            expectation.metric,
            cause="unfit",
        )
    value, reference = statistics.median(a), statistics.median(b)
    difference = abs(value - reference)
    relative = difference / abs(reference) if reference else None
    tolerance = _tolerance_text(expectation)
    expected = f"within {tolerance} of {_fmt(reference)}"
    apart = f"{relative:.1%} apart" if relative is not None else f"{_fmt(difference)} apart"
    note, needed = "", None
    interval_data: Interval | None = None
    if expectation.metric in NOISY_METRICS and expectation.abs_tol is None and all(b):
        # a noisy metric with a relative tolerance: judge the interval of the paired ratios
        tol = expectation.rel_tol or 0.0
        interval, verdict, needed, note = _judge(
            [x / y for x, y in zip(a, b, strict=True)],
            _noise_floor([run, base]),
            1 - tol,
            1 + tol,
            expectation.metric in TIMING_METRICS,
        )
        interval_data = interval
    else:
        within = (expectation.rel_tol is not None and relative is not None and relative <= expectation.rel_tol) or (
            expectation.abs_tol is not None and difference <= expectation.abs_tol
        )
        verdict = Outcome.PASS if within else Outcome.FAIL
    message = f"measured {_fmt(value)} vs {_fmt(reference)} ({apart}), needs within {tolerance}" + note
    return Verdict(
        title, expectation.kind, verdict, relative, expected, message, names, interval_data, needed, expectation.metric
    )
