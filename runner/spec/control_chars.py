"""Control characters in a spec: refused, located, before anything is written.

Spec values end up in files a person reads and reruns: command.txt (its comments list the
environment, its last line is a command), job.sbatch (a shell script: `#SBATCH` lines, exports,
setup lines) and the report. A newline there ends a comment or an `#SBATCH` line and starts a
line of shell (`launch.env: {FOO: "x\\ntouch /tmp/pwned"}` did exactly that); a carriage return
or an escape sequence hides text on a terminal. So every text of a spec, key or value, must be
free of control characters; only the prose of a `description` may have line breaks and tabs.
Standard library only: validation stays light.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from runner.errors import KeyPath

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators (str.splitlines breaks on them)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PROSE_ALLOWED = frozenset("\n\t")
_PROSE_KEYS = frozenset({"description"})  # free text for the report: line breaks and tabs are fine there
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")  # what str.splitlines breaks at

_NAMES = {
    "\n": "a line break (\\n)",
    "\r": "a carriage return (\\r)",
    "\t": "a tab (\\t)",
    "\x00": "a NUL character (\\x00)",
    "\x1b": "an escape character (\\x1b)",
}


def first_control(text: str, allowed: frozenset[str] = frozenset()) -> str | None:
    """The first control character of `text` that is not `allowed`, or None."""
    for match in CONTROL.finditer(text):
        if match.group() not in allowed:
            return match.group()
    return None


def describe(char: str) -> str:
    """'a line break (\\n)', 'the control character U+0085 (NEXT LINE)'."""
    if char in _NAMES:
        return _NAMES[char]
    name = unicodedata.name(char, "")
    return f"the control character U+{ord(char):04X}" + (f" ({name})" if name else "")


def label(path: KeyPath) -> str:
    """('runs', 'a', 'launch', 'env', 'FOO') -> 'runs.a.launch.env.FOO'; list items as [i]."""
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")


def findings(data: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, bool, str]]:
    """(path, whether it is the key, message) for every key or text of `data` holding a control character."""
    if isinstance(data, dict):
        for key, value in data.items():
            here = (*path, key)
            if isinstance(key, str):
                char = first_control(key)
                if char is not None:
                    yield here, True, _message(f"the key {key!r} in {label(path) or 'the spec'}", char)
                    continue  # the key is refused: its value is not looked at
            if isinstance(value, str):
                allowed = _PROSE_ALLOWED if key in _PROSE_KEYS else frozenset()
                char = first_control(value, allowed)
                if char is not None:
                    yield here, False, _message(label(here), char)
            else:
                yield from findings(value, here)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            here = (*path, index)
            if isinstance(value, str):
                char = first_control(value)
                if char is not None:
                    yield here, False, _message(label(here), char)
            else:
                yield from findings(value, here)


def _message(what: str, char: str) -> str:
    where = "command.txt, job.sbatch or the report"
    if char in _LINE_BREAKS:
        effect, fix = f"would start a new line in {where} (a line of shell, in a script)", "write it on one line"
    else:
        effect, fix = f"can hide or rewrite text in {where}", "remove it"
    return f"{what} contains {describe(char)}, which {effect}; {fix}"
