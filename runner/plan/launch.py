"""A compiled launch as frozen data: argv, environment and the files to write first (made by runner.plan.compile)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runner.contract import Declared
from runner.plan.quoting import join_line


@dataclass(frozen=True)
class LaunchPlan:
    """Everything one launch needs: argv, environment, the files to write first."""

    run: str
    repeat: int
    directory: Path
    argv: tuple[str, ...]
    env: dict[str, str]  # the full environment of the launcher process
    env_set: dict[str, str]  # what accel-run set or changed, for command.txt
    env_dropped: tuple[str, ...]  # inherited ACCELERATE_* variables left out (hermetic runs)
    port: int
    declared: Declared
    files: dict[str, str] = field(default_factory=dict)  # file name -> text
    launch_args: tuple[str, ...] = ()  # what follows `accelerate launch` in argv
    launcher: str = "accelerate"  # "fork": the session's fork server runs these launch_args (launch.launcher)

    @property
    def command_line(self) -> str:
        """The command as a shell would take it, on one line (for display; it is never run through a shell)."""
        return join_line(self.argv)
