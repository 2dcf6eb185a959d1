"""The command line is total: main(argv) returns an exit code for every input, never raises SystemExit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TINY_SPEC
from runner.cli import main
from runner.plan.worker_plan import WorkerPlan


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "accel-run: error: give a spec file (for instance specs/day6.yaml), or see --help"),
        (["a.yaml", "b.yaml"], "accel-run: error: give one spec (several are accepted only with --validate)"),
        (["--report", "r", "a.yaml"], "accel-run: error: --report takes a result folder, not a spec"),
        (["--resume", "r", "a.yaml"], "accel-run: error: --resume takes a result folder, not a spec"),
        (
            ["--resume", "r", "--engine", "local"],
            "accel-run: error: --resume reruns a result as it was started: --only, --repeats, --engine and --output "
            "cannot change it",
        ),
        (["--repeats", "0", "a.yaml"], "accel-run: error: argument --repeats: must be at least 1, got 0"),
        (["--bogus"], "accel-run: error: unrecognized arguments: --bogus"),
    ],
)
def test_every_usage_error_returns_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: accel-run")
    assert err.splitlines()[-1] == message


def test_help_returns_0_and_ends_with_runnable_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "accel-run specs/day6-quick.yaml" in out.split("examples:")[1]


def test_explain_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    assert main(["--explain", str(spec)]) == 0
    assert "run 'main'" in capsys.readouterr().out


SHIPPED = sorted([*ROOT.glob("specs/*.yaml"), *ROOT.glob("examples/*.yaml")])


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_spec_compiles_in_a_dry_run(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--dry-run", str(path), "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    folder = next((tmp_path).glob("*/*"))
    launched = [line for line in out.splitlines() if " launch --config_file " in line]
    assert launched and len(launched) == len([d for d in folder.iterdir() if d.is_dir()])
    for run in (d for d in folder.iterdir() if d.is_dir()):
        written = {p.name for p in run.iterdir()}
        slurm = {"job.sbatch"} if "engine:\n  kind: slurm" in path.read_text() else set()
        assert written == {"accelerate_config.yaml", "command.txt", "plan.json", *slurm}
        assert WorkerPlan.read(run / "plan.json").run == run.name  # what the worker will read back


def test_a_folder_name_that_is_not_utf8_is_written_and_printed_as_its_bytes(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    output = os.fsencode(tmp_path) + b"/latin1-\xe9t\xe9"  # a folder named in Latin-1
    command = [sys.executable, "-m", "runner", "--dry-run", str(spec), "--output", output]
    done = subprocess.run(command, cwd=ROOT, capture_output=True)  # bytes: the output holds the real name
    assert done.returncode == 0, done.stderr
    assert b"latin1-\xe9t\xe9/tiny/" in done.stdout
    (folder,) = Path(os.fsdecode(output), "tiny").iterdir()
    assert (folder / "main" / "command.txt").read_bytes().count(b"latin1-\xe9t\xe9") >= 2
