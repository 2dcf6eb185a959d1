"""Stage 3, matrix: a spec's `matrix` expanded into cells, each a run over the top-level sections.

A matrix has CI-matrix semantics: each setting lists values and every combination is a cell;
`exclude` removes the cells an entry matches, then `include` adds its values to the cells whose
matrix values it matches, or, matching none, is a new cell. A cell is a run over the top-level
sections, named after its values (`processes=2,mixed_precision=bf16`) or by a template, and each
of its values remembers the matrix line that wrote it, so an error points there. Expectations over
cells are the other half of sweeps: `expectations.py`.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.errors import KeyPath, Severity
from runner.spec.diagnose import did_you_mean
from runner.spec.models import MAX_CELLS, NAME_PATTERN
from runner.spec.settings import plain_value, same_value, setting_path

if TYPE_CHECKING:
    from runner.spec.settings import Report

_RESERVED = ("name", "include", "exclude")
_LABEL = re.compile(r"^[A-Za-z0-9_.+-]+$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


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
        parts = [f"{_dotted(path)} {plain_value(value)}" for path, value in self.values.items()]
        return "matrix cell: " + ", ".join(parts)


@functools.cache
def _dotted(path: KeyPath) -> str:
    return ".".join(map(str, path))


def _label(value: Any) -> str | None:
    """A value as part of a cell name, or None when it cannot be one."""
    if isinstance(value, list):
        parts = [_label(item) for item in value]
        text = "x".join(p for p in parts if p is not None) if all(p is not None for p in parts) else None
    elif isinstance(value, dict):
        text = _label(value["kind"]) if isinstance(value.get("kind"), str) else None
    else:
        text = plain_value(value)
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
            if any(same_value(value, earlier) for earlier in values[:index]):
                report(("matrix", key, index), f"{plain_value(value)} is listed twice for {key}")
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
        kept = [d for d in drafts if not all(same_value(d.values[p], v) for p, (_, v) in entry.items())]
        if len(kept) == len(drafts):
            report(("matrix", "exclude", index), "this exclude matches no cell", severity=Severity.WARNING)
        drafts = kept
    original = list(drafts)
    for index, entry in enumerate(entries["include"]):
        doc = ("matrix", "include", index)
        matched = [
            d for d in original if all(same_value(d.values[p], v) for p, (_, v) in entry.items() if p in axis_paths)
        ]
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
                        f"{plain_value(value)!r} cannot be part of a run name (it becomes a folder name): "
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
