"""Expectations against measurements: each kind, noisy and deterministic metrics, errors."""

from __future__ import annotations

from typing import Any

from runner.check import check_expectations
from runner.execute import Status
from runner.results import LaunchRecord, RunRecord
from runner.validate import validate_text

BASE = """\
name: check
model: {kind: mlp, input_dim: 8, classes: 2}
data: {kind: synthetic-classification, samples: 1024, features: 8, classes: 2}
train: {epochs: 1}
runs:
  a: {}
  b: {launch: {processes: 2}}
"""


def record(name: str, per_repeat: list[dict[str, Any]], status: Status = Status.OK) -> RunRecord:
    run = RunRecord(name, "", len(per_repeat), {}, noise_floor=0.03)
    for index, metrics in enumerate(per_repeat, start=1):
        run.launches[index] = LaunchRecord(index, status, name, metrics=metrics)
    return run


def verdicts(expect: str, runs: dict[str, RunRecord]) -> list[Any]:
    spec = validate_text(BASE + "expect:\n" + expect).spec
    assert spec is not None
    return check_expectations(spec.spec, runs)


def test_speedup_pairs_repeats_and_fails_clearly() -> None:
    runs = {
        "a": record("a", [{"samples_per_s": 1000.0}, {"samples_per_s": 1010.0}, {"samples_per_s": 990.0}]),
        "b": record("b", [{"samples_per_s": 980.0}, {"samples_per_s": 1000.0}, {"samples_per_s": 985.0}]),
    }
    (verdict,) = verdicts("  - {kind: speedup, title: b twice as fast, run: b, baseline: a, at_least: 1.8}\n", runs)
    assert verdict.verdict == "fail"
    assert verdict.line() == "FAIL  b twice as fast: measured 0.99x (0.95–1.02, n=3), needs >= 1.8x (45% short)"


def test_speedup_near_the_bound_is_inconclusive_with_advice() -> None:
    runs = {
        "a": record("a", [{"samples_per_s": 100.0}] * 5),
        "b": record("b", [{"samples_per_s": v} for v in (175.0, 182.0, 179.0, 185.0, 177.0)]),
    }
    (verdict,) = verdicts("  - {kind: speedup, run: b, baseline: a, at_least: 1.8}\n", runs)
    assert verdict.verdict == "inconclusive"
    assert "the bound is within the 3% noise floor" in verdict.message


def test_a_ratio_of_memory_passes_with_margin() -> None:
    runs = {"a": record("a", [{"peak_memory_mb": 1000.0}]), "b": record("b", [{"peak_memory_mb": 500.0}])}
    (verdict,) = verdicts("  - {kind: ratio, run: b, baseline: a, metric: peak_memory_mb, at_most: 0.7}\n", runs)
    assert verdict.verdict == "pass"
    assert verdict.message == "measured 0.50x, needs <= 0.7x (29% margin)"


def test_a_deterministic_bound_is_compared_directly() -> None:
    runs = {"a": record("a", [{"accuracy": 0.62}]), "b": record("b", [{"accuracy": 0.5}])}
    (passing, failing) = verdicts(
        "  - {kind: bound, run: a, metric: accuracy, at_least: 0.6}\n"
        "  - {kind: bound, run: b, metric: accuracy, at_least: 0.6}\n",
        runs,
    )
    assert passing.verdict == "pass" and passing.interval is None
    assert failing.verdict == "fail"
    assert failing.line() == "FAIL  accuracy of b >= 0.6: measured 0.5, needs >= 0.6 (17% short)"


def test_close_within_a_relative_tolerance() -> None:
    runs = {"a": record("a", [{"final_loss": 1.00}]), "b": record("b", [{"final_loss": 1.04}])}
    (close, far) = verdicts(
        "  - {kind: close, run: b, baseline: a, metric: final_loss, rel_tol: 0.05}\n"
        "  - {kind: close, run: b, baseline: a, metric: final_loss, rel_tol: 0.01}\n",
        runs,
    )
    assert close.verdict == "pass" and far.verdict == "fail"
    assert far.message == "measured 1.04 vs 1 (4.0% apart), needs within 1%"


def test_a_failed_run_makes_its_expectations_errors_never_skips() -> None:
    runs = {
        "a": record("a", [{"samples_per_s": 1000.0}]),
        "b": record("b", [{}], status=Status.TIMEOUT),
    }
    runs["b"].launches[1].reason = "time limit of 5 s reached"
    (verdict,) = verdicts("  - {kind: speedup, run: b, baseline: a, at_least: 1.8}\n", runs)
    assert verdict.verdict == "error"
    assert verdict.message == "cannot be evaluated: run 'b' is timeout: time limit of 5 s reached"
