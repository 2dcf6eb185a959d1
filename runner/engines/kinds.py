"""The one list of engine kinds: for each kind, where its parts live; a stage imports a part when it first asks.

An engine kind has three parts, each in its own module, one per stage that needs it:
- `rules`: what its engine section forbids in a run, checked by `--validate` (spec stage; light);
- `planning`: pure planning, an EnginePlanning (runner.plan.engine_plan): the machines a launch
  spans, the device `auto` means, threads, the Accelerate config, the launcher, the rendezvous port,
  preflight, the launch's own files and its dry-run lines (plan stage);
- `runner`: a function that starts the session's Engine (runner.engines.base) for its runs.

Parts are named as "module:attribute" and imported on first use (as check-jsonschema's parser set
imports a format's library only when a file of that format is read), so `--validate` imports the
rules alone, and the CLI reads the names for `--engine` from here without importing the spec models.
Standard library only. The spec's vocabulary (the section models and their `kind` literals) stays
in runner.spec.models; a kind registered here needs a section model of the same `kind` there.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_KIND = "local"  # the engine of a spec that names none


@dataclass(frozen=True)
class EngineKind:
    """One engine kind: its name, a phrase for --engine's help, and where each of its parts lives."""

    name: str
    summary: str
    planning: str
    runner: str
    rules: str = ""  # none: the kind's engine section constrains nothing else in a run
    jobs: str = ""  # what a person calls a launch it submits ("SLURM job"); none: it runs its launches itself


_KINDS: dict[str, EngineKind] = {}


def register(kind: EngineKind) -> EngineKind | None:
    """Add `kind` (or replace the kind of its name); returns the kind it replaced, so a test can put it back."""
    previous = _KINDS.get(kind.name)
    _KINDS[kind.name] = kind
    return previous


def unregister(name: str) -> None:
    """Remove a kind (a test's own, once the test is done)."""
    _KINDS.pop(name, None)


def kind_names() -> tuple[str, ...]:
    """Every registered kind's name, in registration order (--engine's choices)."""
    return tuple(_KINDS)


def engine_kind(name: str) -> EngineKind:
    """The registered kind called `name` (the spec's models admit only registered kinds' sections)."""
    try:
        return _KINDS[name]
    except KeyError:
        raise LookupError(f"no engine kind '{name}' is registered (runner.engines.kinds)") from None


def job_word(names: Iterable[str]) -> str:
    """What the named kinds call a submitted launch, for the report and --resume: the one word of those that
    submit, or "job" when none does or several do. A name not registered (a result written where another kind
    was) counts as none."""
    words = {_KINDS[name].jobs for name in names if name in _KINDS and _KINDS[name].jobs}
    return words.pop() if len(words) == 1 else "job"


def load(where: str) -> object:
    """The object a part names, "package.module:attribute", importing its module now."""
    module, _, attribute = where.partition(":")
    return getattr(importlib.import_module(module), attribute)


register(
    EngineKind(
        "local",
        "this machine",
        planning="runner.plan.local:PLANNING",
        runner="runner.engines.local:start",
    )
)
register(
    EngineKind(
        "slurm",
        "submit to a SLURM cluster",
        planning="runner.plan.sbatch:PLANNING",
        runner="runner.engines.slurm:start",
        rules="runner.spec.rules.slurm:slurm_rules",
        jobs="SLURM job",
    )
)
