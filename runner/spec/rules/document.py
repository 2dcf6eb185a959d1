"""Rules on the document and its runs: control characters, the document's types, each run merged and typed."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

from runner.errors import KeyPath
from runner.spec import control_chars
from runner.spec.merge import merged_runs, source_of
from runner.spec.models import (
    BUILTIN_SECTIONS,
    ExperimentSpec,
    RunConfig,
    ScriptRunConfig,
    rule_script_excludes,
)
from runner.spec.resolved import ResolvedRun
from runner.spec.rules.context import Checker
from runner.spec.workload import workload_of

SECTIONS = ("model", "data", "train", "launch", "measure", "engine", "script")
DEFAULT_RUN = "main"


def check_control_characters(checker: Checker) -> None:
    """No control character in any key or text (control_chars says why): located, and told once."""
    for path, at_key, message in control_chars.findings(checker.data):
        checker.report(path, message, at_key=at_key)
        checker.claimed.add(path)


def check_document(checker: Checker) -> ExperimentSpec | None:
    """The document against `ExperimentSpec`, or None after its errors."""
    spec: ExperimentSpec | None = checker.validate(ExperimentSpec, checker.data, lambda path: path)
    return spec


def check_runs(checker: Checker) -> dict[str, ResolvedRun] | None:
    """Every run merged and checked against its config model; None when one of them is invalid."""
    resolved: dict[str, ResolvedRun] = {}
    ok = True
    for name, description, merged, sources in merged_runs(checker.data, SECTIONS, DEFAULT_RUN, checker.report):
        kind: type[RunConfig | ScriptRunConfig] = RunConfig
        if merged.get("script") is not None:
            kind = ScriptRunConfig
            ok = check_builtin_sections_absent(checker, name, merged, sources) and ok
        config: RunConfig | ScriptRunConfig | None = checker.validate(kind, merged, partial(source_of, sources))
        if config is None:
            ok = False
            continue
        script_file = ""
        if isinstance(config, ScriptRunConfig):
            script_file = check_script_file(checker, config, source_of(sources, ("script", "path")))
        resolved[name] = ResolvedRun(
            name,
            description,
            config,
            workload_of(config),
            sources,
            script_file,
        )
    return resolved if ok else None


def check_builtin_sections_absent(
    checker: Checker, name: str, merged: dict[str, Any], sources: dict[KeyPath, KeyPath]
) -> bool:
    """A script run has no model, data or train: its script builds its own. Each one given is an error."""
    present = [s for s in BUILTIN_SECTIONS if s in merged]
    for section in present:
        del merged[section]
        where = source_of(sources, (section,))
        in_run = f"run '{name}': " if where[:1] == ("runs",) else ""
        checker.report(
            where,
            in_run + rule_script_excludes(section),
            at_key=True,
        )
    return not present


def check_script_file(checker: Checker, config: ScriptRunConfig, where: KeyPath) -> str:
    """The script, resolved against the spec file's folder: it must be a readable file (never imported here)."""
    written = config.script.path
    path = Path(checker.doc.path).parent / Path(written).expanduser()
    if not path.is_file():
        state = "is not a file" if path.exists() else "does not exist"
        checker.report(where, f"script.path '{written}' {state} (looked for {path}; paths are relative to the spec)")
    elif not os.access(path, os.R_OK):
        checker.report(where, f"script.path '{written}' is not readable (permissions of {path})")
    return str(path.resolve())
