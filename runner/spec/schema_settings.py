"""Settings as keys, for the editor: `launch.processes: [1, 2]` in a matrix, `{launch.processes: 2}` in a selection.

A matrix key, an include/exclude entry's key and a key of an expectation's settings mapping all
name one setting of a run: `section.key` (`launch.processes`), a key inside a section's model
(`train.optimizer.lr`), a key of one section alone (`processes`), or a variable of a free mapping
(`launch.env.NCCL_DEBUG`). Each is listed here with the schema of its value, taken from the run
override's partial sections (a cell is an override: null removes a key, a mapping merges), and
kept only when the CLI's own `setting_path` accepts it, so the editor never allows what the CLI
refuses. The editor then completes these keys, checks their values, and flags a typo.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from runner.spec.models import MAX_CELLS
from runner.spec.settings import setting_path

Schema = dict[str, Any]
_HOVER_KEYS = ("title", "description", "examples", "default")
_SAMPLE_VARIABLE = "X"  # a variable name to ask setting_path whether a free mapping's keys are settings


class Setting:
    """One setting a key may name: its value's schema and its hover text."""

    def __init__(self, value: Schema, description: str) -> None:
        self.value = value
        self.description = description


def settings_of(run: Schema, defs: dict[str, Any]) -> tuple[dict[str, Setting], dict[str, Setting]]:
    """(key -> setting, key pattern -> setting) of every setting named as a key, from the RunOverride schema."""
    by_key: dict[str, Setting] = {}
    by_pattern: dict[str, Setting] = {}
    for section, prop in run.get("properties", {}).items():
        if any(ref.endswith("Override") for ref in _refs(prop)):
            _walk(section, prop, defs, by_key, by_pattern, depth=1)
    accepted = {key: s for key, s in by_key.items() if not setting_path(key)[1]}
    patterns = {p: s for p, s in by_pattern.items() if not setting_path(_sample(p))[1]}
    for key, setting in list(accepted.items()):  # a key of one section alone: `processes`
        section, _, bare = key.partition(".")
        if "." not in bare and bare not in accepted and setting_path(bare) == ((section, bare), ""):
            accepted[bare] = Setting(setting.value, f"Same as {key}. {setting.description}".strip())
    for pattern, setting in list(patterns.items()):
        bare = "^" + pattern.split(r"\.", 1)[1]
        if setting_path(_sample(bare))[0] == setting_path(_sample(pattern))[0]:
            patterns[bare] = setting
    return accepted, patterns


def _sample(pattern: str) -> str:
    r"""'^launch\.env\.[A-Za-z_][A-Za-z0-9_]*$' -> 'launch.env.X'."""
    return pattern.removeprefix("^").split(r"\.[", 1)[0].replace(r"\.", ".") + "." + _SAMPLE_VARIABLE


def _walk(
    prefix: str,
    prop: Schema,
    defs: dict[str, Any],
    by_key: dict[str, Setting],
    by_pattern: dict[str, Setting],
    depth: int,
) -> None:
    fields: dict[str, list[Schema]] = {}
    for ref in _refs(prop):
        for key, field in defs[ref.rsplit("/", 1)[-1]].get("properties", {}).items():
            fields.setdefault(key, []).append(field)
    for key, found in fields.items():
        path = f"{prefix}.{key}"
        descriptions = {str(f.get("description", "")) for f in found}
        description = next(iter(descriptions)) if len(descriptions) == 1 else ""
        by_key[path] = Setting(_combined(found), description)
        free = _free_mapping(found[0])
        if free is not None:
            key_pattern, value = free
            by_pattern[f"^{re.escape(path)}\\.{key_pattern.removeprefix('^').removesuffix('$')}$"] = Setting(
                {**copy.deepcopy(value), "type": [value.get("type", "string"), "null"]}, f"A variable of {path}."
            )
        if depth < 2 and any(_refs(f) for f in found):
            _walk(path, {"anyOf": [{"$ref": r} for f in found for r in _refs(f)]}, defs, by_key, by_pattern, depth + 1)


def _refs(prop: Schema) -> list[str]:
    """The model definitions a property's value may be: its $ref, or those of its alternatives."""
    if "$ref" in prop:
        return [prop["$ref"]]
    alternatives: list[Any] = prop.get("anyOf") or prop.get("oneOf") or []
    return [a["$ref"] for a in alternatives if isinstance(a, dict) and "$ref" in a]


def _combined(found: list[Schema]) -> Schema:
    """One value schema for a key several models have (`model.dropout`): the same one, the kinds, or any of them."""
    unique: dict[str, Schema] = {}
    for field in found:
        bare = {k: v for k, v in field.items() if k not in _HOVER_KEYS}
        unique.setdefault(json.dumps(bare, sort_keys=True), bare)
    values = list(unique.values())
    if len(values) == 1:
        return copy.deepcopy(values[0])
    consts = [_const(v) for v in values]
    if all(c is not None for c in consts):  # `model.kind`: one tag per model
        return {"enum": [*consts, None]}
    return {"anyOf": copy.deepcopy(values)}


def _const(schema: Schema) -> str | None:
    """The constant of a `kind` (a const, or a const-or-null of an override), else None."""
    if isinstance(schema.get("const"), str):
        return str(schema["const"])
    alternatives = [a for a in schema.get("anyOf") or [] if a != {"type": "null"}]
    return _const(alternatives[0]) if len(alternatives) == 1 else None


def _free_mapping(field: Schema) -> tuple[str, Schema] | None:
    """(key pattern, value schema) of a mapping with free keys (`launch.env`), else None."""
    patterns = field.get("patternProperties")
    if isinstance(patterns, dict) and len(patterns) == 1:
        ((pattern, value),) = patterns.items()
        return str(pattern), value
    return None


def settings_definition(by_key: dict[str, Setting], by_pattern: dict[str, Setting]) -> Schema:
    """`{launch.processes: 2}`: an include/exclude entry, or the settings an expectation selects runs by."""
    return {
        "title": "settings",
        "description": "Settings and their values, e.g. {launch.processes: 2}.",
        "properties": {
            key: {**copy.deepcopy(s.value), "title": key, "description": s.description or f"The setting {key}."}
            for key, s in by_key.items()
        },
        "patternProperties": {p: copy.deepcopy(s.value) for p, s in by_pattern.items()},
        "additionalProperties": False,
        "minProperties": 1,
    }


def matrix_keys(matrix: Schema, by_key: dict[str, Setting], by_pattern: dict[str, Setting]) -> None:
    """The matrix's keys: every setting, as a list of values; entries of include/exclude as settings."""

    def values(setting: Setting) -> Schema:
        return {"type": "array", "items": copy.deepcopy(setting.value), "minItems": 1, "maxItems": MAX_CELLS}

    properties = matrix.setdefault("properties", {})
    for entry in ("include", "exclude"):
        if entry in properties:
            properties[entry]["items"] = {"type": "object", "$ref": "#/$defs/Settings"}
    for key, setting in by_key.items():
        detail = f": {setting.description}" if setting.description else "."
        properties.setdefault(
            key, {"title": key, "description": f"Values of {key}, one per cell{detail}", **values(setting)}
        )
    matrix["patternProperties"] = {p: values(s) for p, s in by_pattern.items()}
    matrix["additionalProperties"] = False
