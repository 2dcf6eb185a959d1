"""Stage 1, load: read a YAML spec into plain data, keeping the line and column of every key and value.

The loader is the first line of defence against hostile files: it bounds the file size, the
nesting depth and the number of values an alias-laden document expands to, and it turns every
YAML problem into one located diagnostic instead of a traceback. It never constructs arbitrary
Python objects: only plain scalars, mappings and lists come out; any other YAML tag is an error.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver

from runner.errors import Diagnostic, KeyPath, Severity, SpecError

MAX_FILE_BYTES = 1 << 20  # a spec is a page of YAML; 1 MiB leaves a hundredfold margin
MAX_VALUES = 20_000  # values, counted before parsing and again after alias expansion ("billion laughs")
MAX_DEPTH = 64  # nesting depth: a spec needs about 5

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Span:
    """A 1-based position in the source text."""

    line: int
    col: int


@dataclass(frozen=True)
class Document:
    """A loaded spec: plain data (dicts, lists, scalars) and where each piece came from."""

    path: str
    text: str
    data: dict[str, Any]
    key_spans: Mapping[KeyPath, Span]
    value_spans: Mapping[KeyPath, Span]
    # values set on the command line (--set): document path -> the option as typed, which locates them
    origins: Mapping[KeyPath, str] = field(default_factory=dict)

    def origin(self, key_path: KeyPath) -> str | None:
        """The --set option that wrote `key_path` or an ancestor of it, if one did."""
        path = tuple(key_path)
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.origins:
                return self.origins[path[:cut]]
        return None

    def span(self, key_path: KeyPath, *, of_key: bool = False) -> Span:
        """Where `key_path` is written; its nearest written ancestor if it is not (a missing key)."""
        spans = self.key_spans if of_key else self.value_spans
        path = tuple(key_path)
        while path:
            if path in spans:
                return spans[path]
            if not of_key and path in self.key_spans:
                return self.key_spans[path]
            path = path[:-1]
        return Span(1, 1)


def _error(path: str, message: str, span: Span = Span(1, 1), key_path: KeyPath = ()) -> SpecError:
    return SpecError([Diagnostic(path, span.line, span.col, Severity.ERROR, message, key_path)])


def read_spec_text(path: str) -> str:
    """Read a spec file as text: size-bounded, UTF-8 (a BOM is accepted), one located error otherwise."""
    file = Path(path)
    try:
        if file.is_dir():
            raise _error(path, "is a directory, not a spec file (give the path of a .yaml file)")
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            raise _error(
                path,
                f"file is {size / 2**20:.1f} MiB; a spec file may be at most "
                f"{MAX_FILE_BYTES // 2**20} MiB (is this really a spec?)",
            )
        raw = file.read_bytes()
    except FileNotFoundError:
        raise _error(path, "no such file") from None
    except PermissionError:
        raise _error(path, "permission denied: cannot read this file") from None
    except OSError as exc:
        raise _error(path, f"cannot read this file: {exc.strerror or exc}") from None
    return decode_spec_bytes(raw, path)


def decode_spec_bytes(raw: bytes, path: str) -> str:
    """Decode UTF-8 (BOM stripped); a non-UTF-8 byte is reported at its line and column."""
    if len(raw) > MAX_FILE_BYTES:
        raise _error(path, f"text is {len(raw)} bytes; a spec may be at most {MAX_FILE_BYTES} bytes")
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line_start = before.rfind(b"\n") + 1
        col = len(before[line_start:].decode("utf-8", errors="replace")) + 1
        span = Span(before.count(b"\n") + 1, col)
        byte = raw[exc.start]
        raise _error(
            path, f"not UTF-8 text: byte 0x{byte:02x} cannot be decoded (save the file as UTF-8)", span
        ) from None


def parse_spec(text: str, path: str) -> Document:
    """Parse YAML text into a Document whose data is a mapping with string keys.

    ruamel.yaml composes the node graph (with its C parser when ruamel.yaml.clib is installed:
    about 5x faster than the pure-Python round-trip loader); we build the data from the nodes,
    so every key and value keeps its line and column, and nothing but plain scalars, mappings
    and lists can come out.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    if len(text) > MAX_FILE_BYTES:
        raise _error(path, f"text is {len(text)} characters; a spec may be at most {MAX_FILE_BYTES}")
    problem = _structure_problem(text) or _version_problem(text)
    if problem is not None:  # found before parsing: the parser would crash, or take seconds
        message, span = problem
        raise _error(path, message, span)
    yaml = YAML(typ="safe")
    yaml.Resolver = _Yaml12Resolver
    try:
        root = yaml.compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise _error(path, _yaml_message(exc, text), _mark_span(mark)) from None
    except ReaderError as exc:
        char = chr(exc.character) if isinstance(exc.character, int) else str(exc.character)
        raise _error(
            path,
            f"invalid character {char!r} (code {ord(char[:1] or ' '):#06x}) is not allowed in YAML; "
            "is this a binary file?",
            _offset_span(text, exc.position),
        ) from None
    except RecursionError:
        raise _error(path, f"nesting is too deep (a spec needs about 5 levels; limit {MAX_DEPTH})") from None
    if root is None:
        raise _error(path, "file is empty: a spec needs at least 'name', 'model', 'data' and 'train'")
    if not isinstance(root, MappingNode):
        raise _error(
            path, f"a spec must be a mapping of keys to values, not {_kind_of(root)}", _mark_span(root.start_mark)
        )
    builder = _Builder(path, yaml.constructor)
    data = builder.value(root, (), 0)
    return Document(path, text, data, builder.key_spans, builder.value_spans)


