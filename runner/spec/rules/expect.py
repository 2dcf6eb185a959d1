"""Rules on expectations between named runs: the runs exist, a speedup compares like work, accuracy is a fraction."""

from __future__ import annotations

from typing import Any

from runner.errors import KeyPath, Severity
from runner.spec import advice
from runner.spec.diagnose import did_you_mean
from runner.spec.models import (
    RULE_ACCURACY_FRACTION,
    BoundExpectation,
    CloseExpectation,
    RatioExpectation,
    SpeedupExpectation,
)
from runner.spec.resolved import ResolvedRun
from runner.spec.rules.context import Checker


def check_expectation(checker: Checker, index: int, expectation: Any, runs: dict[str, ResolvedRun]) -> None:
    """One expectation between named runs (as expectations.py made it), written at `expect[index]`."""
    path: KeyPath = ("expect", index)
    names = list(runs)
    missing = False
    for role in ("run", "baseline"):
        name = getattr(expectation, role, None)
        if name is not None and name not in runs:
            missing = True
            checker.report(
                (*path, role),
                f"expectation names no run: '{name}'{did_you_mean(name, names)}; runs: {', '.join(names)}",
            )
    if missing:
        return
    if isinstance(expectation, SpeedupExpectation | RatioExpectation | CloseExpectation):
        if expectation.run == expectation.baseline:
            checker.report((*path, "baseline"), "run and baseline are the same run", severity=Severity.WARNING)
    if isinstance(expectation, SpeedupExpectation):
        # after expand_expectations, run and baseline are run names
        _check_comparable(checker, path, runs[str(expectation.run)], runs[str(expectation.baseline)], expectation)
    if isinstance(expectation, BoundExpectation) and expectation.metric == "accuracy":
        bound = expectation.at_least if expectation.at_least is not None else expectation.at_most
        if bound is not None and bound > 1:
            field_name = "at_least" if expectation.at_least is not None else "at_most"
            checker.report(
                (*path, field_name),
                f"{RULE_ACCURACY_FRACTION}; {bound} would be {bound:.0%} (write {bound / 100:g})",
            )


def _check_comparable(checker: Checker, path: KeyPath, run: ResolvedRun, base: ResolvedRun, expectation: Any) -> None:
    acknowledged = expectation.acknowledge
    mixed = advice.confounded(run, base)
    if mixed is not None:
        checker.report(path, mixed, severity=Severity.WARNING, code="confounded", acknowledged=acknowledged)
    a, b = run.workload, base.workload
    differences = []
    if a.global_batch != b.global_batch and a.global_batch and b.global_batch:  # 0: a script's own batch
        steps = (
            f" ({a.optimizer_steps} vs {b.optimizer_steps} optimizer steps)"
            if a.optimizer_steps and b.optimizer_steps
            else ""
        )
        differences.append(f"global batch {a.global_batch} vs {b.global_batch}{steps}")
    if a.nominal_samples != b.nominal_samples:
        differences.append(f"samples trained {a.nominal_samples:,} vs {b.nominal_samples:,}")
    if differences:
        checker.report(
            path,
            f"speedup of '{run.name}' over '{base.name}' compares different work: {'; '.join(differences)}; "
            "it is measured in samples/s, but the two runs do not train alike",
            severity=Severity.WARNING,
            code="different-work",
            acknowledged=acknowledged,
        )
