"""The editor schema's rules: what the models' validators check, as JSON Schema, in the CLI's words.

yaml-language-server shows a schema's `errorMessage` (and `patternErrorMessage`) in place of its
generic text, so each rule here carries the sentence accel-run itself prints (models.RULE_*).
Three kinds of rule:

- between keys of one section (exactly one of epochs and max_steps, fp16 needs a GPU, ...), in the
  full sections and, where both keys sit inside one run override, in the override too;
- a tagged union (`model`, `optimizer`, an expectation) dispatched on `kind` by if/then: the
  `kind` is checked against every tag with a message of its own, and the fields of the kind
  written apply (a `oneOf` lets the editor guess the branch and report the guess's errors);
- the regular expressions of names, GPU lists and SLURM times, explained instead of shown.

A rule that points at a key (a section a script workload does not have) uses a `false` property
schema: the editor underlines the key, as the CLI does.
"""

from __future__ import annotations

import re
from typing import Any

from runner.spec.diagnose import quoted_list
from runner.spec.models import (
    BUILTIN_SECTIONS,
    FSDP_ON_CPU,
    GPU_IDS_PATTERN,
    NAME_PATTERN,
    NAME_RULE,
    RULE_ACCURACY_FRACTION,
    RULE_EVAL_BOTH,
    RULE_FP16_ON_CPU,
    RULE_LENGTH_BOTH,
    RULE_LENGTH_NEITHER,
    RULE_NO_BOUND,
    RULE_NO_TOLERANCE,
    RULE_VISIBLE_DEVICES_AND_GPU_IDS,
    SLURM_TIME_PATTERN,
    SLURM_TIME_RULE,
    rule_script_excludes,
)
from runner.spec.rules.names import RESULT_FOLDER_NAMES, RESULT_FOLDER_RULE
from runner.vocab import SUMMARY_FILE

Schema = dict[str, Any]

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

# Regular expressions a person should never be shown: what to write instead.
PATTERN_MESSAGES = {
    NAME_PATTERN: f"invalid name: use {NAME_RULE} (it becomes a folder name)",
    GPU_IDS_PATTERN: "not a list of GPU indices; write e.g. '0,1' or [0, 1] (ASCII commas: '，' is a full-width comma)",
    SLURM_TIME_PATTERN: f"not a time SLURM accepts: use {SLURM_TIME_RULE}, or a number of minutes (e.g. '01:30:00')",
    ENV_NAME_PATTERN: "invalid environment variable name: letters, digits and '_', not starting with a digit",
}
# The same patterns as the keys of a mapping (`runs`, `launch.env`).
KEY_MESSAGES = {
    NAME_PATTERN: f"invalid run name: use {NAME_RULE} (it becomes a folder name)",
    ENV_NAME_PATTERN: PATTERN_MESSAGES[ENV_NAME_PATTERN],
}


def when_both(first: str, first_type: str, second: str, second_type: str, message: str) -> Schema:
    """Both keys set (not null): the second is flagged with `message`."""
    return {
        "if": {
            "required": [first, second],
            "properties": {first: {"type": first_type}, second: {"type": second_type}},
        },
        "then": {"properties": {second: {"type": "null", "errorMessage": message}}},
    }


def when_neither(first: str, second: str, value_type: str, message: str) -> Schema:
    """Neither key set (absent or null): the mapping is flagged with `message`."""
    return {
        "if": {"properties": {first: {"type": "null"}, second: {"type": "null"}}},
        "then": {
            "required": [first],
            "properties": {first: {"type": value_type, "errorMessage": message}},
            "errorMessage": message,
        },
    }


def _fp16_on_cpu() -> Schema:
    return {
        "if": {
            "required": ["mixed_precision", "device"],
            "properties": {"mixed_precision": {"const": "fp16"}, "device": {"const": "cpu"}},
        },
        "then": {"properties": {"mixed_precision": {"enum": ["no", "bf16"], "errorMessage": RULE_FP16_ON_CPU}}},
    }


def _fsdp_on_cpu() -> Schema:
    return {
        "if": {
            "required": ["fsdp", "device"],
            "properties": {"fsdp": {"type": "object"}, "device": {"const": "cpu"}},
        },
        "then": {"properties": {"fsdp": {"type": "null", "errorMessage": FSDP_ON_CPU}}},
    }


def _accuracy_is_a_fraction() -> Schema:
    """accuracy above 1 (40 meaning 40%): on at_least, or on at_most when there is none, as the CLI checks it."""
    message = f"{RULE_ACCURACY_FRACTION} (write 0.4 for 40%)"

    def at_most_one(key: str) -> Schema:  # a `maximum` would show the editor's own words, not errorMessage
        above = {"type": "number", "exclusiveMinimum": 1}
        return {"properties": {key: {"if": above, "then": {"type": "null", "errorMessage": message}}}}

    accuracy = {"metric": {"const": "accuracy"}}
    return {
        "if": {"required": ["metric", "at_least"], "properties": {**accuracy, "at_least": {"type": "number"}}},
        "then": at_most_one("at_least"),
        "else": {"if": {"required": ["metric"], "properties": accuracy}, "then": at_most_one("at_most")},
    }


