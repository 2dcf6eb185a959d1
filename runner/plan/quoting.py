"""Words for the shell files accel-run writes (command.txt, job.sbatch): always quoted, always on one line.

shlex.quote keeps a newline inside its quotes: safe where a shell reads the word, but in a
comment or an `#SBATCH` line the newline ends the line and the rest becomes shell. Validation
refuses control characters in spec values (runner.spec.control_chars); what reaches these files
from elsewhere (an inherited variable, a path given on the command line) is written here as a
bash ANSI-C string, $'...', with every control character escaped: one line, and the same value
when bash reads it.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from runner.spec.control_chars import CONTROL

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", "'": "\\'"}


def quote_line(word: str) -> str:
    """One shell word on one line: shlex.quote, or $'...' with escapes when `word` holds a control character."""
    if CONTROL.search(word) is None:
        return shlex.quote(word)
    return "$'" + "".join(_ESCAPES.get(char) or _escaped(char) for char in word) + "'"


def join_line(words: Iterable[str]) -> str:
    """A command line that stays one line (shlex.join, with quote_line's words)."""
    return " ".join(quote_line(word) for word in words)


def _escaped(char: str) -> str:
    if CONTROL.match(char) is None:
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"  # bash writes \\x80.. as raw bytes
