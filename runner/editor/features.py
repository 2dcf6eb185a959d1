"""What the language server tells an editor, as plain data: no LSP library here (server.py speaks the protocol).

- diagnostics: the CLI's own (`validate_text`, as `--validate` runs it), each with the extent of the
  key or value it points at, so an editor underlines a word rather than a column;
- run names to complete after `extends:`, `run:` and `baseline:`: the file's own runs and matrix
  cells, merged as the CLI merges them;
- the hover of a run name: that run as `--explain` shows it (its figures and its differences from
  the baseline), from the last version of the file that validated.

Positions here are 0-based lines and characters (code points); server.py converts them to the
client's units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from runner.errors import Diagnostic, KeyPath, SpecError
from runner.spec.load import Document, parse_spec
from runner.spec.merge import merged_runs
from runner.spec.validate import DEFAULT_RUN, SECTIONS, ValidatedSpec, Validation, validate_text

# A spec by its modeline, or by its shape: a top-level `name:` and a top-level section (found by lines,
# so a file mid-edit that does not parse keeps its diagnostics).
_MODELINE = re.compile(r"^#\s*yaml-language-server:\s*\$schema=\S*experiment\.schema\.json", re.MULTILINE)
_NAME_KEY = re.compile(r"^name\s*:", re.MULTILINE)
_SECTION_KEY = re.compile(r"^(model|data|train|script|runs|matrix|expect)\s*:", re.MULTILINE)

# The keys whose value names a run, and the text typed after one up to the cursor.
_REFERENCE = re.compile(r"(?:^|[\s{,])(extends|run|baseline)\s*:\s*(['\"]?)([^\s,{}\[\]'\"#]*)$")
_STOPS = ",]}#"


@dataclass(frozen=True)
class Extent:
    """A stretch of one line: 0-based line, first character, character after the last."""

    line: int
    start: int
    end: int


@dataclass(frozen=True)
class Finding:
    """A CLI diagnostic and where it is underlined."""

    diagnostic: Diagnostic
    extent: Extent


@dataclass(frozen=True)
class RunChoice:
    """A run name to offer, with what it is (its description, or the matrix cell's values)."""

    name: str
    detail: str


@dataclass(frozen=True)
class Reference:
    """A run name being typed after `key:`: the text typed so far and where it starts."""

    key: str
    typed: str
    start: int
    quoted: bool
    in_flow: bool


def is_spec(text: str) -> bool:
    """Whether a YAML file is an accel-run spec: it names the schema in its modeline, or has a spec's shape.

    An editor starts the server for every YAML file (compose files, CI workflows); those get nothing.
    """
    return bool(_MODELINE.search(text) or (_NAME_KEY.search(text) and _SECTION_KEY.search(text)))


def check(text: str, path: str) -> Validation:
    """The CLI's validation of the text of `path` (a script's path resolves against the file's folder)."""
    return validate_text(text, path)


def findings(validation: Validation, text: str) -> list[Finding]:
    """Every diagnostic of a validation, with the extent of the word it points at."""
    lines = text.split("\n")
    out = []
    for diagnostic in validation.diagnostics:
        line = max((diagnostic.line or 1) - 1, 0)
        start = max((diagnostic.col or 1) - 1, 0)
        source = lines[line] if line < len(lines) else ""
        out.append(Finding(diagnostic, Extent(line, start, _word_end(source, start))))
    return out


def _word_end(line: str, start: int) -> int:
    """The character after the key or value starting at `start`: a quoted text, a bracket, or a plain word."""
    if start >= len(line):
        return start
    opening = line[start]
    if opening in "'\"":
        close = line.find(opening, start + 1)
        return close + 1 if close > start else len(line)
    if opening in "[{":
        depth = 0
        for index in range(start, len(line)):
            depth += line[index] in "[{"
            depth -= line[index] in "]}"
            if depth == 0:
                return index + 1
        return len(line.rstrip())
    end = start
    while end < len(line) and line[end] not in _STOPS and not line.startswith(": ", end) and line[end:] != ":":
        end += 1
    return max(len(line[:end].rstrip()), start + 1)


def reference_at(line: str, character: int) -> Reference | None:
    """The run reference being typed at the cursor (after `extends:`, `run:` or `baseline:`), if any."""
    before = line[:character]
    found = _REFERENCE.search(before)
    if found is None:
        return None
    key, quote, typed = found.groups()
    in_flow = before.count("{") > before.count("}") or before.count("[") > before.count("]")
    return Reference(key, typed, found.start(3) - len(quote), bool(quote), in_flow)


def run_choices(text: str, path: str, reference: Reference, current_run: str | None) -> list[RunChoice]:
    """The runs a reference may name, in file order: written runs for `extends`, every run otherwise."""
    document = _parsed(text, path)
    if document is None:
        return []
    written = document.data.get("runs")
    if reference.key == "extends":
        names = [str(n) for n in written] if isinstance(written, dict) else []
        return [
            RunChoice(n, _description(written.get(n)) if isinstance(written, dict) else "")
            for n in names
            if n != current_run
        ]
    runs = merged_runs(document.data, SECTIONS, DEFAULT_RUN, _ignore)
    return [RunChoice(name, description) for name, description, _, _ in runs]


def insert_text(name: str, reference: Reference) -> str:
    """The name as it must be written there: quoted in a flow mapping when a comma would end it."""
    if reference.quoted or not (reference.in_flow and any(c in name for c in ",{}[]")):
        return name
    return f"'{name}'"


def run_at(text: str, path: str, line: int, character: int) -> tuple[str, Extent] | None:
    """The run named at a position: a key under `runs:`, or the value of extends/run/baseline."""
    document = _parsed(text, path)
    if document is None:
        return None
    lines = text.split("\n")
    for key_path, name in _run_names_written(document.data):
        of_key = key_path[:1] == ("runs",) and len(key_path) == 2
        spans = document.key_spans if of_key else document.value_spans
        span = spans.get(key_path)
        if span is None or span.line - 1 != line:
            continue
        start = span.col - 1
        end = _word_end(lines[line], start)
        if start <= character <= end:
            return name, Extent(line, start, end)
    return None


def _run_names_written(data: dict[str, Any]) -> list[tuple[KeyPath, str]]:
    """(path, name) of every place the document names a run by its name."""
    out: list[tuple[KeyPath, str]] = []
    runs = data.get("runs")
    for name, run in runs.items() if isinstance(runs, dict) else []:
        out.append((("runs", name), str(name)))
        if isinstance(run, dict) and isinstance(run.get("extends"), str):
            out.append((("runs", name, "extends"), run["extends"]))
    if isinstance(data.get("baseline"), str):
        out.append((("baseline",), data["baseline"]))
    expect = data.get("expect")
    for index, expectation in enumerate(expect if isinstance(expect, list) else []):
        for role in ("run", "baseline"):
            if isinstance(expectation, dict) and isinstance(expectation.get(role), str):
                out.append((("expect", index, role), expectation[role]))
    return out


def run_hover(spec: ValidatedSpec, name: str, stale: bool) -> str | None:
    """Markdown: the run as --explain shows it, or None when the spec has no such run."""
    from runner.report.explain import explain_run  # imported when first hovered: the server starts faster

    if name not in spec.runs:
        return None
    role = "the baseline" if name == spec.baseline else f"its differences from the baseline '{spec.baseline}'"
    note = " (as of the last version of this file without errors)" if stale else ""
    return (
        f"**run '{name}'**: {role}, as `accel-run --explain` shows it{note}\n\n```yaml\n{explain_run(spec, name)}```\n"
    )


def current_run(text: str, path: str, line: int) -> str | None:
    """The run whose entry under `runs:` holds `line` (for `extends`, which never names its own run)."""
    document = _parsed(text, path)
    if document is None:
        return None
    candidates = [
        (span.line - 1, str(key_path[1]))
        for key_path, span in document.key_spans.items()
        if len(key_path) == 2 and key_path[0] == "runs" and span.line - 1 <= line
    ]
    return max(candidates)[1] if candidates else None


def _parsed(text: str, path: str) -> Document | None:
    try:
        return parse_spec(text, path)
    except SpecError:
        return None


def _description(run: Any) -> str:
    return str(run.get("description") or "") if isinstance(run, dict) else ""


def _ignore(*_: Any, **__: Any) -> None:
    """A report that drops findings: completion needs the names, the diagnostics come from `check`."""
