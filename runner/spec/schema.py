"""The editor schema: JSON Schema (draft 2020-12) generated from the spec models.

Pydantic gives the full sections; run overrides get a derived "partial" of each section (every
key optional, null allowed to remove a key), so an editor completes and checks keys inside
`runs:` too. On top of Pydantic's output:

- the rules between keys (schema_rules.py), worded as the CLI words them, through `errorMessage`,
  which yaml-language-server shows instead of its generic text; tagged unions dispatched on
  `kind` by if/then, so a wrong kind is named as such;
- every setting a matrix, an include/exclude entry or an expectation's settings may name, as a key
  with the schema of its value (schema_settings.py), so a typo there is flagged and values checked;
- a field that names a run has no example names (the language server, `accel-run lsp`, offers
  the file's own) and hover text of its own;
- hover text is made clean for yaml-language-server, which titles a value matched by every branch
  of an `anyOf` "A || A": a nullable scalar becomes `type: [T, "null"]`, other alternatives get
  titles of their own, and sections are titled by their key ("train") instead of a class name.

The committed copy in schemas/ is tested against this output.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from runner.spec.models import NAME_PATTERN, OVERRIDE_MARK, REFERENCE_MARK, ExperimentSpec
from runner.spec.schema_rules import (
    CROSS_FIELD_RULES,
    OVERRIDE_RULES,
    TOP_LEVEL_RULES,
    close_pattern_keys,
    dispatch_by_kind,
    explain_patterns,
    name_the_runs,
)
from runner.spec.schema_settings import matrix_keys, settings_definition, settings_of

SCHEMA_ID = "https://accel-run.dev/schemas/experiment-v1.schema.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_PATH = "schemas/experiment.schema.json"

# Hover titles of the sections, by model class: what the user typed, not what Python calls it.
SECTION_TITLES = {
    "MLPModel": "model (kind: mlp)",
    "LinearModel": "model (kind: linear)",
    "TransformerModel": "model (kind: transformer)",
    "SyntheticClassification": "data (kind: synthetic-classification)",
    "SyntheticTokens": "data (kind: synthetic-tokens)",
    "TrainSection": "train",
    "AdamWOptimizer": "optimizer (kind: adamw)",
    "AdamOptimizer": "optimizer (kind: adam)",
    "SGDOptimizer": "optimizer (kind: sgd)",
    "LaunchSection": "launch",
    "MeasureSection": "measure",
    "ScriptSection": "script",
    "RunOverride": "run",
    "MatrixSection": "matrix",
    "SpeedupExpectation": "expectation (kind: speedup)",
    "BoundExpectation": "expectation (kind: bound)",
    "RatioExpectation": "expectation (kind: ratio)",
    "CloseExpectation": "expectation (kind: close)",
}

# Keywords that state a rule between keys of a full section; an override holds part of a section,
# so its copy leaves them out (the merged run is checked against the full section).
_RULE_KEYWORDS = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else")


def build_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file."""
    generated = ExperimentSpec.model_json_schema(mode="validation")
    defs: dict[str, Any] = generated["$defs"]
    by_kind = _kind_titles(generated)
    for name, definition in defs.items():
        titled = definition.get("title", name) != name  # a title the model chose stays
        readable = definition["title"] if titled else by_kind.get(name) or _readable(name)
        definition["title"] = SECTION_TITLES.get(name) or readable
        rules = CROSS_FIELD_RULES.get(name)
        if rules:
            definition["allOf"] = copy.deepcopy(rules)
    generated["allOf"] = copy.deepcopy(TOP_LEVEL_RULES)
    _collapse_nullable(generated)
    sections = generated["properties"]
    for definition in list(defs.values()):
        for key, prop in definition.get("properties", {}).items():
            section = prop.pop(OVERRIDE_MARK, None)
            if section is None:
                continue
            description = prop.get("description")
            prop.clear()
            prop.update(_nullable(_partial(sections[section], defs), description))
            prop["title"] = f"{key} (override)"
    for name, rules in OVERRIDE_RULES.items():
        defs[name]["allOf"] = copy.deepcopy(rules)
    _run_references(generated)
    by_key, by_pattern = settings_of(defs["RunOverride"], defs)
    defs["Settings"] = settings_definition(by_key, by_pattern)
    matrix_keys(defs["MatrixSection"], by_key, by_pattern)
    dispatch_by_kind(generated, defs)
    explain_patterns(generated)
    name_the_runs(generated["properties"]["runs"])
    close_pattern_keys(generated)
    _title_alternatives(generated)
    return {"$schema": DRAFT, "$id": SCHEMA_ID, **generated}