def parse_value(text: str, origin: str) -> Any:
    """One YAML value, as a --set option gives it (`4`, `bf16`, `[1, 2]`, `{kind: sgd}`); empty text is null.

    Read like a spec (YAML 1.2, plain values only); an error is a diagnostic located at `origin`.
    """
    if len(text) > MAX_FILE_BYTES:
        raise _error(origin, f"the value is {len(text)} characters; at most {MAX_FILE_BYTES}")
    problem = _structure_problem(text)
    yaml = YAML(typ="safe")
    yaml.Resolver = _Yaml12Resolver
    try:
        if problem is not None:
            raise _error(origin, problem[0])
        root = yaml.compose(text)
        return None if root is None else _Builder(origin, yaml.constructor).value(root, (), 0)
    except MarkedYAMLError as exc:
        message = _yaml_message(exc, text)
    except (ReaderError, RecursionError) as exc:
        message = f"invalid YAML: {exc}"
    except SpecError as exc:
        message = exc.diagnostics[0].message
    raise SpecError([Diagnostic(origin, None, None, Severity.ERROR, message)])


def _version_problem(text: str) -> tuple[str, Span] | None:
    """A `%YAML 1.1` directive: the file asks for a reading accel-run does not give it.

    accel-run reads every spec as YAML 1.2; an editor (and any YAML library) honours the directive
    and reads an unquoted `no` as false, so the two would disagree about the same file.
    """
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("%YAML"):
            version = (line.split("#", 1)[0].split() + [""])[1]
            if version != "1.2":
                return (
                    f"the file asks for YAML {version or '(no version)'} (%YAML directive), but accel-run reads every "
                    "spec as YAML 1.2, where no, yes, on and off are text; a YAML 1.1 reader, your editor among "
                    "them, reads them as false and true: remove the directive",
                    Span(number, 1),
                )
        elif line.strip() and not line.startswith(("#", "%")):
            return None  # directives come before the document
    return None


class _Yaml12Resolver(VersionedResolver):
    """Always YAML 1.2, where an unquoted `no` is text (a `%YAML 1.1` directive is refused before parsing).

    Fixing the version also spares ruamel.yaml a version lookup for every scalar (a third of
    the time of validating a spec, measured with cProfile on specs/day6.yaml).
    """

    @property
    def processing_version(self) -> Any:
        return (1, 2)


_MAP, _SEQ, _MERGE = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:merge"
_STR = "tag:yaml.org,2002:str"
_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}


class _Builder:
    """Builds plain data from ruamel's node graph, recording spans, within the limits."""

    def __init__(self, path: str, constructor: Any) -> None:
        self.path = path
        self.constructor = constructor
        self.key_spans: dict[KeyPath, Span] = {}
        self.value_spans: dict[KeyPath, Span] = {}
        self.count = 0

    def tag_error(self, node: Any, key_path: KeyPath) -> SpecError:
        tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
        return self.fail(f"YAML tag '{tag}' is not allowed in a spec (write plain values)", node, key_path)

    def fail(self, message: str, node: Any, key_path: KeyPath) -> SpecError:
        return _error(self.path, message, _mark_span(node.start_mark), key_path)

    def value(self, node: Any, key_path: KeyPath, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise self.fail(
                f"the document expands to more than {MAX_VALUES} values through YAML aliases "
                "('billion laughs'); a spec needs a few dozen",
                node,
                key_path,
            )
        if depth > MAX_DEPTH:
            raise self.fail(f"nesting is too deep (a spec needs about 5 levels; limit {MAX_DEPTH})", node, key_path)
        tag = node.tag
        if isinstance(node, MappingNode):
            if tag != _MAP:
                raise self.tag_error(node, key_path)
            return self.mapping(node, key_path, depth)
        if isinstance(node, SequenceNode):
            if tag != _SEQ:
                raise self.tag_error(node, key_path)
            items = []
            for index, item in enumerate(node.value):
                child = (*key_path, index)
                self.key_spans[child] = self.value_spans[child] = _mark_span(item.start_mark)
                items.append(self.value(item, child, depth + 1))
            return items
        if tag not in _SCALAR_TAGS:
            raise self.tag_error(node, key_path)
        if tag == _STR:
            return str(node.value)
        try:
            return _scalar(self.constructor.construct_object(node))
        except (MarkedYAMLError, ValueError, OverflowError) as exc:
            raise self.fail(
                f"cannot read the value {node.value!r}: {getattr(exc, 'problem', exc)}", node, key_path
            ) from None

    def mapping(self, node: Any, key_path: KeyPath, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges = []
        for key_node, value_node in node.value:
            key_tag = key_node.tag
            if key_tag == _MERGE:
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode) or key_tag != _STR:
                shown = key_node.value if isinstance(key_node, ScalarNode) else "a collection"
                raise self.fail(f"key {shown!r} must be text; quote it", key_node, key_path)
            key = str(key_node.value)
            child = (*key_path, key)
            if key in out:
                first = self.key_spans[child].line
                raise self.fail(
                    f"duplicate key '{key}' (first defined on line {first}); each key may appear once per mapping",
                    key_node,
                    child,
                )
            self.key_spans[child] = _mark_span(key_node.start_mark)
            self.value_spans[child] = _mark_span(value_node.start_mark)
            out[key] = self.value(value_node, child, depth + 1)
        for merge in merges:  # `<<: *anchor` fills keys not written explicitly
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, MappingNode):
                    raise self.fail("'<<' merges mappings only", source, key_path)
                for key_node, value_node in source.value:
                    key = str(key_node.value)
                    if key_node.tag == _MERGE or key in out:
                        continue
                    child = (*key_path, key)
                    self.key_spans[child] = _mark_span(key_node.start_mark)
                    self.value_spans[child] = _mark_span(value_node.start_mark)
                    out[key] = self.value(value_node, child, depth + 1)
        return out


