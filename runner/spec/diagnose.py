"""Turn Pydantic validation errors into compiler-style messages located in the YAML source.

Pydantic's `loc` names model fields but also union tags and validator names; we walk it along
the actual data to find the key the user wrote, and phrase each error type for a person
("unknown key 'precison' in launch (did you mean 'mixed_precision'?)").
"""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from runner.errors import KeyPath


def closest(word: str, choices: Sequence[str]) -> str | None:
    """The choice `word` was most likely meant to be, or None when nothing is close."""
    import difflib  # only a spec with a mistake needs it: a valid one is checked without

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    if not close and isinstance(word, str):
        lowered = {str(c).lower(): str(c) for c in choices}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return close[0] if close else None


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    return suggestion(closest(word, choices))


def suggestion(meant: str | None) -> str:
    """' (did you mean 'x'?)', or '' for None."""
    return f" (did you mean '{meant}'?)" if meant is not None else ""


def quoted_list(values: Sequence[Any]) -> str:
    """'a', 'b', 'c'"""
    return ", ".join(f"'{v}'" for v in values)


class Finding(typing.NamedTuple):
    """One validation problem: the data path it concerns, whether it points at the key, the message."""

    path: KeyPath
    at_key: bool
    message: str
    meant: str = ""  # an unknown key's did-you-mean: the key it was most likely meant to be


def findings_from(error: ValidationError, data: Any, root: type[BaseModel], prefix: KeyPath = ()) -> list[Finding]:
    """Every error of a Pydantic validation of `data` against `root`, located and phrased.

    A union reports one error per alternative (`int | 'auto'`, `section | null`); a value gets one
    message, the first, and "should be null" is dropped where the value's own errors say more.
    """
    details = error.errors(include_url=False)
    deeper = [d["loc"] for d in details if d["type"] != "none_required"]
    phrased = [(detail, _finding(detail, data, root, prefix)) for detail in sorted(details, key=_told_first)]
    # a misspelt required key ('vocab_size' for 'vocab') is told once, as the unknown key with its did-you-mean
    meant = {(finding.path[:-1], finding.meant) for _, finding in phrased if finding.meant}
    findings: list[Finding] = []
    seen: set[KeyPath] = set()
    for detail, finding in phrased:
        loc = detail["loc"]
        if detail["type"] == "none_required" and any(o[: len(loc) - 1] == loc[:-1] for o in deeper):
            continue
        if detail["type"] == "missing" and (finding.path, str(loc[-1])) in meant:
            continue
        if not finding.at_key:
            if finding.path in seen:
                continue
            seen.add(finding.path)
        findings.append(finding)
    return findings


def _told_first(detail: ErrorDetails) -> bool:
    """Sort key: of a union's errors for one value, the one to tell comes first (False sorts first).

    Text for `int | 'auto'` is told the allowed words ('autox': "did you mean 'auto'?"), unless it is
    a number in quotes ('5': "write 5 without quotes").
    """
    value = detail.get("input")
    if detail["type"] != "literal_error" or not isinstance(value, str):
        return True
    try:
        float(value)
    except ValueError:
        return False
    return True


def _finding(detail: ErrorDetails, data: Any, root: type[BaseModel], prefix: KeyPath) -> Finding:
    kind = detail["type"]
    path, is_key_error = _data_path(detail["loc"], data, keep_last=kind == "missing")
    ctx: dict[str, Any] = dict(detail.get("ctx") or {})
    if "field" in ctx:  # our model validators name the field the rule is about
        path = (*path, ctx["field"])
    value = detail.get("input")
    field = _field_label(path, prefix)
    phrase = _PHRASES.get(kind)
    if kind == "extra_forbidden":
        parent, key = path[:-1], path[-1]
        allowed = _fields_at(root, parent, data)
        where = f" in {_field_label(parent, prefix)}" if parent or prefix else ""
        hint = _right_place(path, _child_at(data, path))
        meant = closest(str(key), allowed) if allowed and not hint else None
        if meant is not None:
            hint = suggestion(meant)
        elif allowed and not hint:
            hint = f"; allowed here: {', '.join(allowed)}"
        return Finding(path, True, f"unknown key '{key}'{where}{hint}", meant or "")
    if kind == "missing":
        parent, key = path[:-1], path[-1]
        where = f" in {_field_label(parent, prefix)}" if parent or prefix else " at the top level"
        return Finding(parent, True, f"missing required key '{key}'{where}")
    if is_key_error:
        return Finding(path, True, _key_message(path, value, detail["msg"]))
    if kind == "literal_error":
        return Finding(path, False, _literal_message(field, value, ctx.get("expected", "")))
    if kind in ("union_tag_invalid", "optimizer_kind"):
        tags = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        if not isinstance(value, dict) and value is not None:
            return Finding(path, False, _not_a_mapping(field, value, tags))
        tag = ctx.get("tag", value.get("kind") if isinstance(value, dict) else value)
        if tag is None or tag == "None":
            return Finding(path, True, f"{field} needs a 'kind', one of {quoted_list(tags)}")
        return Finding(
            (*path, "kind"),
            False,
            f"unknown kind '{tag}' for {field}{did_you_mean(str(tag), tags)}; allowed: {quoted_list(tags)}",
        )
    if kind == "union_tag_not_found":
        tags = _union_tags(root, path, data)
        return Finding(path, True, f"{field} needs a 'kind', one of {quoted_list(tags)}")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return Finding(path, False, _not_a_mapping(field, value, _union_tags(root, path, data)))
    if kind == "string_pattern_mismatch":
        return Finding(path, False, _pattern_message(field, value, str(ctx.get("pattern", ""))))
    if kind in ("value_error", "assertion_error"):
        message = re.sub(r"^(Value|Assertion) error, ", "", detail["msg"])
        return Finding(path, False, message if path[-1:] == ("gpu_ids",) else f"{field}: {message}")
    if kind == "spec_rule":
        return Finding(path, "field" not in ctx, str(ctx.get("message", "")))
    if phrase is not None:
        return Finding(path, False, phrase(field, value, ctx))
    return Finding(path, False, f"{field}: {detail['msg']}")


