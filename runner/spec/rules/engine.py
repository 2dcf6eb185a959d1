"""Rules on a run's engine: each engine kind's own, found through the registry (runner.engines.kinds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from runner.engines.kinds import engine_kind, load
from runner.spec.resolved import ResolvedRun
from runner.spec.rules.context import Checker

EngineRules = Callable[[Checker, ResolvedRun], None]  # a kind's `rules`: what its section forbids in a run


def check_engine(checker: Checker, run: ResolvedRun) -> None:
    """What the run's engine kind forbids in its other sections (a kind without `rules` forbids nothing)."""
    where = engine_kind(run.config.engine.kind).rules
    if where:
        cast(EngineRules, load(where))(checker, run)
