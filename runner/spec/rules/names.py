"""Rules on names: a run must not take the name of a file in its result folder; the baseline names a run."""

from __future__ import annotations

from runner.spec.diagnose import did_you_mean
from runner.spec.models import ExperimentSpec
from runner.spec.resolved import ResolvedRun
from runner.spec.rules.context import Checker
from runner.vocab import LOCK_FILE, REPORT_FILE, RESERVE_FILE, SETS_FILE, SPEC_COPY, SUMMARY_FILE

# a run's folder sits beside these in the result folder: a run must not take one's name
RESULT_FOLDER_NAMES = frozenset(
    {SUMMARY_FILE, SPEC_COPY, SETS_FILE, REPORT_FILE, LOCK_FILE, RESERVE_FILE}
    | {"verdicts.png", "why.png", "loss_curves.png", "throughput.png"}
)
RESULT_FOLDER_RULE = (
    f"is the name of a file accel-run writes in the result folder ({', '.join(sorted(RESULT_FOLDER_NAMES))}); "
    "rename the run"
)


def check_run_names(checker: Checker, names: list[str]) -> None:
    """No run is named like a file of the result folder (in any case: file systems that ignore case)."""
    for name in names:
        if name.lower() in RESULT_FOLDER_NAMES or name.lower().startswith(SUMMARY_FILE):
            checker.report(("runs", name), f"run name '{name}' {RESULT_FOLDER_RULE}", at_key=True)


def check_baseline(checker: Checker, spec: ExperimentSpec, runs: dict[str, ResolvedRun]) -> None:
    """The top-level baseline, when given, names a run."""
    names = list(runs)
    if spec.baseline is not None and spec.baseline not in runs:
        hint = did_you_mean(spec.baseline, names)
        checker.report(("baseline",), f"baseline names no run: '{spec.baseline}'{hint}; runs: {', '.join(names)}")