def _field_label(path: KeyPath, prefix: KeyPath = ()) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in (*prefix, *path)]
    return ".".join(parts).replace(".[", "[") or "the spec"


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the text {value[:60]!r}"
    return repr(value)


def _literal_message(field: str, value: Any, expected: str) -> str:
    allowed = re.findall(r"'([^']*)'", expected) or re.findall(r"(\d+)", expected)
    if field.endswith("mixed_precision") and value is False:
        return (
            f"{field} is false, which is not a precision: write no (accel-run reads YAML 1.2, "
            "where no is text); a YAML 1.1 reader such as PyYAML would turn an unquoted no into false"
        )
    shown = f"'{value}'" if isinstance(value, str) else _describe(value)
    if field.endswith("mixed_precision") and str(value).lower() in _FULL_PRECISION:
        return (
            f"invalid value {shown} for {field}: full precision (fp32) is written no, as in Accelerate "
            f"(mixed_precision: no); allowed: {quoted_list(allowed)}"
        )
    return f"invalid value {shown} for {field}{did_you_mean(str(value), allowed)}; allowed: {quoted_list(allowed)}"


_FULL_PRECISION = ("fp32", "float32", "32", "full", "none", "off", "float", "tf32")


def _not_a_mapping(field: str, value: Any, tags: Sequence[str]) -> str:
    """A scalar or list where a section belongs; `optimizer: adamw` is a kind written without its mapping."""
    import difflib  # an error's message: a valid spec never imports it

    message = f"{field} must be a mapping of keys to values, not {_describe(value)}"
    key = field.rsplit(".", 1)[-1]
    if isinstance(value, str) and tags:
        kind = value if value in tags else next(iter(difflib.get_close_matches(value, tags, n=1, cutoff=0.6)), None)
        if kind is not None:
            return f"{message}: write {key}: {{kind: {kind}}} (its other settings go in the same mapping)"
    return message


# Accelerate's multi-machine keys: a local run is one machine, and SLURM's allocation decides the rest
_MACHINE_KEYS = ("num_machines", "machine_rank", "main_process_ip")
_MACHINES_HINT = (
    ": accel-run runs several machines through the SLURM engine, whose allocation gives each node its "
    "rank and the main node's address; write engine: {kind: slurm, nodes: N} (see the README, "
    "'Run on a SLURM cluster')"
)


def _right_place(path: KeyPath, value: Any) -> str:
    """'; it belongs in launch: write launch: {processes: 2}' for a known setting written in the wrong section."""
    from runner.spec.models import RunConfig

    key = path[-1]
    if key in _MACHINE_KEYS and "launch" in path:
        nodes = value if key == "num_machines" and isinstance(value, int) and value > 1 else "N"
        return _MACHINES_HINT.replace("nodes: N", f"nodes: {nodes}")
    base = 2 if path[:1] == ("runs",) and len(path) > 2 else 0  # inside a run, sections start under its name
    here = path[base:-1]
    places = [p for p in _setting_places(RunConfig).get(str(key), []) if p[:-1] != here]
    sections = sorted({".".join(str(part) for part in p[:-1]) for p in places})
    if key == "kind" or not places or len(sections) > 2:
        return ""
    if len(sections) > 1:
        return f"; it belongs in {' or '.join(sections)}"
    place = places[0]
    nested = place[len(here) :] if place[: len(here)] == here else place
    hint = f"; it belongs in {sections[0]}"
    if isinstance(value, str | int | float | bool) and not isinstance(value, list):
        written = _flow(nested, value)
        hint += f": write {written}"
    return hint


