"""`--set key.path=value`: command-line values written into a loaded spec, each remembered by its option.

The value is YAML (`--set launch.processes=2`, `--set train.optimizer={kind: sgd}`), set at its path
in the document before validation, so it is checked exactly like the file; a diagnostic about it
names the option (`--set train.lr=abc: error: ...`) instead of a line. Paths walk the document's
mappings and lists (`expect.0.at_least`); a matrix setting keeps its dots (`matrix.launch.processes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from runner.errors import Diagnostic, KeyPath, Severity, SpecError
from runner.spec.load import Document, parse_value


def parse_set(option: str, data: dict[str, Any] | None = None) -> tuple[str, str]:
    """`key.path=value` as (key path, value text); a usage error without `=` or a key.

    The key ends at the first `=`, unless it names a run whose name holds `=` (a matrix cell such
    as `processes=2`): then at the first `=` after that name.
    """
    key, sep, value = option.partition("=")
    runs = (data or {}).get("runs")
    if key.startswith("runs.") and isinstance(runs, dict):
        for name in sorted((n for n in runs if isinstance(n, str) and "=" in n), key=len, reverse=True):
            if option.startswith(f"runs.{name}.") and "=" in option[len(f"runs.{name}.") :]:
                rest_key, sep, value = option[len(f"runs.{name}.") :].partition("=")
                key = f"runs.{name}.{rest_key}"
                break
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise SpecError([_diagnostic(option, "expected KEY.PATH=VALUE, e.g. --set launch.processes=2")])
    return key.strip(), value


def apply_sets(document: Document, options: Sequence[str]) -> Document:
    """The document with every --set applied in order (a later one wins); all bad options reported at once."""
    if not options:
        return document
    data: dict[str, Any] = _copy(document.data)
    origins = dict(document.origins)
    problems: list[Diagnostic] = []
    for option in options:
        shown = f"--set {option}"
        try:
            key, text = parse_set(option, data)
            value = parse_value(text, shown)
            path, created = _assign(data, key.split("."), value, shown)
        except SpecError as exc:
            problems.extend(exc.diagnostics)
            continue
        origins = {p: o for p, o in origins.items() if p[: len(path)] != path}  # a later --set replaces
        origins[path] = shown
        for made in created:  # a mapping the option created (a misspelt key): its errors name the option too
            origins[made] = shown
    if problems:
        raise SpecError(problems)
    return replace(document, data=data, origins=origins)


def _diagnostic(option: str, message: str) -> Diagnostic:
    shown = option if option.startswith("--set") else f"--set {option}"
    return Diagnostic(shown, None, None, Severity.ERROR, message)


def _copy(value: Any) -> Any:
    """A copy of the mappings and lists (values are immutable scalars), so the loaded document is untouched."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _assign(data: dict[str, Any], parts: list[str], value: Any, shown: str) -> tuple[KeyPath, list[KeyPath]]:
    """Set `value` at the dotted path, creating mappings on the way; returns the document path it took
    and the paths of the mappings it created."""
    node: Any = data
    path: KeyPath = ()
    created: list[KeyPath] = []
    while True:
        if isinstance(node, list):
            index = int(parts[0]) if parts[0].isdigit() else None
            if index is None or index >= len(node):
                raise SpecError([_diagnostic(shown, f"{_where(path)} is a list of {len(node)}; no item {parts[0]}")])
            step: str | int = index
            rest = parts[1:]
        elif isinstance(node, dict):
            step, rest = _key_of(node, parts, matrix=path == ("matrix",))
        else:
            raise SpecError(
                [_diagnostic(shown, f"{_where(path)} is a single value, not a mapping: it has no key '{parts[0]}'")]
            )
        path = (*path, step)
        if not rest:
            node[step] = value
            return path, created
        child = node.get(step) if isinstance(node, dict) else node[int(step)]
        if child is None:  # a missing or null mapping on the way: created
            child = node[step] = {}
            created.append(path)
        node, parts = child, rest


def _key_of(node: dict[str, Any], parts: list[str], *, matrix: bool) -> tuple[str, list[str]]:
    """The key the next parts name: the longest written key among their dotted prefixes (run names and
    matrix settings may contain dots), else one part, or, in a matrix, all of them (a new setting)."""
    for cut in range(len(parts), 0, -1):
        key = ".".join(parts[:cut])
        if key in node:
            return key, parts[cut:]
    if matrix and parts[0] not in ("include", "exclude", "name"):
        return ".".join(parts), []
    return parts[0], parts[1:]


def _where(path: KeyPath) -> str:
    return ".".join(map(str, path)) if path else "the spec"
