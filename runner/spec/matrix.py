"""Stage 3, matrix: a spec's `matrix` expanded into cells, and expectations over cells into per-pair ones.

A matrix has CI-matrix semantics: each setting lists values and every combination is a cell;
`exclude` removes the cells an entry matches, then `include` adds its values to the cells whose
matrix values it matches, or, matching none, is a new cell. A cell is a run over the top-level
sections, named after its values (`processes=2,mixed_precision=bf16`) or by a template, and each
of its values remembers the matrix line that wrote it, so an error points there.

An expectation whose `run` is a mapping of settings applies to every run that has them; a
`baseline` mapping names each such run's twin (the run with the same settings but these). Both
become ordinary expectations between named runs here, so checking and reporting are unchanged.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from runner.errors import KeyPath, Severity
from runner.spec.diagnose import did_you_mean
from runner.spec.models import MAX_CELLS, NAME_PATTERN, SETTING_PATTERN, RunConfig, ScriptRunConfig

_RESERVED = ("name", "include", "exclude")
_LABEL = re.compile(r"^[A-Za-z0-9_.+-]+$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


if TYPE_CHECKING:  # a Protocol class costs import time; only the type checker needs it

    class Report(Protocol):
        """How findings leave this module: _Checker.report's signature."""

        def __call__(
            self, doc_path: KeyPath, message: str, *, severity: Severity = Severity.ERROR, at_key: bool = False
        ) -> None: ...


@dataclass(frozen=True)
class Cell:
    """One combination of a matrix: its name, its values by path in the run, where each was written."""

    name: str
    values: dict[KeyPath, Any]
    sources: dict[KeyPath, KeyPath]
    keys: dict[KeyPath, str]  # the key as written in the matrix, for the description

    def override(self) -> dict[str, Any]:
        """The cell's values as nested sections, to merge over the top-level ones."""
        out: dict[str, Any] = {}
        for path, value in self.values.items():
            node = out
            for part in path[:-1]:
                child = node.get(str(part))
                if not isinstance(child, dict):
                    child = node[str(part)] = {}
                node = child
            node[str(path[-1])] = value
        return out

    @property
    def description(self) -> str:
        """`matrix cell: launch.processes 2, launch.mixed_precision bf16`, for --explain and the report."""
        parts = [f"{_dotted(path)} {_plain(value)}" for path, value in self.values.items()]
        return "matrix cell: " + ", ".join(parts)


@functools.cache
def _dotted(path: KeyPath) -> str:
    return ".".join(map(str, path))


# --- settings ----------------------------------------------------------------------------------


@functools.cache
def _section_keys() -> tuple[frozenset[str], dict[str, tuple[str, ...]]]:
    """The sections of a run, and for each key of a section the sections that have it."""
    sections: list[str] = []
    owners: dict[str, list[str]] = {}
    for config in (RunConfig, ScriptRunConfig):
        for section, info in config.model_fields.items():
            if section not in sections:
                sections.append(section)
            for model in _models_in(info.annotation):
                for key in model.model_fields:
                    if section not in owners.setdefault(key, []):
                        owners[key].append(section)
    return frozenset(sections), {key: tuple(where) for key, where in owners.items()}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]


@functools.cache
def setting_path(key: str) -> tuple[KeyPath, str]:
    """The path in a run of a setting as written (`launch.processes`, or `processes`), or why it has none."""
    if not re.fullmatch(SETTING_PATTERN, key):
        return (), f"'{key}' is not a setting: write section.key, e.g. launch.processes"
    parts = tuple(key.split("."))
    sections, owners = _section_keys()
    if parts[0] in sections:
        return parts, _unknown_part(parts)
    where = owners.get(parts[0], ())
    if len(where) == 1:
        return (where[0], *parts), _unknown_part((where[0], *parts))
    if where:
        spelled = " or ".join(f"{section}.{key}" for section in where)
        return (), f"'{key}' is a key of {' and '.join(where)}: write {spelled}"
    known = [*sections, *owners]
    return (), f"unknown setting '{key}'{did_you_mean(parts[0], known)}: write section.key, e.g. launch.processes"