def _flow(path: KeyPath, value: Any) -> str:
    """('launch', 'processes'), 2 -> 'launch: {processes: 2}'."""
    text = _scalar(value)
    for part in reversed(path[1:]):
        text = f"{{{part}: {text}}}"
    return f"{path[0]}: {text}"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and (value in ("no", "yes", "true", "false", "null", "") or ":" in value):
        return f"'{value}'"
    return str(value)


@functools.cache
def _setting_places(root: type[BaseModel]) -> dict[str, list[KeyPath]]:
    """Every setting name -> the paths where it is allowed under `root` (two levels of sections deep)."""
    places: dict[str, list[KeyPath]] = {}

    def walk(model: type[BaseModel], prefix: KeyPath, depth: int) -> None:
        for name, info in model.model_fields.items():
            places.setdefault(name, [])
            if (*prefix, name) not in places[name]:
                places[name].append((*prefix, name))
            if depth < 2:
                for alternative in _unwrap(info.annotation):
                    if isinstance(alternative, type) and issubclass(alternative, BaseModel):
                        walk(alternative, (*prefix, name), depth + 1)

    walk(root, (), 0)
    return {name: [p for p in paths if len(p) > 1] for name, paths in places.items()}


def _child_at(data: Any, path: KeyPath) -> Any:
    node = data
    for part in path:
        node = _child(node, part)
    return node


def _pattern_message(field: str, value: Any, pattern: str) -> str:
    from runner.spec.models import NAME_PATTERN, NAME_RULE, OPTION_PATTERN, SLURM_TIME_PATTERN, SLURM_TIME_RULE

    if pattern == NAME_PATTERN:
        return f"invalid name {value!r} for {field}: use {NAME_RULE} (it becomes a folder name)"
    if pattern == SLURM_TIME_PATTERN:
        return f"{field} {value!r} is not a time SLURM accepts: use {SLURM_TIME_RULE} (e.g. '01:30:00')"
    if pattern == OPTION_PATTERN:
        return f"{field} {value!r} is not an option: write it as your script's parser takes it (--{value})"
    return f"{field} {value!r} does not match the pattern {pattern}"


def _key_message(path: KeyPath, value: Any, msg: str) -> str:
    from runner.spec.models import NAME_RULE

    key = path[-1] if path else value
    where = _field_label(path[:-1])
    if where == "runs":
        return f"invalid run name {str(key)!r}: use {NAME_RULE} (it becomes a folder name)"
    if where.endswith("env") or where.endswith("pass_env"):
        return f"invalid environment variable name {str(key)!r} in {where}"
    return f"invalid key {str(key)!r} in {where}: {msg}"


def _bound(name: str) -> Callable[[str, Any, dict[str, Any]], str]:
    symbol = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[name]

    def phrase(field: str, value: Any, ctx: dict[str, Any]) -> str:
        return f"{field} must be {symbol} {ctx.get(name)}, got {_describe(value)}"

    return phrase


_TRUE_WORDS = ("yes", "y", "on", "true", "1")
_FALSE_WORDS = ("no", "n", "off", "false", "0")


def _number_message(field: str, value: Any, whole: bool) -> str:
    """A number was expected; say what to write instead of the text or boolean given (nothing is coerced)."""
    noun = "a whole number" if whole else "a number"
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return f"{field} must be a finite number, got {_describe(value)}"
    if isinstance(value, bool):
        return f"{field} must be {noun}, got {_describe(value)} (a boolean is not a number: write the number itself)"
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return f"{field} must be {noun}, got {_describe(value)}"
        if number == number and (not whole or number.is_integer()):
            return f"{field} must be {noun}, got {_describe(value)} (write {text} without quotes)"
    return f"{field} must be {noun}, got {_describe(value)}"


def _bool_message(field: str, value: Any) -> str:
    """true or false was expected; name the one the user meant when the text says it."""
    word = str(value).strip().lower() if isinstance(value, str | int) else None
    hint = ""
    if word in _TRUE_WORDS:
        hint = " (write true)"
    elif word in _FALSE_WORDS:
        hint = " (write false)"
    return f"{field} must be true or false, got {_describe(value)}{hint}"


