"""Which launches come next: repeats interleaved, and with measure.repeats: auto, the rounds verdicts still need.

Pure decisions over the run records and the verdicts; the session launches what this says.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from runner.metrics import TIMING_METRICS
from runner.results.records import RunRecord
from runner.spec.models import ExperimentSpec
from runner.verdicts.check import RunRepeats, Verdict, check_expectations
from runner.vocab import Outcome, Status


def schedule(records: dict[str, RunRecord]) -> list[tuple[str, int]]:
    """Launches still to do, repeats interleaved (A1 B1 A2 B2 ...) so machine drift hits every run alike."""
    todo = []
    most = max((r.repeats for r in records.values() if r.selected), default=0)
    for repeat in range(1, most + 1):
        for name, record in records.items():
            launch = record.launches.get(repeat)
            # a launch submitted to a cluster by an earlier session and not yet collected is still to do
            if record.selected and repeat <= record.repeats and (launch is None or launch.status is Status.PENDING):
                todo.append((name, repeat))
    return todo


@dataclass(frozen=True)
class Round:
    """What next_round planned: how many launches, and the undecided verdicts they serve."""

    added: int
    undecided: tuple[Verdict, ...] = ()

    def lines(self) -> list[str]:
        """One line per verdict the round serves, for the terminal: why the session goes on."""
        lines = []
        for verdict in self.undecided:
            runs = " and ".join(repr(name) for name in verdict.runs)
            lines.append(f"accel-run: one more launch of {runs}: '{verdict.title}' is undecided: {verdict.message}")
        return lines


def next_round(spec: ExperimentSpec, records: dict[str, RunRecord]) -> Round:
    """measure.repeats: auto: plan one more repeat of the runs of every undecided verdict.

    A verdict is undecided when it is inconclusive and more repeats may settle it (a spread that
    holds the bound, disturbed repeats, a speedup beyond what the change can give); both runs of a
    pair get the same next repeat number, so they stay paired. A run stops at measure.max_repeats
    or once its launches took measure.max_time_s.
    """
    wanted: list[Verdict] = []
    for verdict in check_expectations(spec, records):
        if verdict.verdict == Outcome.INCONCLUSIVE and verdict.repeats_needed is not None:
            if all(records[n].auto and _budget_left(records[n]) for n in verdict.runs):
                wanted.append(verdict)
    added = 0
    for names in (verdict.runs for verdict in wanted):
        target = max(records[n].repeats for n in names) + 1
        for name in names:
            record = records[name]
            if record.repeats < target:
                added += target - record.repeats
                record.repeats = target
    return Round(added, tuple(wanted) if added else ())


def _budget_left(record: RunRecord) -> bool:
    return len(record.launches) < record.max_repeats and record.launch_time_s() < record.max_time_s


def stopped(
    verdict: Verdict, records: dict[str, RunRecord], interrupted: bool, budget_spent: float | None = None
) -> Verdict:
    """The verdict with how many repeats it used and why no more were launched."""
    runs = [records[n] for n in verdict.runs if n in records and records[n].selected]
    if not runs or verdict.verdict in (Outcome.SKIPPED, Outcome.ERROR):
        return verdict
    launches = max(len(r.ok_launches()) for r in runs)
    timing = verdict.metric in TIMING_METRICS
    # per run: a pair's two runs each have their own repeats, and their own unfit ones
    by_run = tuple(
        RunRepeats(r.name, len(r.ok_launches()), r.repeats, len(r.timing_problems()) if timing else 0) for r in runs
    )
    unfit = sum(r.unfit for r in by_run)
    used = verdict.interval.n if verdict.interval else launches
    if interrupted:
        why = "interrupted"
    elif not all(r.auto for r in runs):
        why = f"measure.repeats fixed at {max(r.repeats for r in runs)}"
    elif verdict.verdict != Outcome.INCONCLUSIVE:
        why = "decided"
    elif verdict.repeats_needed is None:
        why = "more repeats cannot settle it"
    elif budget_spent is not None:
        why = f"measure.max_session_s ({budget_spent:g} s) spent"
    elif any(len(r.launches) >= r.max_repeats for r in runs):
        why = f"measure.max_repeats ({min(r.max_repeats for r in runs)}) reached"
    else:
        why = f"measure.max_time_s ({min(r.max_time_s for r in runs):g} s) spent"
    return replace(verdict, repeats_used=used, repeats_unfit=unfit, stopped=why, repeats_by_run=by_run)
