"""Stage 3, expectations over cells: each becomes expectations between named runs.

An expectation whose `run` is a mapping of settings applies to every run that has them; a
`baseline` mapping names each such run's twin (the run with the same settings but these); an
expectation with no baseline takes the top-level one. All become ordinary expectations between
named runs here, so checking and reporting are unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from runner.errors import KeyPath, Severity
from runner.spec.diagnose import did_you_mean
from runner.spec.settings import plain_value, same_value, setting_path

if TYPE_CHECKING:
    from runner.spec.settings import Report


def expand_expectations(
    expect: Sequence[Any], configs: Mapping[str, BaseModel], default_baseline: str | None, report: Report
) -> list[tuple[int, Any]]:
    """Every expectation as expectations between named runs, each with the index it was written at.

    `run` as settings -> every run that has them; `baseline` as settings -> each run's twin; no
    baseline -> the top-level one. Findings (a selection matching nothing, a run without a twin)
    are reported and located at the expectation.
    """
    resolved = _Resolved(configs)
    out: list[tuple[int, Any]] = []
    for index, expectation in enumerate(expect):
        path: KeyPath = ("expect", index)
        has_baseline = "baseline" in type(expectation).model_fields
        base_ref = getattr(expectation, "baseline", None)
        if has_baseline and base_ref is None:
            if default_baseline is None:
                report(
                    path,
                    f"this {expectation.kind} expectation needs a baseline: name one here, or set the "
                    "top-level baseline (the default of every expectation)",
                )
                continue
            if default_baseline not in configs:
                continue  # the top-level baseline's own error says why
            base_ref = default_baseline
        run_ref = expectation.run
        if isinstance(run_ref, dict):
            selected = resolved.select(run_ref, (*path, "run"), report)
            if selected is None:
                continue
        else:
            selected = [run_ref]
        unknown = [run for run in selected if run not in configs]
        if isinstance(base_ref, dict) and unknown:  # no twin to look for (named runs are checked later)
            names = list(configs)
            hint = did_you_mean(unknown[0], names)
            report((*path, "run"), f"expectation names no run: '{unknown[0]}'{hint}; runs: {', '.join(names)}")
            continue
        pairs: list[tuple[str, str | None]] = []
        orphans = []
        for run in selected:
            if not has_baseline:
                pairs.append((run, None))
            elif isinstance(base_ref, dict):
                twin = resolved.twin(run, base_ref)
                if twin is None or twin == run:
                    orphans.append(run)
                else:
                    pairs.append((run, twin))
            elif run != base_ref or not isinstance(run_ref, dict):
                pairs.append((run, base_ref))
        if isinstance(base_ref, dict) and orphans:
            settings = ", ".join(f"{k}: {plain_value(v)}" for k, v in base_ref.items())
            if not pairs:
                report(
                    (*path, "baseline"),
                    f"no run is the twin of {_quoted(orphans)} with {settings} (the same settings otherwise)",
                )
                continue
            report(
                (*path, "baseline"),
                f"{_quoted(orphans)} {'has' if len(orphans) == 1 else 'have'} no twin with {settings}; "
                "left out of this expectation",
                severity=Severity.WARNING,
            )
        over_cells = isinstance(run_ref, dict) or isinstance(getattr(expectation, "baseline", None), dict)
        for run, base in pairs:
            update: dict[str, Any] = {"run": run}
            if has_baseline:
                update["baseline"] = base
            if expectation.title and over_cells:
                update["title"] = f"{expectation.title} ({run} vs {base})" if base else f"{expectation.title} ({run})"
            out.append((index, expectation.model_copy(update=update)))
    return out


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


class _Resolved:
    """The runs' resolved settings as plain data, dumped once and only when a selection needs them."""

    def __init__(self, configs: Mapping[str, BaseModel]) -> None:
        self.configs = configs

    @functools.cached_property
    def data(self) -> dict[str, dict[str, Any]]:
        return {name: config.model_dump(mode="json") for name, config in self.configs.items()}

    @functools.cached_property
    def by_content(self) -> dict[str, str]:
        index: dict[str, str] = {}
        for name, data in self.data.items():
            index.setdefault(_canonical(data), name)
        return index

    def settings(self, ref: Mapping[str, Any], where: KeyPath, report: Report) -> dict[KeyPath, Any] | None:
        out: dict[KeyPath, Any] = {}
        for key, value in ref.items():
            path, problem = setting_path(key)
            if not problem and not any(_has(data, path) for data in self.data.values()):
                problem = f"no run has a setting '{key}'"
            if problem:
                report((*where, key), problem, at_key=True)
                return None
            out[path] = value
        return out

    def select(self, ref: Mapping[str, Any], where: KeyPath, report: Report) -> list[str] | None:
        settings = self.settings(ref, where, report)
        if settings is None:
            return None
        chosen = [
            name
            for name, data in self.data.items()
            if all(_has(data, p) and same_value(_get(data, p), v) for p, v in settings.items())
        ]
        if not chosen:
            shown = ", ".join(f"{k}: {plain_value(v)}" for k, v in ref.items())
            report(where, f"no run has {shown}")
            return None
        return chosen

    def twin(self, run: str, ref: Mapping[str, Any]) -> str | None:
        data = self.data[run]
        for key, value in ref.items():
            path, problem = setting_path(key)
            if problem or not _has(data, path[:-1]):
                return None
            current = _get(data, path) if _has(data, path) else None
            if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # lr: 1 names the run whose lr is 1.0
            data = _with(data, path, value)
        return self.by_content.get(_canonical(data))


def _canonical(data: Any) -> str:
    # repr is C code, and dumps of one model list their keys in one order (_with keeps it): equal
    # settings give equal text, 3x faster than json.dumps and far faster than a copy made in Python
    return repr(data)


def _with(data: dict[str, Any], path: KeyPath, value: Any) -> dict[str, Any]:
    """`data` with `value` at `path`: the mappings on the way copied, the rest shared."""
    out = dict(data)
    out[str(path[0])] = value if len(path) == 1 else _with(data[str(path[0])], path[1:], value)
    return out


def _has(data: Any, path: KeyPath) -> bool:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _get(data: Any, path: KeyPath) -> Any:
    for part in path:
        data = data[part]
    return data