def _run_references(node: Any) -> None:
    """A field that names a run: a name (or, in an expectation, a settings mapping), no example names."""
    if isinstance(node, dict):
        for key, prop in node.get("properties", {}).items():
            if isinstance(prop, dict) and REFERENCE_MARK in prop:
                kind = prop.pop(REFERENCE_MARK)
                nullable = _allows_null(prop)
                reference: dict[str, Any] = {
                    "title": prop.get("title", key.capitalize()),
                    "description": prop["description"],
                }
                types = ["string", "object"] if kind == "settings" else ["string"]
                reference["type"] = [*types, "null"] if nullable else types[0] if len(types) == 1 else types
                if kind == "settings":  # if/then on the type: the hover stays the field's own ("Run")
                    reference.update(
                        {
                            "if": {"type": "string"},
                            "then": {"pattern": NAME_PATTERN},
                            "else": {"$ref": "#/$defs/Settings"},
                        }
                    )
                else:
                    reference["pattern"] = NAME_PATTERN
                if "default" in prop:
                    reference["default"] = prop["default"]
                prop.clear()
                prop.update(reference)
        for value in node.values():
            _run_references(value)
    elif isinstance(node, list):
        for value in node:
            _run_references(value)


def _allows_null(prop: dict[str, Any]) -> bool:
    kind = prop.get("type")
    return (isinstance(kind, list) and "null" in kind) or {"type": "null"} in prop.get("anyOf", [])


def schema_text() -> str:
    """The schema as the committed file holds it: 2-space JSON with a final newline."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


def _kind_titles(generated: dict[str, Any]) -> dict[str, str]:
    """Definition name -> 'model (kind: mlp)', from each tagged union's discriminator mapping."""
    titles: dict[str, str] = {}
    for owner in [generated, *generated["$defs"].values()]:
        for key, prop in owner.get("properties", {}).items():
            union = prop.get("items", prop)
            for tag, ref in union.get("discriminator", {}).get("mapping", {}).items():
                titles.setdefault(ref.rsplit("/", 1)[-1], f"{key} (kind: {tag})")
    return titles


