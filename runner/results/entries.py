"""A run's entry of summary.json read back: which timings are measurements, and which rest on unfit repeats only.

A timing that no repeat fit to time could give is written under the entry's `unfit_metrics`, never
under `metrics`, where a measurement is read. summary.json files written before that kept it under
`metrics`; for them the run's `disturbance.unfit_repeats`, one per ok repeat, tells it apart. The
report's table, its plots and the Why all read an entry through this module, so they agree on
every figure (standard library only: the report imports it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.metrics import TIMING_METRICS


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def ok_repeats(run: Mapping[str, Any]) -> int:
    """How many of the run's repeats finished ok."""
    return sum(1 for repeat in run.get("repeats") or [] if repeat.get("status") == "ok")


def unfit_repeats(run: Mapping[str, Any]) -> int:
    """How many of the run's ok repeats were unfit to time."""
    return len((run.get("disturbance") or {}).get("unfit_repeats") or {})


def unfit_timings(run: Mapping[str, Any]) -> dict[str, float]:
    """The run's timings that rest on unfit repeats only (the median over them), by metric."""
    if "unfit_metrics" in run:
        return {key: value for key, value in (run.get("unfit_metrics") or {}).items() if _number(value) is not None}
    ok = ok_repeats(run)
    if not ok or unfit_repeats(run) < ok:
        return {}
    metrics = run.get("metrics") or {}
    return {key: float(value) for key, value in metrics.items() if key in TIMING_METRICS and _number(value) is not None}


def shown(run: Mapping[str, Any], metric: str) -> tuple[float | None, bool]:
    """(the figure of `metric` the report shows, whether it rests on unfit repeats only); (None, False) when none."""
    unfit = unfit_timings(run)
    if metric in unfit:
        return unfit[metric], True
    return _number((run.get("metrics") or {}).get(metric)), False


def with_unfit(run: Mapping[str, Any]) -> dict[str, Any]:
    """The entry with its unfit timings put back among its metrics: what the runs measured, as an indication."""
    return {**run, "metrics": {**(run.get("metrics") or {}), **unfit_timings(run)}}


def shown_ratio(run: Mapping[str, Any], base: Mapping[str, Any], metric: str) -> tuple[float | None, bool]:
    """(the run's shown figure over the baseline's, whether either rests on unfit repeats only)."""
    value, unfit = shown(run, metric)
    reference, base_unfit = shown(base, metric)
    if value is None or not reference:
        return None, False
    return value / reference, unfit or base_unfit