def _visible_devices_beside_gpu_ids() -> Schema:
    """CUDA_VISIBLE_DEVICES in launch.env while gpu_ids names GPUs (all and null name none): the variable is flagged."""
    every_gpu = {"anyOf": [{"type": "null"}, {"type": "string", "pattern": "^ *all *$"}]}
    return {
        "if": {
            "required": ["env", "gpu_ids"],
            "properties": {"env": {"required": ["CUDA_VISIBLE_DEVICES"]}, "gpu_ids": {"not": every_gpu}},
        },
        "then": {
            "properties": {
                "env": {
                    "properties": {
                        "CUDA_VISIBLE_DEVICES": {"type": "null", "errorMessage": RULE_VISIBLE_DEVICES_AND_GPU_IDS}
                    }
                }
            }
        },
    }


def _run_names() -> Schema:
    """The keys of `runs`: a name that can be a folder, and not the name of a file of the result folder."""
    taken = [_any_case(name) for name in sorted(RESULT_FOLDER_NAMES)]
    return {
        "allOf": [
            {"pattern": NAME_PATTERN, "patternErrorMessage": KEY_MESSAGES[NAME_PATTERN]},
            {
                "pattern": f"^(?!(?:{'|'.join(taken)})$|{_any_case(SUMMARY_FILE)})",
                "patternErrorMessage": f"this run name {RESULT_FOLDER_RULE}",
            },
        ]
    }


def _any_case(text: str) -> str:
    """'a.b' -> '[aA]\\.[bB]': JavaScript and Python regular expressions share no flag syntax."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in text)


def _script_excludes(section: str, prefix: str = "") -> Schema:
    """A script workload beside a built-in section (not null): the section's key is flagged."""
    return {
        "if": {
            "required": ["script", section],
            "properties": {"script": {"type": "object"}, section: {"not": {"type": "null"}}},
        },
        "then": {"properties": {section: False}, "errorMessage": prefix + rule_script_excludes(section)},
    }


_BOUNDED = [when_neither("at_least", "at_most", "number", RULE_NO_BOUND)]
_LENGTH_BOTH = when_both("epochs", "integer", "max_steps", "integer", RULE_LENGTH_BOTH)
_EVAL_BOTH = when_both("eval_samples", "integer", "eval_split", "number", RULE_EVAL_BOTH)

# The cross-field rules the models' validators enforce, by definition name: in the full sections...
CROSS_FIELD_RULES: dict[str, list[Schema]] = {
    "TrainSection": [_LENGTH_BOTH, when_neither("epochs", "max_steps", "integer", RULE_LENGTH_NEITHER), _EVAL_BOTH],
    "LaunchSection": [_fp16_on_cpu(), _fsdp_on_cpu(), _visible_devices_beside_gpu_ids()],
    "SpeedupExpectation": _BOUNDED,
    "BoundExpectation": [*_BOUNDED, _accuracy_is_a_fraction()],
    "RatioExpectation": _BOUNDED,
    "CloseExpectation": [when_neither("rel_tol", "abs_tol", "number", RULE_NO_TOLERANCE)],
}
# ... and inside one run override, where both keys written there end up in the merged run.
OVERRIDE_RULES: dict[str, list[Schema]] = {
    "TrainSectionOverride": [_LENGTH_BOTH, _EVAL_BOTH],
    "LaunchSectionOverride": [_fp16_on_cpu(), _fsdp_on_cpu(), _visible_devices_beside_gpu_ids()],
    "RunOverride": [_script_excludes(section) for section in BUILTIN_SECTIONS],
}
TOP_LEVEL_RULES: list[Schema] = [_script_excludes(section) for section in BUILTIN_SECTIONS]


def dispatch_by_kind(node: Schema, defs: dict[str, Any]) -> None:
    """Every tagged union below `node` (a `oneOf`/`anyOf` of models with a `kind`) rewritten as if/then on `kind`."""
    if isinstance(node, dict):
        dispatched = False
        for key in ("oneOf", "anyOf"):
            tags = _tags(node.get(key), defs)
            if tags is not None:
                _dispatch(node, key, tags, defs)
                dispatched = True
                break
        for key, value in list(node.items()):
            if not (dispatched and key == "allOf"):  # the rules just made hold the union's own references
                dispatch_by_kind(value, defs)
    elif isinstance(node, list):
        for value in node:
            dispatch_by_kind(value, defs)


