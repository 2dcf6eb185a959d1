"""Deep merge of a run's overrides over the top-level sections, remembering where each value came from.

Each run is validated as a whole after merging; the provenance map lets an error inside an
override point at the override's own line rather than at the top-level section. The same merge
serves a run that `extends` another (the other run's merged data is the base, its provenance
carried over) and a matrix cell (each value's source is the matrix line that listed it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from runner.errors import KeyPath
from runner.spec.diagnose import did_you_mean

if TYPE_CHECKING:
    from runner.spec.settings import Report

# Where the value at a path inside a run was written in the document.
SourceOf = Callable[[KeyPath], KeyPath]


def merge_sections(
    base: dict[str, Any], base_path: KeyPath, override: dict[str, Any], override_path: KeyPath
) -> tuple[dict[str, Any], dict[KeyPath, KeyPath]]:
    """Merge `override` into `base`.

    Rules: mappings merge key by key; anything else (scalars, lists) in the override replaces;
    `null` in the override removes the key (so its default applies); a mapping whose `kind`
    differs from the base's replaces it whole (an sgd optimizer keeps no adamw betas).

    Returns the merged data and, for every path in it (and every removed key), the path in the
    document where it was written.
    """
    return merge_traced(base, lambda rel: (*base_path, *rel), override, lambda rel: (*override_path, *rel))


class TracedBase:
    """Data merged under many runs (the top-level sections, under every matrix cell): the sources of
    each of its subtrees are listed once, and a subtree no run overrides is shared, not copied.

    Merged data is only read (validated), never changed in place, so sharing is safe; it keeps a
    1024-cell matrix from copying the top-level sections 1024 times.
    """

    def __init__(self, data: dict[str, Any], source: SourceOf) -> None:
        self.data = data
        self.source = source
        self.under: dict[KeyPath, list[tuple[KeyPath, KeyPath]]] = {}
        self._index(data, ())

    def _index(self, value: Any, rel: KeyPath) -> list[tuple[KeyPath, KeyPath]]:
        pairs = [(rel, self.source(rel))]
        if isinstance(value, dict):
            for key, item in value.items():
                pairs.extend(self._index(item, (*rel, key)))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                pairs.extend(self._index(item, (*rel, index)))
        self.under[rel] = pairs
        return pairs


def merge_traced(
    base: dict[str, Any] | TracedBase, base_source: SourceOf, override: dict[str, Any], override_source: SourceOf
) -> tuple[dict[str, Any], dict[KeyPath, KeyPath]]:
    """merge_sections with the document path of each side given as a function of the path in the run."""
    sources: dict[KeyPath, KeyPath] = {}
    traced = base if isinstance(base, TracedBase) else None
    data = base.data if isinstance(base, TracedBase) else base
    merged = _merge(data, base_source, override, override_source, (), sources, traced)
    return merged, sources


def _merge(
    base: Any,
    base_source: SourceOf,
    over: Any,
    over_source: SourceOf,
    rel: KeyPath,
    sources: dict[KeyPath, KeyPath],
    traced: TracedBase | None = None,
) -> Any:
    if not (isinstance(base, dict) and isinstance(over, dict)) or _kind_changes(base, over):
        return _adopt(over, over_source, rel, sources)
    sources[rel] = over_source(rel)
    out: dict[str, Any] = {}
    for key, value in base.items():
        if key not in over:
            if traced is not None:  # shared, its sources listed once
                sources.update(traced.under[(*rel, key)])
                out[key] = value
            else:
                out[key] = _adopt(value, base_source, (*rel, key), sources)
    for key, value in over.items():
        child = (*rel, key)
        if value is None:
            sources[child] = over_source(child)  # a key removed here: "missing" errors point at the null
        elif key in base and base[key] is not None:
            out[key] = _merge(base[key], base_source, value, over_source, child, sources, traced)
        else:
            out[key] = _adopt(value, over_source, child, sources)
    return out


def _kind_changes(base: dict[str, Any], over: dict[str, Any]) -> bool:
    return "kind" in over and "kind" in base and over["kind"] != base["kind"]


def _adopt(value: Any, source: SourceOf, rel: KeyPath, sources: dict[KeyPath, KeyPath]) -> Any:
    """Take a subtree as it is, recording the source of each of its nodes."""
    sources[rel] = source(rel)
    if isinstance(value, dict):
        return {k: _adopt(v, source, (*rel, k), sources) for k, v in value.items()}
    if isinstance(value, list):
        return [_adopt(v, source, (*rel, i), sources) for i, v in enumerate(value)]
    return value


def source_of(sources: Mapping[KeyPath, KeyPath], rel: KeyPath) -> KeyPath:
    """The document path of `rel`, or of its nearest ancestor with a known source."""
    path = tuple(rel)
    while path:
        if path in sources:
            return sources[path]
        path = path[:-1]
    return sources.get((), ())


def traced_source(sources: Mapping[KeyPath, KeyPath], fallback: KeyPath) -> SourceOf:
    """A SourceOf for data whose nodes' sources are known at some paths: the nearest one, extended.

    A value under a known path is written inside it (`(*source, *rest)`), so an error deep in a
    mapping listed by a matrix points into that mapping's own lines.
    """

    def source(rel: KeyPath) -> KeyPath:
        path = tuple(rel)
        for cut in range(len(path), -1, -1):
            found = sources.get(path[:cut])
            if found is not None:
                return (*found, *path[cut:])
        return fallback

    return source


# --- every run of a spec -------------------------------------------------------------------------

# A run as merged: name, description, merged sections, where each value was written.
MergedRun = tuple[str, str, dict[str, Any], dict[KeyPath, KeyPath]]


def merged_runs(data: dict[str, Any], sections: tuple[str, ...], default_run: str, report: Report) -> list[MergedRun]:
    """The runs of a spec, merged: its matrix cells and its written runs (through `extends`), in file order.

    A spec with neither has one run, `default_run`, of the top-level sections. Problems (an unknown
    or cyclic `extends`, a bad matrix, a name used twice) are reported; the runs affected are left out.
    """
    from runner.spec.matrix import expand_matrix  # matrix.py imports the models; merging alone needs none

    base = {s: data[s] for s in sections if isinstance(data.get(s), dict)}
    runs = data.get("runs")
    written = {str(k): (v if isinstance(v, dict) else {}) for k, v in runs.items()} if isinstance(runs, dict) else {}
    matrix = data.get("matrix")
    cells = expand_matrix(matrix, report) if isinstance(matrix, dict) and _matrix_shape_ok(matrix) else None
    if not written and cells is None:
        written = {default_run: {}}
    by_extends = _Extends(base, written, sections, report)
    out_written = [
        (name, str(override.get("description") or ""), *traced)
        for name, override in written.items()
        if (traced := by_extends.resolve(name, ())) is not None
    ]
    out_cells: list[MergedRun] = []
    top = TracedBase(base, _top_source)
    for cell in cells or []:
        if cell.name in written:
            report(
                ("runs", cell.name),
                f"run '{cell.name}' has the name of a matrix cell; rename one of them (matrix.name sets the cells')",
                at_key=True,
            )
            continue
        sources_of_cell = traced_source(cell.sources, ("matrix",))
        merged, sources = merge_traced(top, _top_source, cell.override(), sources_of_cell)
        out_cells.append((cell.name, cell.description, merged, sources))
    keys = list(data)
    cells_first = "matrix" in data and ("runs" not in data or keys.index("matrix") < keys.index("runs"))
    return [*out_cells, *out_written] if cells_first else [*out_written, *out_cells]


def _top_source(rel: KeyPath) -> KeyPath:
    return rel  # a top-level section's value is written at its own path


def _matrix_shape_ok(matrix: Any) -> bool:
    """Only a matrix of the right shape is expanded (ExperimentSpec reports the others)."""
    if not isinstance(matrix, dict):
        return False
    for key, value in matrix.items():
        if key == "name":
            if value is not None and not isinstance(value, str):
                return False
        elif key in ("include", "exclude"):
            if value is not None and not (isinstance(value, list) and all(isinstance(e, dict) and e for e in value)):
                return False
        elif not (isinstance(value, list) and value):
            return False
    return True


class _Extends:
    """Written runs merged through their `extends` chains, each once."""

    def __init__(
        self, base: dict[str, Any], written: dict[str, dict[str, Any]], sections: tuple[str, ...], report: Report
    ) -> None:
        self.base, self.written, self.sections, self.report = base, written, sections, report
        self.done: dict[str, tuple[dict[str, Any], dict[KeyPath, KeyPath]] | None] = {}

    def resolve(self, name: str, chain: tuple[str, ...]) -> tuple[dict[str, Any], dict[KeyPath, KeyPath]] | None:
        if name in self.done:
            return self.done[name]
        override = self.written[name]
        own = {s: v for s, v in override.items() if s in self.sections and isinstance(v, dict | type(None))}
        parent = override.get("extends")
        result: tuple[dict[str, Any], dict[KeyPath, KeyPath]] | None = None
        if not isinstance(parent, str):
            result = merge_traced(self.base, lambda rel: rel, own, lambda rel: ("runs", name, *rel))
        elif parent == name:
            self.report(("runs", name, "extends"), f"run '{name}' extends itself")
        elif parent not in self.written:
            names = list(self.written)
            self.report(
                ("runs", name, "extends"),
                f"extends names no run: '{parent}'{did_you_mean(parent, names)}; runs: {', '.join(names)}",
            )
        elif parent in chain:
            cycle = " -> ".join(f"'{n}'" for n in (*chain[chain.index(parent) :], name, parent))
            self.report(("runs", name, "extends"), f"runs extend each other in a cycle: {cycle}")
        else:
            inherited = self.resolve(parent, (*chain, name))
            if inherited is not None:
                merged, sources = inherited
                result = merge_traced(merged, traced_source(sources, ()), own, lambda rel: ("runs", name, *rel))
        self.done[name] = result
        return result
