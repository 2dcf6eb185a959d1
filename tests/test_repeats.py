"""measure.repeats: auto: which runs get another repeat, when it stops, and what the verdict says of it."""

from __future__ import annotations

from typing import Any

from runner.results.records import LaunchRecord, RunRecord
from runner.spec.validate import validate_text
from runner.verdicts.check import check_expectations
from runner.verdicts.rounds import next_round, stopped
from runner.vocab import Status

SPEC = """\
name: auto
model: {kind: mlp, input_dim: 8, classes: 2}
data: {kind: synthetic-classification, samples: 1024, features: 8, classes: 2}
train: {epochs: 1}
runs:
  a: {}
  b: {launch: {processes: 2}}
  c: {}
expect:
  - {kind: speedup, title: b vs a, run: b, baseline: a, at_least: 1.5}
  - {kind: bound, run: c, metric: final_loss, at_most: 9}
"""


def spec() -> Any:
    validated = validate_text(SPEC).spec
    assert validated is not None
    return validated.spec


def auto(name: str, rates: list[float], shares: list[float] | None = None, **budget: Any) -> RunRecord:
    record = RunRecord(name, "", len(rates), None, noise_floor=0.03, auto=True, **budget)
    for repeat, rate in enumerate(rates, start=1):
        share = shares[repeat - 1] if shares else 0.01
        record.launches[repeat] = LaunchRecord(
            repeat,
            Status.OK,
            name,
            wall_s=5.0,
            metrics={"samples_per_s": rate, "final_loss": 0.5},
            disturbance={"others_share": share},
        )
    return record


def test_a_decided_verdict_asks_for_nothing_more() -> None:
    records = {"a": auto("a", [1000.0]), "b": auto("b", [500.0]), "c": auto("c", [1.0])}
    assert next_round(spec(), records).added == 0
    verdict = stopped(check_expectations(spec(), records)[0], records, interrupted=False)
    assert (verdict.verdict, verdict.repeats_used, verdict.stopped) == ("fail", 1, "decided")


def test_a_disturbed_pair_is_repeated_for_both_runs_only() -> None:
    records = {"a": auto("a", [1000.0]), "b": auto("b", [77000.0], shares=[0.4]), "c": auto("c", [1.0])}
    planned = next_round(spec(), records)
    assert planned.added == 2
    assert (records["a"].repeats, records["b"].repeats, records["c"].repeats) == (2, 2, 1)
    # the terminal says why the session goes on: the verdict, and what kept it open
    assert planned.lines() == [
        "accel-run: one more launch of 'b' and 'a': 'b vs a' is undecided: cannot be timed: 'b': its only repeat: "
        "other processes took 40% of the CPU cores while it was timed (measure.max_disturbance: 10%)"
    ]


def test_a_round_that_adds_nothing_names_no_verdict() -> None:
    records = {"a": auto("a", [1000.0], max_repeats=1), "b": auto("b", [1600.0], max_repeats=1), "c": auto("c", [1.0])}
    planned = next_round(spec(), records)
    assert (planned.added, planned.lines()) == (0, [])


def test_pairs_stay_aligned_when_one_run_is_ahead() -> None:
    records = {"a": auto("a", [1000.0, 1000.0, 1000.0]), "b": auto("b", [1600.0]), "c": auto("c", [1.0])}
    records["a"].repeats = 3
    assert next_round(spec(), records).added == 4  # b catches up (2, 3 pair with a's) and both go to 4
    assert (records["a"].repeats, records["b"].repeats) == (4, 4)


def test_max_repeats_stops_the_rounds_and_says_so() -> None:
    shares = [0.4] * 3
    records = {
        "a": auto("a", [1000.0] * 3, max_repeats=3),
        "b": auto("b", [700.0] * 3, shares, max_repeats=3),
        "c": auto("c", [1.0]),
    }
    assert next_round(spec(), records).added == 0
    verdict = stopped(check_expectations(spec(), records)[0], records, interrupted=False)
    assert verdict.verdict == "inconclusive"
    assert (verdict.repeats_unfit, verdict.stopped) == (3, "measure.max_repeats (3) reached")


def test_max_time_stops_the_rounds_and_says_so() -> None:
    records = {"a": auto("a", [1000.0], max_time_s=4), "b": auto("b", [1600.0]), "c": auto("c", [1.0])}
    assert next_round(spec(), records).added == 0
    verdict = stopped(check_expectations(spec(), records)[0], records, interrupted=False)
    assert verdict.stopped == "measure.max_time_s (4 s) spent"


def test_fixed_repeats_are_never_extended() -> None:
    records = {"a": auto("a", [1000.0]), "b": auto("b", [1600.0]), "c": auto("c", [1.0])}
    records["a"].auto = records["b"].auto = False
    assert next_round(spec(), records).added == 0
    verdict = stopped(check_expectations(spec(), records)[0], records, interrupted=False)
    assert verdict.stopped == "measure.repeats fixed at 1"
