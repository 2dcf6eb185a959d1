"""The editor schema: JSON Schema (draft 2020-12) generated from the spec models.

Pydantic gives the full sections; run overrides get a derived "partial" of each section (every
key optional, null allowed to remove a key), so an editor completes and checks keys inside
`runs:` too. On top of Pydantic's output:

- the cross-field rules JSON Schema can express (exactly one of epochs and max_steps, a bound on
  every bounded expectation, not both eval_samples and eval_split) are added to the full
  sections, worded as the CLI words them (models.RULE_*), through `errorMessage`, which
  yaml-language-server shows instead of its generic text;
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

from runner.spec.models import (
    OVERRIDE_MARK,
    RULE_EVAL_BOTH,
    RULE_LENGTH_BOTH,
    RULE_LENGTH_NEITHER,
    RULE_NO_BOUND,
    ExperimentSpec,
)

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
    "LocalEngineSection": "engine (kind: local)",
    "SlurmEngineSection": "engine (kind: slurm)",
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


def _when_both(first: str, first_type: str, second: str, second_type: str, message: str) -> dict[str, Any]:
    """Both keys set (not null): the second is flagged with `message`."""
    return {
        "if": {
            "required": [first, second],
            "properties": {first: {"type": first_type}, second: {"type": second_type}},
        },
        "then": {"properties": {second: {"type": "null", "errorMessage": message}}},
    }


def _when_neither(first: str, second: str, value_type: str, message: str) -> dict[str, Any]:
    """Neither key set (absent or null): the mapping is flagged with `message`."""
    return {
        "if": {"properties": {first: {"type": "null"}, second: {"type": "null"}}},
        "then": {
            "required": [first],
            "properties": {first: {"type": value_type, "errorMessage": message}},
            "errorMessage": message,
        },
    }


_BOUNDED_RULES = [_when_neither("at_least", "at_most", "number", RULE_NO_BOUND)]

# The cross-field rules the models' validators enforce, as JSON Schema, by definition name.
CROSS_FIELD_RULES: dict[str, list[dict[str, Any]]] = {
    "TrainSection": [
        _when_both("epochs", "integer", "max_steps", "integer", RULE_LENGTH_BOTH),
        _when_neither("epochs", "max_steps", "integer", RULE_LENGTH_NEITHER),
        _when_both("eval_samples", "integer", "eval_split", "number", RULE_EVAL_BOTH),
    ],
    "SpeedupExpectation": _BOUNDED_RULES,
    "BoundExpectation": _BOUNDED_RULES,
    "RatioExpectation": _BOUNDED_RULES,
}


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
    _collapse_nullable(generated)
    sections = generated["properties"]
    overridable: list[str] = []
    for definition in list(defs.values()):
        for key, prop in definition.get("properties", {}).items():
            section = prop.pop(OVERRIDE_MARK, None)
            if section is None:
                continue
            overridable.append(section)
            description = prop.get("description")
            prop.clear()
            prop.update(_nullable(_partial(sections[section], defs), description))
            prop["title"] = f"{key} (override)"
    if "MatrixSection" in defs:
        _matrix_settings(defs["MatrixSection"], {s: sections[s] for s in overridable if s in sections}, defs)
    _close_pattern_keys(generated)
    _title_alternatives(generated)
    return {"$schema": DRAFT, "$id": SCHEMA_ID, **generated}


def _matrix_settings(matrix: dict[str, Any], sections: dict[str, Any], defs: dict[str, Any]) -> None:
    """Matrix keys an editor completes and checks: `section.key` -> a list of that setting's values.

    Other keys (a key of one section, `processes`) stay allowed as the model allows them.
    """
    properties = matrix.setdefault("properties", {})
    for section, prop in sections.items():
        refs = [prop] if "$ref" in prop else [a for a in prop.get("oneOf", prop.get("anyOf", [])) if "$ref" in a]
        fields: dict[str, list[dict[str, Any]]] = {}
        for ref in refs:
            definition = defs[ref["$ref"].rsplit("/", 1)[-1]]
            for key, field in definition.get("properties", {}).items():
                fields.setdefault(key, []).append(field)
        for key, found in fields.items():
            first = found[0]
            value = {k: v for k, v in first.items() if k not in ("description", "title", "default", "examples")}
            same = all(f.get("description") == first.get("description") for f in found)
            properties.setdefault(
                f"{section}.{key}",
                {
                    "title": f"{section}.{key}",
                    "description": f"Values of {section}.{key}, one per cell"
                    + (f": {first['description']}" if same and first.get("description") else "."),
                    "type": "array",
                    "items": value if len(found) == 1 else {},
                    "minItems": 1,
                },
            )


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


def _close_pattern_keys(node: Any) -> None:
    """Pydantic moves a key pattern into patternProperties but leaves other keys allowed; close them."""
    if isinstance(node, dict):
        patterns = node.get("patternProperties")
        if isinstance(patterns, dict) and len(patterns) == 1:
            node.setdefault("propertyNames", {})["pattern"] = next(iter(patterns))
            node["additionalProperties"] = False
        for value in node.values():
            _close_pattern_keys(value)
    elif isinstance(node, list):
        for value in node:
            _close_pattern_keys(value)


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
    """Give each untitled `anyOf` branch a title of its own, so a hover never joins identical ones."""
    if isinstance(node, dict):
        alternatives = node.get("anyOf")
        if isinstance(alternatives, list):
            for alternative in alternatives:
                if isinstance(alternative, dict) and "title" not in alternative and "$ref" not in alternative:
                    alternative["title"] = _branch_title(alternative)
        for value in node.values():
            _title_alternatives(value)
    elif isinstance(node, list):
        for value in node:
            _title_alternatives(value)


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
