"""The editor schema: JSON Schema (draft 2020-12) generated from the spec models.

Pydantic gives the full sections; run overrides get a derived "partial" of each section (every
key optional, null allowed to remove a key), so an editor completes and checks keys inside
`runs:` too. The committed copy in schemas/ is tested against this output.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from runner.spec.models import OVERRIDE_MARK, ExperimentSpec

SCHEMA_ID = "https://accel-run.dev/schemas/experiment-v1.schema.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_PATH = "schemas/experiment.schema.json"


def build_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file."""
    generated = ExperimentSpec.model_json_schema(mode="validation")
    defs: dict[str, Any] = generated["$defs"]
    sections = generated["properties"]
    for definition in list(defs.values()):
        for prop in definition.get("properties", {}).values():
            section = prop.pop(OVERRIDE_MARK, None)
            if section is None:
                continue
            description = prop.get("description")
            prop.clear()
            prop.update(_nullable(_partial(sections[section], defs), description))
    _close_pattern_keys(generated)
    return {"$schema": DRAFT, "$id": SCHEMA_ID, **generated}


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


def schema_text() -> str:
    """The schema as the committed file holds it: 2-space JSON with a final newline."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


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
        definition["title"] = f"{definition.get('title', name)} (override)"
        for key, prop in definition.get("properties", {}).items():
            definition["properties"][key] = _nullable(
                _partial(prop, defs), prop.get("description"), prop.get("examples")
            )
    return f"#/$defs/{partial_name}"


def _nullable(schema: dict[str, Any], description: str | None, examples: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"anyOf": [schema, {"type": "null"}]}
    if schema.get("anyOf"):
        alternatives = [a for a in schema["anyOf"] if a != {"type": "null"}]
        out = {"anyOf": [*alternatives, {"type": "null"}]}
    if description:
        out["description"] = description
    if examples is not None:
        out["examples"] = examples
    return out