def _unknown_part(path: KeyPath) -> str:
    """Why no run can have a value at `path` (a key no section has), or "" when one can."""
    models: list[type[BaseModel]] = [RunConfig, ScriptRunConfig]
    for depth, part in enumerate(path):
        if not models:  # inside a mapping of free keys (launch.env) or a value: anything goes
            return ""
        fields = [m.model_fields[str(part)] for m in models if str(part) in m.model_fields]
        if not fields:
            known = sorted({name for m in models for name in m.model_fields})
            where = ".".join(map(str, path[:depth]))
            return f"unknown key '{part}' in {where}{did_you_mean(str(part), known)}"
        models = [model for info in fields for model in _models_in(info.annotation)]
    return ""


def _same(a: Any, b: Any) -> bool:
    """Equal as YAML values: true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, list | dict) else repr(value)


def _label(value: Any) -> str | None:
    """A value as part of a cell name, or None when it cannot be one."""
    if isinstance(value, list):
        parts = [_label(item) for item in value]
        text = "x".join(p for p in parts if p is not None) if all(p is not None for p in parts) else None
    elif isinstance(value, dict):
        text = _label(value["kind"]) if isinstance(value.get("kind"), str) else None
    else:
        text = _plain(value)
    return text if text and _LABEL.match(text) else None


# --- the matrix ------------------------------------------------------------------------------


@dataclass
class _Draft:
    values: dict[KeyPath, Any]
    sources: dict[KeyPath, KeyPath]
    named_by: list[KeyPath]  # the paths whose values name the cell by default


def expand_matrix(matrix: Mapping[str, Any], report: Report) -> list[Cell] | None:
    """The cells of a matrix section (already checked for shape by ExperimentSpec); None after an error."""
    axes: list[tuple[str, KeyPath, list[Any]]] = []
    keys: dict[KeyPath, str] = {}
    ok = True
    for key, values in matrix.items():
        if key in _RESERVED:
            continue
        path, problem = setting_path(key)
        if problem:
            report(("matrix", key), problem, at_key=True)
            ok = False
            continue
        if path in keys:
            report(
                ("matrix", key), f"'{key}' and '{keys[path]}' are the same setting; list its values once", at_key=True
            )
            ok = False
            continue
        keys[path] = key
        axes.append((key, path, values))
        for index, value in enumerate(values):
            if any(_same(value, earlier) for earlier in values[:index]):
                report(("matrix", key, index), f"{_plain(value)} is listed twice for {key}")
                ok = False
    size = math.prod(len(values) for _, _, values in axes) if axes else 0
    if size > MAX_CELLS:
        shape = " x ".join(str(len(values)) for _, _, values in axes)
        report(
            ("matrix",),
            f"the matrix has {size:,} cells ({shape}); at most {MAX_CELLS} are allowed: "
            "split the experiment, or list fewer values",
            at_key=True,
        )
        return None
    entries = {kind: _entries(matrix.get(kind) or [], kind, report) for kind in ("exclude", "include")}
    if not ok or entries["exclude"] is None or entries["include"] is None:
        return None
    drafts = [
        _Draft(
            {path: values[i] for (_, path, values), i in zip(axes, combo, strict=True)},
            {path: ("matrix", key, i) for (key, path, _), i in zip(axes, combo, strict=True)},
            [path for _, path, _ in axes],
        )
        for combo in itertools.product(*(range(len(values)) for _, _, values in axes))
        if axes
    ]
    axis_paths = {path for _, path, _ in axes}
    for index, entry in enumerate(entries["exclude"]):
        foreign = [key for path, (key, _) in entry.items() if path not in axis_paths]
        if foreign:
            report(
                ("matrix", "exclude", index, foreign[0]),
                f"exclude matches matrix keys only; '{foreign[0]}' is not one "
                f"(matrix keys: {', '.join(keys.values())})",
                at_key=True,
            )
            return None
        kept = [d for d in drafts if not all(_same(d.values[p], v) for p, (_, v) in entry.items())]
        if len(kept) == len(drafts):
            report(("matrix", "exclude", index), "this exclude matches no cell", severity=Severity.WARNING)
        drafts = kept
    original = list(drafts)
    for index, entry in enumerate(entries["include"]):
        doc = ("matrix", "include", index)
        matched = [d for d in original if all(_same(d.values[p], v) for p, (_, v) in entry.items() if p in axis_paths)]
        extra = {p: kv for p, kv in entry.items() if p not in axis_paths} if matched else entry
        for path, (key, _) in entry.items():
            keys.setdefault(path, key)
        if not matched:
            drafts.append(_Draft({}, {}, list(entry)))
            matched = [drafts[-1]]
        for draft in matched:
            for path, (key, value) in extra.items():
                draft.values[path] = value
                draft.sources[path] = (*doc, key)
    if not drafts:
        report(("matrix",), "the matrix has no cells (every cell is excluded, or no setting lists values)", at_key=True)
        return None
    if len(drafts) > MAX_CELLS:
        report(("matrix",), f"the matrix has {len(drafts):,} cells; at most {MAX_CELLS} are allowed", at_key=True)
        return None
    return _named(drafts, keys, matrix.get("name"), report)


def _entries(
    raw: Sequence[Mapping[str, Any]], kind: str, report: Report
) -> list[dict[KeyPath, tuple[str, Any]]] | None:
    out = []
    ok = True
    for index, entry in enumerate(raw):
        resolved: dict[KeyPath, tuple[str, Any]] = {}
        for key, value in entry.items():
            path, problem = setting_path(key)
            if problem:
                report(("matrix", kind, index, key), problem, at_key=True)
                ok = False
            else:
                resolved[path] = (key, value)
        out.append(resolved)
    return out if ok else None


def _named(drafts: list[_Draft], keys: dict[KeyPath, str], template: str | None, report: Report) -> list[Cell] | None:
    leaves = [path[-1] for path in keys]
    short = {path: str(path[-1]) if leaves.count(path[-1]) == 1 else ".".join(map(str, path)) for path in keys}
    names: dict[str, int] = {}
    cells = []
    known: dict[KeyPath, str | None] = {}  # labels by the document path of the value: each is made once
    for number, draft in enumerate(drafts):
        labels: dict[KeyPath, str] = {}
        for path, value in draft.values.items():
            if template is None and path not in draft.named_by:
                continue  # a value include adds to a cell is not part of its name
            source = draft.sources[path]
            label = known[source] if source in known else known.setdefault(source, _label(value))
            if label is None:
                if template is None or any(f"{{{k}}}" in template for k in _spellings(path, keys, short)):
                    report(
                        draft.sources[path],
                        f"{_plain(value)!r} cannot be part of a run name (it becomes a folder name): "
                        "give matrix.name a template without it",
                    )
                    return None
                continue
            labels[path] = label
        rendered = (
            ",".join(f"{short[p]}={labels[p]}" for p in draft.named_by if p in labels)
            if template is None
            else _render(template, draft, keys, short, labels, report)
        )
        if rendered is None:
            return None
        name = rendered
        where: KeyPath = ("matrix", "name") if template is not None else ("matrix",)
        if not re.fullmatch(NAME_PATTERN, name):
            report(where, f"cell name '{name}' is not a valid run name (it becomes a folder name)")
            return None
        if name in names:
            hint = "make the template use every matrix key" if template else "give matrix.name a template"
            report(where, f"two cells are both named '{name}' (cells {names[name] + 1} and {number + 1}); {hint}")
            return None
        names[name] = number
        cells.append(Cell(name, dict(draft.values), dict(draft.sources), {p: keys[p] for p in draft.values}))
    return cells


def _spellings(path: KeyPath, keys: dict[KeyPath, str], short: dict[KeyPath, str]) -> set[str]:
    return {keys[path], short[path], ".".join(map(str, path))}


def _render(
    template: str,
    draft: _Draft,
    keys: dict[KeyPath, str],
    short: dict[KeyPath, str],
    labels: dict[KeyPath, str],
    report: Report,
) -> str | None:
    lookup = {spelling: path for path in keys for spelling in _spellings(path, keys, short)}
    out = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        out.append(template[position : match.start()])
        position = match.end()
        path = lookup.get(match.group(1))
        if path is None:
            report(
                ("matrix", "name"),
                f"the name template uses {{{match.group(1)}}}, which is not a matrix key"
                f"{did_you_mean(match.group(1), list(lookup))}; matrix keys: {', '.join(keys.values())}",
            )
            return None
        if path not in labels:
            report(("matrix", "name"), f"the name template uses {{{match.group(1)}}}, which a cell does not set")
            return None
        out.append(labels[path])
    out.append(template[position:])
    return "".join(out)


# --- expectations over cells ---------------------------------------------------------------------


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
            settings = ", ".join(f"{k}: {_plain(v)}" for k, v in base_ref.items())
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
            if all(_has(data, p) and _same(_get(data, p), v) for p, v in settings.items())
        ]
        if not chosen:
            shown = ", ".join(f"{k}: {_plain(v)}" for k, v in ref.items())
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
