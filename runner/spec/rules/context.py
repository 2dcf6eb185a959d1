"""What every rule reports through: one document's diagnostics, located, with acknowledged warnings dropped."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from runner.errors import Diagnostic, KeyPath, Severity
from runner.spec.diagnose import findings_from
from runner.spec.models import whole_numbers

if TYPE_CHECKING:
    from runner.spec import advice
    from runner.spec.load import Document
    from runner.spec.resolved import ResolvedRun


def _child(node: Any, key: str) -> Any:
    """`node[key]` when `node` is a mapping, else None."""
    return node.get(key) if isinstance(node, dict) else None


def _warning_names(value: Any) -> list[str]:
    """The warning names of an `acknowledge:` list as written (an invalid one is Pydantic's to report)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


class Checker:
    """Collects diagnostics for one document."""

    def __init__(self, document: Document) -> None:
        self.doc = document
        self.data = whole_numbers(document.data)
        self.diagnostics: list[Diagnostic] = []
        self.claimed: set[KeyPath] = set()  # paths already explained better than Pydantic would

    @property
    def has_errors(self) -> bool:
        """Whether an error has been reported (warnings do not count)."""
        return any(d.severity is Severity.ERROR for d in self.diagnostics)

    def report(
        self,
        doc_path: KeyPath,
        message: str,
        *,
        severity: Severity = Severity.ERROR,
        at_key: bool = False,
        code: str | None = None,
        acknowledged: Sequence[str] = (),
    ) -> None:
        """Record a diagnostic at `doc_path`; a warning with a `code` the spec acknowledges is dropped."""
        if doc_path in self.claimed:
            return
        if code is not None:
            if code in acknowledged or code in _warning_names(self.data.get("acknowledge")):
                return
            message = f"{message} [acknowledge: {code}]"
        option = self.doc.origin(doc_path)
        if option is not None:  # written by --set: the option locates it
            self.diagnostics.append(Diagnostic(option, None, None, severity, message, doc_path))
            return
        span = self.doc.span(doc_path, of_key=at_key)
        self.diagnostics.append(Diagnostic(self.doc.path, span.line, span.col, severity, message, doc_path))

    def validate(
        self, model: type[BaseModel], data: Any, locate: Callable[[KeyPath], KeyPath], prefix: KeyPath = ()
    ) -> Any:
        """`data` validated by `model`, or None after reporting each of Pydantic's errors where it was written."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for finding in findings_from(exc, data, model, prefix):
                self.report(locate(finding.path), finding.message, at_key=finding.at_key)
            return None

    def run_report(
        self,
        run: ResolvedRun,
        rel: KeyPath,
        message: str,
        *,
        severity: Severity = Severity.ERROR,
        also: tuple[KeyPath, ...] = (),
        code: str | None = None,
    ) -> None:
        """Report a rule broken inside a run: named after the run when an override is involved."""
        involved = (rel, *also)
        overridden = [p for p in involved if run.overridden(p)]
        written = [p for p in involved if p in run.sources]
        where = (overridden or written or [rel])[0]
        prefix = f"run '{run.name}': " if overridden else ""
        acknowledged = self.acknowledged_by(run)
        self.report(run.source(where), prefix + message, severity=severity, code=code, acknowledged=acknowledged)

    def acknowledged_by(self, run: ResolvedRun) -> list[str]:
        """The warnings a run acknowledges (`acknowledge:` in its own entry under runs)."""
        return _warning_names(_child(_child(self.data.get("runs"), run.name), "acknowledge"))

    def advise(self, run: ResolvedRun, found: advice.Advice | None) -> None:
        """Report a piece of advice (advice.py) inside a run, when there is one."""
        if found is not None:
            self.run_report(run, found.rel, found.message, severity=found.severity, also=found.also, code=found.code)
