"""`--engine KIND`: every run on one engine, written as the --set options that say so.

The spec's engine settings of that kind are kept (a slurm spec run with --engine slurm is
unchanged); every engine section of another kind is set aside, the top-level one replaced by
`{kind: KIND}` and a run's own one emptied, so the runs take the top level. Expressed as --set
options, the result is validated, recorded and resumed exactly like any other override.
"""

from __future__ import annotations

from typing import Any

from runner.engines.kinds import DEFAULT_KIND
from runner.spec.load import Document


def engine_sets(document: Document, kind: str) -> list[str]:
    """The --set options that make every run of `document` use the engine `kind`."""
    data = document.data
    top = data.get("engine")
    top_kind = top.get("kind", DEFAULT_KIND) if isinstance(top, dict) else DEFAULT_KIND
    sets = [] if top_kind == kind else [f"engine={{kind: {kind}}}"]
    runs: Any = data.get("runs")
    for name, run in runs.items() if isinstance(runs, dict) else ():
        override = run.get("engine") if isinstance(run, dict) else None
        if not isinstance(override, dict):
            continue
        if override.get("kind", top_kind) != kind:
            # an empty override takes the top level; with none written, the run names the kind itself
            sets.append(f"runs.{name}.engine={{}}" if isinstance(top, dict) else f"runs.{name}.engine={{kind: {kind}}}")
    return sets
