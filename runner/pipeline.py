"""The main job as the CLI calls it: validated spec -> preflight -> launches -> checks -> report.

The work is runner.session's: a session's state (session.state), its loop and --resume
(session.run), one launch (session.launch), --dry-run (session.dry_run), summary.json's content
and exit and resume rules (session.summary) and the report (session.report). Each engine kind's
own part is reached through runner.engines.kinds.
"""

from __future__ import annotations

from runner.session.dry_run import DryRun, DryRunLaunch, dry_run
from runner.session.report import rerender_report
from runner.session.run import resume, run_spec
from runner.session.state import RunOptions, SessionResult

__all__ = ["DryRun", "DryRunLaunch", "RunOptions", "SessionResult", "dry_run", "rerender_report", "resume", "run_spec"]
