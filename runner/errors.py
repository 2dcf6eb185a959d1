"""The error model: located diagnostics, the exceptions that carry them, exit codes."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

KeyPath = tuple[str | int, ...]


class ExitCode(enum.IntEnum):
    """Process exit codes, one meaning each (documented in `accel-run --help`)."""

    OK = 0
    FAILED = 1  # an expectation failed, or --validate found errors
    USAGE = 2  # bad command line, or an invalid spec when running
    RUN_FAILED = 3  # a run crashed or timed out
    INTERNAL = 4  # a bug in accel-run
    INTERRUPTED = 130


class Severity(enum.StrEnum):
    """How bad a diagnostic is; warnings become errors under --strict."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Diagnostic:
    """One finding about a file, located 1-based like a compiler's (line/col None: whole file)."""

    path: str
    line: int | None
    col: int | None
    severity: Severity
    message: str
    key_path: KeyPath = ()

    def format(self) -> str:
        """GNU style: `PATH:LINE:COL: SEVERITY: MESSAGE`."""
        where = self.path if self.line is None else f"{self.path}:{self.line}:{self.col}"
        return f"{where}: {self.severity}: {self.message}"

    def as_json(self) -> dict[str, object]:
        """The same facts as `format`, plus the key path, for `--format json`."""
        return {
            "path": self.path,
            "line": self.line,
            "col": self.col,
            "severity": str(self.severity),
            "message": self.message,
            "key_path": list(self.key_path),
        }


class AccelRunError(Exception):
    """Base of every error accel-run reports to the user without a traceback."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(AccelRunError):
    """The command line asks for something impossible."""


class SpecError(AccelRunError):
    """A spec file has errors; carries every diagnostic found, not just the first."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        first = self.diagnostics[0].format() if self.diagnostics else "invalid spec"
        super().__init__(first)


class PreflightError(AccelRunError):
    """The machine cannot run the spec as written (checked before any process starts)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class ResultError(AccelRunError):
    """A result folder is missing, damaged or does not match its spec."""


class MachineError(AccelRunError):
    """The machine failed the session: a full disk, a result folder deleted under it, an I/O error."""

    exit_code = ExitCode.RUN_FAILED


def machine_error(exc: OSError, doing: str, path: object = None) -> MachineError:
    """'no space left on device while writing results/x/summary.json' from an OSError."""
    cause = (exc.strerror or str(exc)).lower() if exc.strerror else str(exc)
    where = path if path is not None else exc.filename
    return MachineError(f"{cause} while {doing} {where}" if where else f"{cause} while {doing}")


def sorted_unique(diagnostics: Sequence[Diagnostic]) -> list[Diagnostic]:
    """Diagnostics in source order, exact repeats dropped (one base error seen by several runs)."""
    unique: dict[tuple[object, ...], Diagnostic] = {}
    for diag in diagnostics:
        unique.setdefault((diag.line, diag.col, diag.severity, diag.message), diag)
    return sorted(unique.values(), key=lambda d: (d.line or 0, d.col or 0))