def _tags(alternatives: Any, defs: dict[str, Any]) -> dict[str, str] | None:
    """tag -> $ref when every alternative (null aside) is a model with a constant `kind`; else None."""
    if not isinstance(alternatives, list):
        return None
    refs = [a.get("$ref") for a in alternatives if a != {"type": "null"}]
    if len(refs) < 2 or not all(isinstance(ref, str) for ref in refs):
        return None
    tags: dict[str, str] = {}
    for ref in refs:
        name = ref.rsplit("/", 1)[-1].removesuffix("Override")
        tag = defs.get(name, {}).get("properties", {}).get("kind", {}).get("const")
        if not isinstance(tag, str):
            return None
        tags[tag] = ref
    return tags


def _dispatch(node: Schema, key: str, tags: dict[str, str], defs: dict[str, Any]) -> None:
    alternatives = node.pop(key)
    node.pop("discriminator", None)
    nullable = {"type": "null"} in alternatives
    partial = all(ref.endswith("Override") for ref in tags.values())  # in a run: kind may be left out
    first = defs[next(iter(tags.values())).rsplit("/", 1)[-1]]
    label = str(first.get("title", "section")).split(" (")[0]  # 'model (kind: mlp)' -> 'model'
    default = next(
        (tag for tag, ref in tags.items() if defs[ref.rsplit("/", 1)[-1]]["properties"]["kind"].get("default") == tag),
        None,
    )
    node["properties"] = {
        "kind": {
            "title": "Kind",  # the hover of `kind:` is the chosen model's own
            "enum": list(tags),
            "errorMessage": f"unknown kind for {label}; allowed: {quoted_list(list(tags))}",
        }
    }
    rules: list[Schema] = []
    for tag, ref in tags.items():
        condition: Schema = {"type": "object", "properties": {"kind": {"const": tag}}}
        if partial or tag != default:  # an absent kind means the default (adamw), in a run the top level's
            condition["required"] = ["kind"]
        rules.append({"if": condition, "then": {"$ref": ref}})
    if partial:
        any_kind = {"anyOf": [{"$ref": ref} for ref in tags.values()]}
        rules.append({"if": {"type": "object", "not": {"required": ["kind"]}}, "then": any_kind})
    elif default is None:
        needs_kind = f"{label} needs a 'kind', one of {quoted_list(list(tags))}"
        rules.append({"if": {"type": "object"}, "then": {"required": ["kind"], "errorMessage": needs_kind}})
    mapping = ["object", "null"] if nullable else "object"
    for tag in tags:  # `optimizer: adamw`: a kind written without its mapping
        message = (
            f"{label} must be a mapping of keys to values, not the text '{tag}': write {label}: {{kind: {tag}}} "
            "(its other settings go in the same mapping)"
        )
        rules.append({"if": {"const": tag}, "then": {"type": mapping, "errorMessage": message}})
    rules.append(
        {
            "if": {"not": {"enum": list(tags)}},
            "then": {"type": mapping, "errorMessage": f"{label} must be a mapping of keys to values"},
        }
    )
    node["allOf"] = [*node.get("allOf", []), *rules]


def explain_patterns(node: Any) -> None:
    """Give every `pattern` this module can explain its `patternErrorMessage`."""
    if isinstance(node, dict):
        pattern = node.get("pattern")
        if isinstance(pattern, str) and pattern in PATTERN_MESSAGES:
            node.setdefault("patternErrorMessage", PATTERN_MESSAGES[pattern])
        for value in node.values():
            explain_patterns(value)
    elif isinstance(node, list):
        for value in node:
            explain_patterns(value)


def name_the_runs(runs: Schema) -> None:
    """The `runs` mapping's keys checked as the CLI checks run names."""
    runs["propertyNames"] = _run_names()


def close_pattern_keys(node: Any) -> None:
    """A mapping whose keys follow one pattern (`runs`, `launch.env`): other keys refused, the pattern explained.

    Pydantic puts a key pattern in patternProperties, which leaves other keys allowed; `propertyNames`
    refuses them with one message (`additionalProperties: false` would add a second, generic one).
    """
    if isinstance(node, dict):
        patterns = node.get("patternProperties")
        if (
            isinstance(patterns, dict)
            and len(patterns) == 1
            and "properties" not in node
            and "propertyNames" not in node
        ):
            pattern = next(iter(patterns))
            names: Schema = {"pattern": pattern}
            if pattern in KEY_MESSAGES:
                names["patternErrorMessage"] = KEY_MESSAGES[pattern]
            node["propertyNames"] = names
        for value in node.values():
            close_pattern_keys(value)
    elif isinstance(node, list):
        for value in node:
            close_pattern_keys(value)
