"""Turn Pydantic validation errors into compiler-style messages located in the YAML source.

Pydantic's `loc` names model fields but also union tags and validator names; we walk it along
the actual data to find the key the user wrote, and phrase each error type for a person
("unknown key 'precison' in launch (did you mean 'mixed_precision'?)").
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from runner.errors import KeyPath


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    if not close and isinstance(word, str):
        lowered = {str(c).lower(): str(c) for c in choices}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return f" (did you mean '{close[0]}'?)" if close else ""


def quoted_list(values: Sequence[Any]) -> str:
    """'a', 'b', 'c'"""
    return ", ".join(f"'{v}'" for v in values)


class Finding(typing.NamedTuple):
    """One validation problem: the data path it concerns, whether it points at the key, the message."""

    path: KeyPath
    at_key: bool
    message: str


def findings_from(error: ValidationError, data: Any, root: type[BaseModel], prefix: KeyPath = ()) -> list[Finding]:
    """Every error of a Pydantic validation of `data` against `root`, located and phrased."""
    return [_finding(detail, data, root, prefix) for detail in error.errors(include_url=False)]


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
        hint = did_you_mean(str(key), allowed) if allowed else ""
        if allowed and not hint:
            hint = f"; allowed here: {', '.join(allowed)}"
        return Finding(path, True, f"unknown key '{key}'{where}{hint}")
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
        return Finding(path, False, f"{field} must be a mapping of keys to values, not {_describe(value)}")
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
    return f"invalid value {shown} for {field}{did_you_mean(str(value), allowed)}; allowed: {quoted_list(allowed)}"


def _pattern_message(field: str, value: Any, pattern: str) -> str:
    from runner.spec.models import NAME_PATTERN, NAME_RULE

    if pattern == NAME_PATTERN:
        return f"invalid name {value!r} for {field}: use {NAME_RULE} (it becomes a folder name)"
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


_PHRASES: dict[str, Callable[[str, Any, dict[str, Any]], str]] = {
    "int_type": lambda f, v, c: f"{f} must be a whole number, got {_describe(v)}",
    "int_parsing": lambda f, v, c: f"{f} must be a whole number, got {_describe(v)}",
    "int_from_float": lambda f, v, c: f"{f} must be a whole number, got {_describe(v)}",
    "int_parsing_size": lambda f, v, c: f"{f} is far too large a number, got {_describe(v)}",
    "float_type": lambda f, v, c: f"{f} must be a number, got {_describe(v)}",
    "float_parsing": lambda f, v, c: f"{f} must be a number, got {_describe(v)}",
    "finite_number": lambda f, v, c: f"{f} must be a finite number, got {_describe(v)}",
    "bool_type": lambda f, v, c: f"{f} must be true or false, got {_describe(v)}",
    "bool_parsing": lambda f, v, c: f"{f} must be true or false, got {_describe(v)}",
    "string_type": lambda f, v, c: f"{f} must be text, got {_describe(v)}",
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