def _readable(class_name: str) -> str:
    """'MatrixSection' -> 'matrix section', for a model without an entry in SECTION_TITLES."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", class_name).lower()


_NOT_SIMPLE = ("$ref", "anyOf", "oneOf", "allOf", "const", "enum", "discriminator")
# Keywords that constrain one JSON type only: branches of different types can share one schema.
_TYPE_KEYWORDS = {
    "array": {"items", "prefixItems", "minItems", "maxItems", "uniqueItems"},
    "string": {"pattern", "patternErrorMessage", "minLength", "maxLength"},
    "integer": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"},
    "boolean": set(),
    "null": set(),
}


def _collapse_nullable(node: Any) -> None:
    """`anyOf` branches of different JSON types -> one schema with `type: [T1, T2, ...]`.

    `anyOf: [{type: integer, minimum: 1}, {type: null}]` and `{type: [integer, null], minimum: 1}`
    accept the same values (`minimum` constrains numbers only); the second has no branches for an
    editor's hover to join. The property's own description, title and examples stay.
    """
    if isinstance(node, dict):
        merged = _merged_branches(node.get("anyOf"))
        if merged is not None:
            del node["anyOf"]
            for key, value in merged.items():
                node.setdefault(key, value)
        for value in node.values():
            _collapse_nullable(value)
    elif isinstance(node, list):
        for value in node:
            _collapse_nullable(value)


def _merged_branches(alternatives: Any) -> dict[str, Any] | None:
    """The one schema equivalent to these anyOf branches, or None when they cannot share one."""
    if not isinstance(alternatives, list) or len(alternatives) < 2:
        return None
    merged: dict[str, Any] = {}
    types: list[str] = []
    for alternative in alternatives:
        branch = {k: v for k, v in alternative.items() if k not in ("title", "description", "examples", "default")}
        kind = branch.pop("type", None)
        if isinstance(branch.get("const"), str) and kind in (None, "string"):  # 'auto' beside a number
            text = branch.pop("const")
            kind, branch["pattern"], branch["patternErrorMessage"] = "string", f"^{re.escape(text)}$", f"not '{text}'"
        enum = branch.pop("enum", None)
        if enum is not None and any(a != {"type": "null"} for a in alternatives if a is not alternative):
            return None  # an enum constrains every type: only null may sit beside it
        if (
            not isinstance(kind, str)
            or kind not in _TYPE_KEYWORDS
            or kind in types
            or set(branch) - _TYPE_KEYWORDS[kind]
        ):
            return None
        if kind in ("integer", "number") and {"integer", "number"} & set(types):
            return None
        types.append(kind)
        merged.update(branch)
        if enum is not None:
            merged["enum"] = [*enum, None]
    merged["type"] = types
    return merged


def _title_alternatives(node: Any) -> None:
    """Give each untitled `anyOf` branch a title of its own, so a hover never joins identical ones.

    Branches of different JSON types need none: no value matches two of them, and the hover of the
    value is its property's own (a run reference: "Run", not "text").
    """
    if isinstance(node, dict):
        alternatives = node.get("anyOf")
        if isinstance(alternatives, list) and not _distinct_types(alternatives):
            for alternative in alternatives:
                if isinstance(alternative, dict) and "title" not in alternative and "$ref" not in alternative:
                    alternative["title"] = _branch_title(alternative)
        for value in node.values():
            _title_alternatives(value)
    elif isinstance(node, list):
        for value in node:
            _title_alternatives(value)


def _distinct_types(alternatives: list[Any]) -> bool:
    kinds = [a.get("type") if isinstance(a, dict) else None for a in alternatives]
    return all(isinstance(k, str) for k in kinds) and len(set(kinds)) == len(kinds)


def _branch_title(branch: dict[str, Any]) -> str:
    if "const" in branch:
        return json.dumps(branch["const"])
    if "required" in branch and "type" not in branch:
        return "with " + ", ".join(branch["required"])
    kind = branch.get("type")
    names = {"array": "a list", "string": "text", "integer": "a whole number", "number": "a number", "null": "null"}
    return names.get(kind, str(kind)) if isinstance(kind, str) else "a value"


def _partial(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The override shape of a property: model references point at partial copies."""
    if "$ref" in prop:
        return {"$ref": _partial_ref(prop["$ref"], defs)}
    alternatives = prop.get("oneOf") or prop.get("anyOf")
    if alternatives and any("$ref" in alt for alt in alternatives):
        # `kind` is optional in an override, so alternatives may overlap: anyOf, not oneOf.
        return {"anyOf": [_partial(alt, defs) for alt in alternatives]}
    return {k: v for k, v in prop.items() if k not in ("description", "title", "default", "examples")}


def _partial_ref(ref: str, defs: dict[str, Any]) -> str:
    name = ref.rsplit("/", 1)[-1]
    partial_name = f"{name}Override"
    if partial_name not in defs:
        definition = copy.deepcopy(defs[name])
        defs[partial_name] = definition  # registered first: recursion meets it, not a loop
        definition.pop("required", None)
        for keyword in _RULE_KEYWORDS:
            definition.pop(keyword, None)
        definition["title"] = f"{definition['title']} (override)"
        for key, prop in definition.get("properties", {}).items():
            definition["properties"][key] = _nullable(
                _partial(prop, defs), prop.get("description"), prop.get("examples"), prop.get("title")
            )
    return f"#/$defs/{partial_name}"


def _nullable(
    schema: dict[str, Any], description: str | None, examples: Any = None, title: str | None = None
) -> dict[str, Any]:
    """The schema with null allowed too (null removes a key in an override), hover text on top."""
    kind = schema.get("type")
    if isinstance(kind, str) and not any(k in schema for k in _NOT_SIMPLE):
        out: dict[str, Any] = {**schema, "type": [kind, "null"]}
    elif isinstance(kind, str) and isinstance(schema.get("enum"), list) and "$ref" not in schema:
        out = {**schema, "type": [kind, "null"], "enum": [*schema["enum"], None]}
    elif isinstance(kind, list):
        out = {**schema, "type": kind if "null" in kind else [*kind, "null"]}
    elif schema.get("anyOf"):
        alternatives = [a for a in schema["anyOf"] if a != {"type": "null"}]
        out = {"anyOf": [*alternatives, {"type": "null"}]}
    else:
        out = {"anyOf": [schema, {"type": "null"}]}
    if title:
        out["title"] = title
    if description:
        out["description"] = description
    if examples is not None:
        out["examples"] = examples
    return out
