"""A result's report: report.md and the plots written into its folder; `--report` rewrites them from summary.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.errors import ExitCode, MachineError, machine_error
from runner.jsonio import write_text_atomic
from runner.report.plots import write_plots
from runner.report.text import render
from runner.results.nofollow import require_real
from runner.results.summary import DamagedSummary, load_summary
from runner.session.rebuild import rebuild_summary
from runner.session.summary import exit_code_of
from runner.vocab import REPORT_FILE


def write_report(summary: dict[str, Any], folder: Path) -> tuple[str, list[str]]:
    """report.md and the plots into the result folder; returns the terminal text and notes for stderr."""
    try:
        plots, hint = write_plots(summary, folder)
    except OSError as exc:  # matplotlib writing a PNG onto a full disk
        raise machine_error(exc, "writing plots into", folder) from None
    write_text_atomic(folder / REPORT_FILE, render(summary, markdown=True, plots=plots))
    return render(summary, markdown=False, plots=plots), [hint] if hint else []


def rerender_report(result_dir: str) -> tuple[str, ExitCode]:
    """`--report`: the report of a result, rewritten from its summary.json, and the exit code it stands for."""
    folder = Path(result_dir)
    require_real(folder)  # report.md (and a rebuilt summary) are written into it
    summary, notes = load_or_rebuild(folder)
    try:
        text, hints = write_report(summary, folder)
    except MachineError as fault:  # a full disk: the report is still worth reading
        text, hints = render(summary, markdown=False), [f"{fault}; the report above was not saved"]
    return text + "".join(f"\n{note}\n" for note in [*notes, *hints]), exit_code_of(summary)


def load_or_rebuild(folder: Path) -> tuple[dict[str, Any], list[str]]:
    """summary.json, or when it is damaged, the summary rebuilt from the run folders (and a note saying so)."""
    try:
        return load_summary(folder), []
    except DamagedSummary as damage:
        summary, note = rebuild_summary(folder, str(damage))
        return summary, [note]
