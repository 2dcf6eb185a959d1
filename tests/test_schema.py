"""The editor schema: generated from the models, committed, complete, and in agreement with Pydantic."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runner.spec.load import parse_spec
from runner.spec.schema import SCHEMA_ID, build_schema, schema_text
from runner.spec.validate import validate_file, validate_text

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "schemas" / "experiment.schema.json"
SPEC_FILES = sorted([*ROOT.glob("specs/**/*.yaml"), *ROOT.glob("examples/**/*.yaml")])
CASES = Path(__file__).parent / "cases" / "diagnostics"

# Documents both validators must reject: errors of shape and type, which the JSON Schema can
# express. Semantic rules (input_dim must equal features, runs named by expectations must exist)
# are beyond JSON Schema and are checked by accel-run alone.
REJECTED_BY_BOTH = [
    "unknown-key-top",
    "unknown-key-nested",
    "unknown-key-in-run",
    "unknown-section-in-run",
    "enum-typo",
    "enum-in-run",
    "unknown-model-kind",
    "missing-model-kind",
    "unknown-optimizer-kind",
    "missing-required",
    "missing-section",
    "wrong-types",
    "out-of-range",
    "huge-integer",
    "mixed-precision-false",
    "gpu-ids-fullwidth-comma",
    "run-name-unsafe",
    "override-replaces-kind",
    # no coercion: text and booleans where numbers or booleans belong
    "no-coercion",
    # cross-field rules the schema states with if/then (in the full sections, not in run overrides)
    "neither-epochs-nor-steps",
    "eval-both",
    "bound-missing",
    "multi-machine-incomplete",
    # rules between keys the models check in validators, stated by the schema with if/then
    "fp16-on-cpu",
    "accuracy-as-percent",
    "optimizer-as-text",
    "cuda-visible-devices-and-gpu-ids",
    "run-name-result-file",
    "close-without-tolerance",
    "script-with-builtin-sections",
    "both-lengths-in-a-run",
    # kinds dispatched on `kind`; settings as keys in a matrix, its entries and an expectation's settings
    "expectation-kind-typo",
    "speedup-with-metric",
    "matrix-key-typo",
    "matrix-include-typo",
    "matrix-entry-typo",
    "matrix-bare-key-value",
    "expect-settings-typo",
]


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))


def test_the_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "schemas/experiment.schema.json is stale: regenerate it with "
        "`accel-run --schema > schemas/experiment.schema.json`"
    )


def test_the_schema_is_valid_draft_2020_12_with_a_stable_id() -> None:
    schema = build_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID


def _properties(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], bool]]:
    out = []
    for owner, definition in [("(top)", schema), *schema["$defs"].items()]:
        required = set(definition.get("required", []))
        for name, prop in definition.get("properties", {}).items():
            out.append((owner, name, prop, name in required))
    return out


def test_every_field_has_hover_text() -> None:
    missing = [f"{owner}.{name}" for owner, name, prop, _ in _properties(build_schema()) if not prop.get("description")]
    assert missing == []


def test_every_optional_field_shows_its_default() -> None:
    missing = [
        f"{owner}.{name}"
        for owner, name, prop, required in _properties(build_schema())
        if not required
        and "default" not in prop
        and not owner.endswith("Override")
        and owner != "RunOverride"
        # a setting in a matrix or a selection has no default: it is listed or not
        and not (owner == "MatrixSection" and name not in ("name", "include", "exclude"))
        and owner != "Settings"
    ]
    assert missing == []


def test_tagged_unions_dispatch_on_kind_with_every_kind_listed() -> None:
    # if/then on `kind`, not oneOf: an editor names a wrong kind as such and checks the fields of the kind written
    schema = build_schema()
    model = schema["properties"]["model"]
    assert "oneOf" not in model and "anyOf" not in model
    assert model["properties"]["kind"]["enum"] == ["mlp", "linear", "transformer", "huggingface"]
    dispatched = {rule["if"]["properties"]["kind"]["const"]: rule["then"]["$ref"] for rule in model["allOf"][:4]}
    assert dispatched["mlp"] == "#/$defs/MLPModel"
    mlp = schema["$defs"]["MLPModel"]
    assert mlp["properties"]["kind"]["const"] == "mlp"
    assert {"input_dim", "hidden", "classes", "activation", "dropout"} <= set(mlp["properties"])


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ({"kind": "mpl"}, "unknown kind for model; allowed: 'mlp', 'linear', 'transformer', 'huggingface'"),
        ({"input_dim": 4}, "model needs a 'kind', one of 'mlp', 'linear', 'transformer', 'huggingface'"),
        ("mlp", "model must be a mapping of keys to values, not the text 'mlp': write model: {kind: mlp}"),
    ],
)
def test_a_wrong_or_missing_kind_has_the_clis_words(written: Any, message: str) -> None:
    base = parse_spec((CASES.parent / "valid-base.yaml").read_text(), "base").data
    errors = _messages(build_schema(), {**base, "model": written})
    assert [m for m in errors if m.startswith(message)], errors


def _messages(schema: dict[str, Any], data: Any) -> list[str]:
    """The errorMessage an editor shows for each error (jsonschema itself ignores the keyword)."""
    out = []
    for error in jsonschema.Draft202012Validator(schema).iter_errors(data):
        for leaf in [error, *error.context]:
            if isinstance(leaf.schema, dict):
                out.append(str(leaf.schema.get("errorMessage", leaf.message)))
    return out


def test_run_overrides_complete_the_same_keys_as_the_sections() -> None:
    schema = build_schema()
    override = schema["$defs"]["LaunchSectionOverride"]
    assert set(override["properties"]) == set(schema["$defs"]["LaunchSection"]["properties"])
    assert "required" not in override


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_spec_is_valid_for_pydantic_and_the_schema(
    path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    result = validate_file(str(path))
    assert result.errors == [], [d.format() for d in result.errors]
    data = parse_spec(path.read_text(encoding="utf-8"), str(path)).data
    assert [e.message for e in validator.iter_errors(data)] == []


@pytest.mark.parametrize("case", REJECTED_BY_BOTH)
def test_invalid_documents_are_rejected_by_both(case: str, validator: jsonschema.Draft202012Validator) -> None:
    path = CASES / case / "spec.yaml"
    assert validate_file(str(path)).errors, "Pydantic accepted it"
    data = parse_spec(path.read_text(encoding="utf-8"), str(path)).data
    assert list(validator.iter_errors(data)), "the JSON Schema accepted it"


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_spec_names_the_schema_in_its_modeline(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    found = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert found, f"{path} does not start with the yaml-language-server modeline"
    assert (path.parent / found.group(1)).resolve() == SCHEMA_FILE


def test_vscode_maps_specs_and_examples_to_the_schema() -> None:
    settings = json.loads((ROOT / ".vscode" / "settings.json").read_text())
    assert settings["yaml.schemas"]["./schemas/experiment.schema.json"] == [
        "specs/**/*.yaml",
        "specs/**/*.yml",
        "examples/**/*.yaml",
        "examples/**/*.yml",
    ]


def _nodes(node: Any) -> list[dict[str, Any]]:
    """Every mapping in the schema, depth first."""
    if isinstance(node, dict):
        return [node, *(n for value in node.values() for n in _nodes(value))]
    if isinstance(node, list):
        return [n for value in node for n in _nodes(value)]
    return []


def test_no_hover_joins_identical_branches() -> None:
    # yaml-language-server titles a value that every anyOf branch matches "A || A" when the branches
    # cannot be told apart (no title, description or properties of their own): "Epochs || Epochs".
    for node in _nodes(build_schema()):
        branches = node.get("anyOf", [])
        untold = [b for b in branches if not ({"title", "description", "properties", "$ref"} & set(b))]
        types = [b.get("type") for b in branches]
        distinct = all(isinstance(t, str) for t in types) and len(set(types)) == len(types)  # no value matches two
        assert len(untold) <= 1 or distinct, branches


def test_a_nullable_setting_is_one_type_list_not_two_branches() -> None:
    epochs = build_schema()["$defs"]["TrainSection"]["properties"]["epochs"]
    assert epochs["type"] == ["integer", "null"] and "anyOf" not in epochs
    assert epochs["title"] == "Epochs"


def test_sections_are_titled_by_their_key_not_their_class() -> None:
    defs = build_schema()["$defs"]
    assert defs["TrainSection"]["title"] == "train"
    assert defs["MLPModel"]["title"] == "model (kind: mlp)"
    assert defs["LaunchSectionOverride"]["title"] == "launch (override)"
    assert [name for name, d in defs.items() if d["title"] == name] == []


def test_override_fields_have_titles_and_hover_text() -> None:
    run = build_schema()["$defs"]["RunOverride"]["properties"]
    assert run["launch"]["title"] == "launch (override)"
    assert run["launch"]["description"] == "Overrides of the top-level launch section."


def test_a_run_reference_has_its_own_hover_text_and_no_example_names() -> None:
    schema = build_schema()
    defs = schema["$defs"]
    baseline = schema["properties"]["baseline"]
    assert baseline["description"].startswith("The run other runs are reported against")
    references = [
        baseline,
        defs["RunOverride"]["properties"]["extends"],
        *(defs[e]["properties"]["run"] for e in ("SpeedupExpectation", "BoundExpectation", "CloseExpectation")),
        defs["RatioExpectation"]["properties"]["baseline"],
    ]
    for reference in references:
        assert "examples" not in json.dumps(reference), reference
        assert "folder name" not in reference["description"] + reference["title"], reference


def test_cross_field_rules_are_in_full_sections_not_in_overrides(validator: jsonschema.Draft202012Validator) -> None:
    base = parse_spec((CASES.parent / "valid-base.yaml").read_text(), "base").data
    both = {**base, "train": {**base["train"], "max_steps": 10}}
    assert [e.message for e in validator.iter_errors(both)] != []
    switched = {**base, "runs": {"steps": {"train": {"epochs": None, "max_steps": 10}}}}
    assert [e.message for e in validator.iter_errors(switched)] == []


@pytest.mark.parametrize(
    ("written", "accepted"), [("1e3", True), ("1000.0", True), ("1000.5", False), ('"1000"', False)]
)
def test_a_whole_number_written_as_a_float_is_one_for_both(
    written: str, accepted: bool, validator: jsonschema.Draft202012Validator
) -> None:
    text = (CASES.parent / "valid-base.yaml").read_text().replace("samples: 512", f"samples: {written}")
    result = validate_text(text, "spec.yaml")
    assert (result.errors == []) is accepted, [d.format() for d in result.errors]
    if result.spec is not None:
        samples = result.spec.runs["main"].config.data.samples
        assert samples == 1000 and type(samples) is int
    data = parse_spec(text, "spec.yaml").data
    assert (list(validator.iter_errors(data)) == []) is accepted


@pytest.mark.parametrize(
    ("name", "accepted"), [("summary.json", False), ("Report.MD", False), ("summary.json.old", False), ("report", True)]
)
def test_a_run_named_like_a_result_file_is_refused_by_both_in_any_case(
    name: str, accepted: bool, validator: jsonschema.Draft202012Validator
) -> None:
    text = (CASES.parent / "valid-base.yaml").read_text() + f"runs:\n  {name}: {{}}\n"
    assert (validate_text(text, "spec.yaml").errors == []) is accepted
    assert (list(validator.iter_errors(parse_spec(text, "spec.yaml").data)) == []) is accepted
