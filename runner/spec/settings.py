"""Stage 3, settings: a setting as written (`launch.processes`, or `processes`) resolved to its path in a run.

A matrix key, an include/exclude entry's key, a key of an expectation's settings mapping and the
editor's setting keys all name one setting of a run; `setting_path` finds it from the run models
(RunConfig, ScriptRunConfig), or says why there is none. Values are compared and shown as YAML
values (`same_value`, `plain_value`): true is not 1, null is null.
"""

from __future__ import annotations

import functools
import json
import re
import typing
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from runner.errors import KeyPath, Severity
from runner.spec.diagnose import did_you_mean
from runner.spec.models import SETTING_PATTERN, RunConfig, ScriptRunConfig

if TYPE_CHECKING:  # a Protocol class costs import time; only the type checker needs it

    class Report(Protocol):
        """How findings leave the matrix, the expectations over cells and merging: the checker's report."""

        def __call__(
            self, doc_path: KeyPath, message: str, *, severity: Severity = Severity.ERROR, at_key: bool = False
        ) -> None: ...


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


def same_value(a: Any, b: Any) -> bool:
    """Equal as YAML values: true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def plain_value(value: Any) -> str:
    """A value as YAML writes it: true, null, 0.001, [1, 2]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, list | dict) else repr(value)
