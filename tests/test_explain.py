"""`--explain` shows each run as its difference from the baseline; --full, --only and --format json; --dry-run
honours --only and --format json too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT
from runner.cli import main

QUICK = str(ROOT / "specs" / "day6-quick.yaml")


def explain_out(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["--explain", QUICK, *args]) == 0
    return capsys.readouterr().out


def test_each_run_is_its_difference_from_the_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    out = explain_out(capsys)
    assert out.startswith("# day6-quick: 6 run(s), baseline 'single'\n")
    single, dual, bf16 = out.split("---\n")[1:4]
    assert "  mixed_precision: 'no'\n" in single  # the baseline in full
    assert dual.endswith("run: dual\nlaunch:\n  processes: 2                          # single: 1\n")
    assert bf16.endswith("run: single-bf16\nlaunch:\n  mixed_precision: bf16                 # single: 'no'\n")
    assert "#   global batch: 128 = batch_size 64 x 2 process(es) x 1 accumulation\n" in dual


def test_full_prints_every_run_resolved(capsys: pytest.CaptureFixture[str]) -> None:
    out = explain_out(capsys, "--full", "--only", "dual")
    assert "# single: 1" not in out
    assert "launch:\n  processes: 2\n  mixed_precision: 'no'\n" in out
    assert out.count("---\n") == 1


def test_only_picks_runs_and_an_unknown_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    out = explain_out(capsys, "--only", "large,dual")
    assert [line for line in out.splitlines() if line.startswith("# run '")] == [
        "# run 'dual': train_simple, 2 processes (global batch 128)",
        "# run 'large': train_large (31.5M parameters), 1 process, fp32, 16 steps",
    ]
    assert "  hidden: [4096, 4096, 2560]            # single: [256, 128]\n" in out
    assert main(["--explain", QUICK, "--only", "duel"]) == 2
    assert "--only names no run: 'duel' (did you mean 'dual'?)" in capsys.readouterr().err


def test_explain_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(explain_out(capsys, "--format", "json", "--only", "single,large"))
    assert (data["spec"], data["baseline"]) == ("day6-quick", "single")
    single, large = data["runs"]
    assert single["baseline"] and single["differences"] == [] and "config" not in single
    assert large["figures"]["params"] == 31_493_642
    assert {"key": "train.max_steps", "value": 16, "baseline": None, "absent": None} in large["differences"]
    full = json.loads(explain_out(capsys, "--format", "json", "--full", "--only", "dual"))
    assert full["runs"][0]["config"]["launch"]["processes"] == 2


def test_dry_run_honours_only_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--dry-run", QUICK, "--only", "dual", "--format", "json", "--output", str(tmp_path)])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    (run,) = data["runs"]
    assert (run["name"], run["processes"], run["precision"]) == ("dual", 2, "fp32")
    assert run["argv"][1:3] == ["launch", "--config_file"] and run["env"]["ACCELERATE_USE_CPU"] == "true"
    assert Path(run["config"]).is_file() and Path(data["result_dir"]).parent.parent == tmp_path


def test_dry_run_text_and_json_say_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dry-run", QUICK, "--only", "dual", "--output", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert main(["--dry-run", QUICK, "--only", "dual", "--format", "json", "--output", str(tmp_path)]) == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    assert f"# run 'dual' ({run['processes']} process(es), {run['device']}, {run['precision']}); config: " in text
    command = next(line for line in text.splitlines() if line.startswith("env "))
    assert command.split(" launch ")[0].endswith(run["argv"][0])  # the same launcher, one source for both
