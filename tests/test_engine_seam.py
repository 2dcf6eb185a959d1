"""The engine seam, proved from the tests alone: an engine registered here runs a real spec end to end.

The engine kind registry (runner.engines.kinds) names each kind's parts; this file registers its own
parts for kind `local` (a kind's section model is the spec's vocabulary, so a test engine takes
over an existing kind): its planning (this machine's, but always `accelerate launch`, and a dry run
that names the wrapper) and its runner, an engine that starts the launch's argv as a plain child
process through a wrapper of its own. Nothing under runner/ knows it exists: the session, compile,
preflight and --dry-run reach it through the registry, and the real worker trains and reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runner.cli import main
from runner.engines.base import Interrupts, JobUpdate, LaunchOutcome
from runner.engines.kinds import EngineKind, engine_kind, register
from runner.plan.engine_plan import DryRunText
from runner.plan.launch import LaunchPlan
from runner.plan.local import LocalPlanning
from runner.plan.quoting import join_line
from runner.spec.resolved import ResolvedRun
from runner.vocab import METRICS_FILE, STDERR_LOG, Status

SPEC = """\
name: seam
model: {kind: linear, input_dim: 10, classes: 10}
data: {kind: synthetic-classification, samples: 100, features: 10, classes: 10, teacher_hidden: 0}
train: {epochs: 2, batch_size: 10, optimizer: {kind: adam, lr: 0.001}, eval_samples: 100}
launch: {device: cpu}
measure: {warmup_steps: 1, attribution: false, repeats: 1}
runs:
  single: {}
expect:
  - {kind: bound, run: single, metric: optimizer_steps, at_least: 20, at_most: 20}
"""

# The wrapper every launch of this engine runs under: it writes a line to the launch folder, then
# becomes the launch's argv (so the real `accelerate launch` and the real worker run).
WRAPPER = (
    "import os, sys; open(os.path.join(sys.argv[1], 'wrapped.txt'), 'w').write('wrapped'); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)
LAUNCHER = "seam-wrapper"


class WrappedPlanning(LocalPlanning):
    """This machine's planning, with `accelerate launch` always (no fork server) and the wrapper in --dry-run."""

    def launcher(self, run: ResolvedRun) -> str | None:
        return "accelerate"

    def describe(self, plan: LaunchPlan, run: ResolvedRun) -> DryRunText:
        return DryRunText(" through the test's wrapper", (join_line([sys.executable, "-c", "WRAPPER", *plan.argv]),))


PLANNING = WrappedPlanning()


class WrappedEngine:
    """Runs each launch as one child process under WRAPPER and waits for it."""

    name = "local"
    launched: list[str] = []  # the runs this engine launched, in order (read by the tests)

    def run(
        self,
        plan: LaunchPlan,
        *,
        timeout_s: float | None,
        interrupts: Interrupts,
        on_progress: Callable[[int, int, str], None] | None = None,
        on_job: Callable[[JobUpdate], None] | None = None,
        job_id: str | None = None,
    ) -> LaunchOutcome:
        begun = time.monotonic()
        with open(plan.directory / STDERR_LOG, "w", encoding="utf-8") as log:
            done = subprocess.run(
                [sys.executable, "-c", WRAPPER, str(plan.directory), *plan.argv],
                env=plan.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
        WrappedEngine.launched.append(plan.run)
        wall = time.monotonic() - begun
        if done.returncode != 0 or not (plan.directory / METRICS_FILE).is_file():
            return LaunchOutcome(Status.FAILED, done.returncode, wall, f"exit code {done.returncode}")
        return LaunchOutcome(Status.OK, 0, wall, launcher=LAUNCHER)

    def close(self) -> None:
        """Nothing is held."""


def start(runs: list[ResolvedRun]) -> WrappedEngine:
    """The kind's runner: what start_engines calls for the session's runs of this kind."""
    return WrappedEngine()


@pytest.fixture
def wrapped_local() -> Iterator[None]:
    """Kind local's parts replaced by this file's for one test; the registry is put back after."""
    previous = register(
        EngineKind("local", "this machine, wrapped", planning=f"{__name__}:PLANNING", runner=f"{__name__}:start")
    )
    assert previous is not None
    WrappedEngine.launched.clear()
    try:
        yield
    finally:
        register(previous)


def write_spec(tmp_path: Path) -> Path:
    path = tmp_path / "seam.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


@pytest.mark.slow  # a real launch (about 7 s): torch and accelerate start in the child
def test_an_engine_registered_in_a_test_runs_a_real_spec_end_to_end(
    wrapped_local: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([str(write_spec(tmp_path)), "--output", str(tmp_path / "results"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert WrappedEngine.launched == ["single"]
    (summary_path,) = (tmp_path / "results" / "seam").glob("*/summary.json")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    (launch,) = summary["runs"]["single"]["repeats"]
    assert launch["status"] == "ok" and launch["launcher"] == LAUNCHER
    assert (summary_path.parent / launch["directory"] / "wrapped.txt").read_text(encoding="utf-8") == "wrapped"
    # the real worker trained and reported: 100 samples / batch 10 x 2 epochs
    assert launch["metrics"]["optimizer_steps"] == 20
    assert [e["verdict"] for e in summary["expectations"]] == ["pass"]


def test_the_dry_run_says_what_the_registered_planning_says(
    wrapped_local: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--dry-run", str(write_spec(tmp_path)), "--output", str(tmp_path / "results")])
    out = capsys.readouterr().out
    assert code == 0
    assert "# run 'single' (1 process(es) through the test's wrapper, cpu, fp32)" in out
    assert f"{sys.executable} -c WRAPPER " in out
    assert WrappedEngine.launched == []


def test_the_registry_is_put_back() -> None:
    assert engine_kind("local").runner == "runner.engines.local:start"


def test_the_word_for_a_submitted_launch_comes_from_the_kinds_that_submit() -> None:
    from runner.engines.kinds import job_word
    from runner.results.summary import engine_kinds

    assert job_word(["slurm"]) == "SLURM job"
    # summary.json's environment.engine, as a session writes it
    assert job_word(engine_kinds({"environment": {"engine": "local, slurm"}})) == "SLURM job"
    assert job_word(["local"]) == "job"  # no kind that submits
    assert job_word(["gone"]) == "job"  # a kind registered where the result was written, not here
    previous = register(EngineKind("local", "this machine, as a queue", planning="-", runner="-", jobs="queue entry"))
    try:
        assert job_word(["local"]) == "queue entry"
        assert job_word(["local", "slurm"]) == "job"  # two words: none of them is the one
    finally:
        assert previous is not None
        register(previous)
