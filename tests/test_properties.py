"""Property tests: random valid specs are valid for Pydantic and the JSON Schema alike, and round-trip;
random breakages are rejected by both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.spec.load import parse_spec
from runner.spec.models import ExperimentSpec
from runner.spec.validate import validate_text
from runner.yamlout import dump_yaml, yaml_tree

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "experiment.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,12}", fullmatch=True)
finite = st.floats(min_value=1e-6, max_value=1.0, allow_nan=False, allow_infinity=False)


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    features = draw(st.integers(1, 64))
    classes = draw(st.integers(2, 12))
    processes = draw(st.integers(1, 4))
    batch = draw(st.integers(1, 64))
    accumulation = draw(st.integers(1, 4))
    # enough samples for at least 4 optimizer steps per epoch, so measure.warmup_steps (3) leaves some
    samples = batch * processes * accumulation * draw(st.integers(4, 20)) + draw(st.integers(0, 50))
    if draw(st.booleans()):
        model: dict[str, Any] = {"kind": "mlp", "input_dim": features, "classes": classes}
        if draw(st.booleans()):
            model["hidden"] = draw(st.lists(st.integers(1, 128), min_size=0, max_size=3))
        if draw(st.booleans()):
            model["activation"] = draw(st.sampled_from(["relu", "gelu", "silu", "tanh"]))
        if draw(st.booleans()):
            model["dropout"] = draw(st.floats(0, 0.9))
    else:
        model = {"kind": "linear", "input_dim": features, "classes": classes}
    optimizer = draw(
        st.one_of(
            st.fixed_dictionaries({"kind": st.just("adamw"), "lr": finite}, optional={"weight_decay": finite}),
            st.fixed_dictionaries({"lr": finite}),
            st.fixed_dictionaries({"kind": st.just("adam"), "lr": finite}),
            st.fixed_dictionaries({"kind": st.just("sgd"), "lr": finite}, optional={"momentum": st.floats(0, 0.99)}),
        )
    )
    train: dict[str, Any] = {"batch_size": batch, "gradient_accumulation_steps": accumulation, "optimizer": optimizer}
    train["epochs"] = draw(st.integers(1, 5))
    train["lr_schedule"] = draw(st.sampled_from(["constant", "linear", "cosine"]))
    launch: dict[str, Any] = {"processes": processes, "mixed_precision": draw(st.sampled_from(["no", "bf16"]))}
    spec: dict[str, Any] = {
        "name": draw(names),
        "model": model,
        "data": {"kind": "synthetic-classification", "samples": samples, "features": features, "classes": classes},
        "train": train,
        "launch": launch,
    }
    run_names = draw(st.lists(names, min_size=0, max_size=3, unique=True))
    if run_names:
        spec["runs"] = {name: draw(st.sampled_from([{}, {"launch": {"mixed_precision": "no"}}])) for name in run_names}
        if len(run_names) >= 2:
            spec["expect"] = [
                {"kind": "speedup", "run": run_names[1], "baseline": run_names[0], "at_least": 1.0},
                {"kind": "bound", "run": run_names[0], "metric": "accuracy", "at_least": 0.1},
            ]
    return spec


def as_yaml(data: dict[str, Any]) -> str:
    return dump_yaml(yaml_tree(data))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_random_valid_specs_are_valid_for_both_and_round_trip(spec: dict[str, Any]) -> None:
    text = as_yaml(spec)
    result = validate_text(text, "random.yaml")
    assert result.errors == [], [d.format() for d in result.errors]
    loaded = parse_spec(text, "random.yaml").data
    assert loaded == spec  # YAML out and back in changes nothing
    assert [e.message for e in VALIDATOR.iter_errors(loaded)] == []
    model = ExperimentSpec.model_validate(loaded)
    dumped = model.model_dump(mode="json", exclude_unset=True)
    assert ExperimentSpec.model_validate(dumped) == model
    assert [e.message for e in VALIDATOR.iter_errors(dumped)] == []


SECTIONS_WITH_CLOSED_KEYS = ["model", "data", "train", "launch"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs(), st.sampled_from(SECTIONS_WITH_CLOSED_KEYS), st.from_regex(r"[a-z]{3,10}_x", fullmatch=True))
def test_an_unknown_key_is_rejected_by_both(spec: dict[str, Any], section: str, key: str) -> None:
    spec[section][key] = 1
    result = validate_text(as_yaml(spec), "random.yaml")
    assert any(f"unknown key '{key}'" in d.message for d in result.errors)
    assert list(VALIDATOR.iter_errors(spec))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    valid_specs(),
    st.sampled_from([("launch", "mixed_precision"), ("train", "lr_schedule"), ("model", "kind"), ("launch", "device")]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8),
)
def test_a_bad_enum_value_is_rejected_by_both(spec: dict[str, Any], where: tuple[str, str], value: str) -> None:
    allowed = {"no", "fp16", "bf16", "constant", "linear", "cosine", "mlp", "auto", "cpu", "cuda"}
    if value in allowed:
        return
    section, key = where
    spec[section][key] = value
    result = validate_text(as_yaml(spec), "random.yaml")
    assert result.errors
    assert list(VALIDATOR.iter_errors(spec))
