"""Diagnostics as text (with the offending line and a caret in a terminal) or as JSON."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TextIO

from runner.errors import Diagnostic, Severity

_COLORS = {Severity.ERROR: "\033[1;31m", Severity.WARNING: "\033[1;35m"}
_BOLD, _CYAN, _RESET = "\033[1m", "\033[36m", "\033[0m"


def use_color(stream: TextIO) -> bool:
    """Colour and source excerpts only for a terminal, and never when NO_COLOR is set."""
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def format_diagnostic(diag: Diagnostic, source: str | None, *, excerpt: bool, color: bool) -> str:
    """One diagnostic: the GNU-style line, plus the source line and a caret when `excerpt`."""
    line = diag.format()
    if color:
        head, sep, message = line.partition(f": {diag.severity}: ")
        line = f"{_BOLD}{head}{_RESET}: {_COLORS[diag.severity]}{diag.severity}{_RESET}: {message}" if sep else line
    if not excerpt or source is None or diag.line is None:
        return line
    lines = source.splitlines()
    if not 0 < diag.line <= len(lines):
        return line
    text = lines[diag.line - 1]
    col = max(1, diag.col or 1)
    # Keep tabs in the caret line so it lines up under tabs in the source line.
    pad = "".join(ch if ch == "\t" else " " for ch in text[: col - 1])
    gutter = f"{diag.line:>5} | "
    caret = "^"
    if color:
        caret = f"{_COLORS[diag.severity]}^{_RESET}"
        gutter = f"{_CYAN}{gutter}{_RESET}"
    blank = " " * (len(f"{diag.line:>5}") + 1) + "| "
    if color:
        blank = f"{_CYAN}{blank}{_RESET}"
    return f"{line}\n{gutter}{text}\n{blank}{pad}{caret}"


def diagnostics_text(diagnostics: Sequence[Diagnostic], source: str | None, *, excerpt: bool, color: bool) -> list[str]:
    """Each diagnostic formatted; excerpts only when asked (a terminal)."""
    return [format_diagnostic(d, source, excerpt=excerpt, color=color) for d in diagnostics]


def plural(count: int, word: str) -> str:
    """'1 error', '2 errors'."""
    return f"{count} {word}" + ("" if count == 1 else "s")


def github_annotation(diag: Diagnostic) -> str:
    """A GitHub Actions workflow command that annotates the file: `::error file=F,line=L,col=C::message`.

    GitHub's escaping: '%', CR and LF in the message; also ':' and ',' in property values.
    """
    where = [f"file={_escape(diag.path, property_value=True)}"]
    if diag.line is not None:
        where.append(f"line={diag.line}")
        if diag.col is not None:
            where.append(f"col={diag.col}")
    return f"::{diag.severity}{' ' + ','.join(where)}::{_escape(diag.message, property_value=False)}"


def _escape(text: str, *, property_value: bool) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_value:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text