def _structure_problem(text: str) -> tuple[str, Span] | None:
    """Nesting deeper than MAX_DEPTH, or more than MAX_VALUES values, found by one linear scan.

    Runs before any parser. ruamel.yaml's C parser recurses once per nesting level and crashes
    the process (a segmentation fault) on some 100,000 nested brackets, and composing a megabyte
    of dense flow values takes seconds. Counts flow brackets and separators outside quotes and
    comments, and block levels (indentation steps and leading '- ' items): an upper-bound estimate.
    """
    too_deep = f"nesting is too deep (a spec needs about 5 levels; limit {MAX_DEPTH})"
    too_many = f"the file holds more than {MAX_VALUES} values; a spec needs a few hundred"
    indents: list[int] = []
    flow = values = 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip(" ")
        if flow == 0 and stripped and not stripped.startswith("#"):
            indent = len(line) - len(stripped)
            while indents and indents[-1] >= indent:
                indents.pop()
            indents.append(indent)
            dashes = len(_DASHES.match(stripped).group(0).split("-")) - 1  # type: ignore[union-attr]
            values += 2 + dashes
            if len(indents) + dashes > MAX_DEPTH:
                return too_deep, Span(number, indent + 1)
            if values > MAX_VALUES:
                return too_many, Span(number, indent + 1)
        if "[" not in line and "{" not in line and not flow:
            continue
        quote = ""
        for column, char in enumerate(line, start=1):
            if quote:
                if char == quote:
                    quote = ""
            elif char in "'\"":
                quote = char
            elif char == "#" and (column == 1 or line[column - 2] in " \t"):
                break
            elif char in "[{":
                flow += 1
                if len(indents) + flow > MAX_DEPTH:
                    return too_deep, Span(number, column)
            elif char in "]}":
                flow = max(0, flow - 1)
            elif char in ",:":
                values += 1
                if values > MAX_VALUES:
                    return too_many, Span(number, column)
    return None


_DASHES = re.compile(r"(?:-[ ]+)*")


def _scalar(value: Any) -> Any:
    """Constructed scalars as plain JSON-like values (dates become ISO text)."""
    if isinstance(value, _dt.date | _dt.datetime):
        return value.isoformat()
    return value


def _kind_of(node: Any) -> str:
    if isinstance(node, SequenceNode):
        return "a list"
    return f"a single value ({str(node.value)[:40]!r})"


def _mark_span(mark: Any) -> Span:
    if mark is None:
        return Span(1, 1)
    return Span(mark.line + 1, mark.column + 1)


def _offset_span(text: str, offset: int) -> Span:
    before = text[:offset]
    return Span(before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1)


def _yaml_message(exc: MarkedYAMLError, text: str) -> str:
    problem = (exc.problem or "").strip()
    mark = exc.problem_mark
    if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
        return "tab character: YAML indentation must use spaces, not tabs"
    if "found another document" in problem:
        return "a spec file holds one YAML document, but a second one starts here ('---')"
    if "undefined alias" in problem:
        return f"invalid YAML: {problem} (an '*alias' needs an '&anchor' defined before it)"
    context = (exc.context or "").strip()
    if context and exc.context_mark is not None and exc.problem_mark is not None:
        if exc.context_mark.line != exc.problem_mark.line:
            return f"invalid YAML: {problem} ({context} on line {exc.context_mark.line + 1})"
    return f"invalid YAML: {problem}" if problem else f"invalid YAML: {exc}"


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.splitlines()
    return lines[line][column : column + 1] if 0 <= line < len(lines) else ""