_PHRASES: dict[str, Callable[[str, Any, dict[str, Any]], str]] = {
    "int_type": lambda f, v, c: _number_message(f, v, whole=True),
    "int_parsing": lambda f, v, c: f"{f} must be a whole number, got {_describe(v)}",
    "int_from_float": lambda f, v, c: f"{f} must be a whole number, got {_describe(v)}",
    "int_parsing_size": lambda f, v, c: f"{f} is far too large a number, got {_describe(v)}",
    "float_type": lambda f, v, c: _number_message(f, v, whole=False),
    "float_parsing": lambda f, v, c: f"{f} must be a number, got {_describe(v)}",
    "finite_number": lambda f, v, c: f"{f} must be a finite number, got {_describe(v)}",
    "bool_type": lambda f, v, c: _bool_message(f, v),
    "bool_parsing": lambda f, v, c: f"{f} must be true or false, got {_describe(v)}",
    "string_type": lambda f, v, c: (
        f"{f} must be text, got {_describe(v)}"
        + (f" (write '{_describe(v)}' in quotes)" if isinstance(v, int | float) else "")
    ),
    "list_type": lambda f, v, c: f"{f} must be a list, got {_describe(v)}",
    "tuple_type": lambda f, v, c: f"{f} must be a list, got {_describe(v)}",
    "too_short": lambda f, v, c: f"{f} needs at least {c.get('min_length')} item(s), got {c.get('actual_length')}",
    "too_long": lambda f, v, c: f"{f} allows at most {c.get('max_length')} item(s)",
    "string_too_long": lambda f, v, c: f"{f} allows at most {c.get('max_length')} characters",
    "greater_than_equal": _bound("ge"),
    "greater_than": _bound("gt"),
    "less_than_equal": _bound("le"),
    "less_than": _bound("lt"),
}


def _data_path(loc: Sequence[str | int], data: Any, *, keep_last: bool) -> tuple[KeyPath, bool]:
    """Pydantic's loc as a path through the data: tags and validator names dropped.

    Returns the path and whether the error is about a mapping key itself (loc ends in '[key]').
    """
    path: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if part == "[key]":
            return tuple(path), True
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif last and keep_last:
            path.append(part)
    return tuple(path), False


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete alternatives of an annotation: Annotated and Optional peeled, unions split."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_unwrap(arg))
        return [a for a in out if a is not type(None)]
    return [annotation]


def _model_for(annotation: Any, node: Any) -> type[BaseModel] | None:
    """The model class an annotation resolves to for this data (by `kind` among union members)."""
    models = [a for a in _unwrap(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    if len(models) <= 1:
        return models[0] if models else None
    kind = node.get("kind") if isinstance(node, dict) else None
    for model in models:
        field = model.model_fields.get("kind")
        if field is None:
            continue
        tags = typing.get_args(_unwrap(field.annotation)[0])
        if kind in tags or (kind is None and field.default in tags):
            return model
    return None


def _annotation_at(root: type[BaseModel], path: KeyPath, data: Any) -> tuple[Any, Any]:
    """The type annotation governing `path`, and the data there ((None, None) when unknown)."""
    annotation: Any = root
    node = data
    for part in path:
        model = _model_for(annotation, node)
        if model is not None and isinstance(part, str):
            if part not in model.model_fields:
                return None, None
            annotation = model.model_fields[part].annotation
        else:  # a list index or a dict key: step into the item type
            annotation = _container_item(annotation)
            if annotation is None:
                return None, None
        node = _child(node, part)
    return annotation, node


def _fields_at(root: type[BaseModel], path: KeyPath, data: Any) -> list[str]:
    """The keys allowed in the mapping at `path` (empty when it cannot be told)."""
    annotation, node = _annotation_at(root, path, data)
    model = _model_for(annotation, node) if annotation is not None else None
    return list(model.model_fields) if model is not None else []


def _union_tags(root: type[BaseModel], path: KeyPath, data: Any) -> list[str]:
    """The `kind` values allowed at `path`, for a tagged union."""
    annotation, _ = _annotation_at(root, path, data)
    tags: list[str] = []
    for alternative in _unwrap(annotation) if annotation is not None else []:
        if isinstance(alternative, type) and issubclass(alternative, BaseModel) and "kind" in alternative.model_fields:
            tags.extend(typing.get_args(_unwrap(alternative.model_fields["kind"].annotation)[0]))
    return tags


def _container_item(annotation: Any) -> Any:
    for alternative in _unwrap(annotation):
        args = typing.get_args(alternative)
        if typing.get_origin(alternative) in (list, dict) and args:
            return args[-1]
    return None


def _child(node: Any, part: str | int) -> Any:
    """node[part] when it exists, else None."""
    if isinstance(node, list):
        return node[part] if isinstance(part, int) and 0 <= part < len(node) else None
    if isinstance(node, dict):
        return node.get(part)
    return None
