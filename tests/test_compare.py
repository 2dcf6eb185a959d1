"""`accel-run compare OLD NEW` and naming a result without its timestamp (`--report latest`).

The fast tests start from a real summary.json (tests/cases/summaries, written by a real session)
and from copies of it with one thing changed; the slow ones compare two real results of one spec,
and a copy of one of them made to regress.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, run_cli
from runner.cli import main
from runner.errors import ResultError
from runner.report.compare import compare_results
from runner.results.layout import Resolved, resolve_result

REAL = ROOT / "tests" / "cases" / "summaries" / "three-models" / "summary.json"


def _summary() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REAL.read_text())
    return data


def _result(output: Path, stamp: str, summary: dict[str, Any], spec: str = "three-models") -> Path:
    folder = output / spec / stamp
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def _scaled(summary: dict[str, Any], run: str, metric: str, factors: list[float]) -> dict[str, Any]:
    """The summary with `run` given one repeat per factor: its recorded metrics, `metric` times the factor.

    (The recorded summary keeps only each repeat's status; its run's metrics are the real repeat's.)
    """
    changed = copy.deepcopy(summary)
    first = changed["runs"][run]["repeats"][0]
    first.setdefault("metrics", changed["runs"][run]["metrics"])
    repeats = []
    for index, factor in enumerate(factors, start=1):
        launch = copy.deepcopy(first)
        launch["repeat"] = index
        launch["metrics"][metric] = first["metrics"][metric] * factor
        repeats.append(launch)
    changed["runs"][run]["repeats"] = repeats
    return changed


def _change(comparison: Any, run: str, metric: str) -> Any:
    return next(c for c in comparison.changes if c.run == run and c.metric == metric)


def test_a_result_against_itself_is_the_same_where_seeds_fix_it_and_unclear_on_one_timing(tmp_path: Path) -> None:
    folder = _result(tmp_path, "20261128T010000Z", _summary())
    comparison = compare_results(folder, folder)
    sha = _summary()["spec"]["sha256"][:12]
    assert comparison.differences == [
        f"spec: the same (sha256 {sha})",
        "machine: the same (cpu_model, cores, GPUs, torch, accelerate, python, accel-run, host)",
    ]
    assert comparison.notes == ["run 'crash' is failed in OLD: nothing to compare with"]
    for metric in ("final_loss", "eval_loss", "accuracy"):
        change = _change(comparison, "one", metric)
        assert (change.verdict, change.ratio, change.interval) == ("same", 1.0, None)
    throughput = _change(comparison, "one", "samples_per_s")
    # one repeat on each side: the ratio's interval is widened by 25%, as a single timing's is in a verdict
    assert throughput.verdict == "unclear" and (throughput.interval.low, throughput.interval.high) == (0.75, 1.25)
    assert comparison.exit_code() == 1 and comparison.exit_code(allow_inconclusive=True) == 0


def test_a_throughput_far_below_the_old_one_is_a_regression_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _result(tmp_path, "20261128T010000Z", _summary())
    new = _result(tmp_path, "20261128T020000Z", _scaled(_summary(), "one", "samples_per_s", [0.5]))
    assert main(["compare", str(old), str(new), "--metrics", "samples_per_s,final_loss"]) == 1
    out = capsys.readouterr().out
    assert "  REGRESSION  samples_per_s   679.7 -> 339.8         0.50x (0.38–0.62, n=1/1)\n" in out
    assert "  same        final_loss      " in out
    assert out.endswith("\n1 regression, 0 improvements, 9 same, 8 unclear\n")


def test_a_change_inside_the_noise_is_unclear_and_more_repeats_settle_it(tmp_path: Path) -> None:
    jitter = [1.0, 1.01, 0.99, 1.02, 0.98]
    cases = {
        "one repeat, 0.85x": ([1.0], [0.85], "unclear"),
        "five repeats, 0.8x": (jitter, [0.8 * j for j in jitter], "regression"),
        "five repeats, 0.98x": (jitter, [0.98 * j for j in jitter], "same"),
        "five repeats, 1.3x": (jitter, [1.3 * j for j in jitter], "improvement"),
    }
    for stamp, (name, (old_factors, new_factors, verdict)) in enumerate(cases.items(), start=10):
        old = _result(tmp_path, f"20261128T0100{stamp}Z", _scaled(_summary(), "one", "samples_per_s", old_factors))
        new = _result(tmp_path, f"20261128T0200{stamp}Z", _scaled(_summary(), "one", "samples_per_s", new_factors))
        change = _change(compare_results(old, new, metrics=("samples_per_s",)), "one", "samples_per_s")
        assert change.verdict == verdict, (name, change)


def test_lower_is_better_for_times_memory_and_losses(tmp_path: Path) -> None:
    old = _result(tmp_path, "20261128T010000Z", _summary())
    worse = _scaled(_scaled(_summary(), "one", "final_loss", [1.5]), "one", "peak_memory_mb", [1.5])
    new = _result(tmp_path, "20261128T020000Z", worse)
    comparison = compare_results(old, new, metrics=("final_loss", "peak_memory_mb", "accuracy"))
    assert _change(comparison, "one", "final_loss").verdict == "regression"
    assert _change(comparison, "one", "peak_memory_mb").verdict == "regression"  # 3% noise floor: 1.45-1.55x
    assert _change(comparison, "one", "accuracy").verdict == "same"
    better = _result(tmp_path, "20261128T030000Z", _scaled(_summary(), "one", "final_loss", [0.5]))
    assert _change(compare_results(old, better), "one", "final_loss").verdict == "improvement"


def test_repeats_unfit_to_time_are_left_out(tmp_path: Path) -> None:
    old = _result(tmp_path, "20261128T010000Z", _scaled(_summary(), "one", "samples_per_s", [1.0, 1.0, 1.0]))
    disturbed = _scaled(_summary(), "one", "samples_per_s", [1.0, 1.0, 0.1])
    reason = "other processes took 60% of the CPU cores while it was timed (measure.max_disturbance: 10%)"
    disturbed["runs"]["one"]["disturbance"]["unfit_repeats"] = {"3": reason}
    new = _result(tmp_path, "20261128T020000Z", disturbed)
    change = _change(compare_results(old, new, metrics=("samples_per_s",)), "one", "samples_per_s")
    assert (change.n_old, change.n_new, change.new) == (3, 2, 679.696)
    only_unfit = _scaled(_summary(), "one", "samples_per_s", [0.1])
    only_unfit["runs"]["one"]["disturbance"]["unfit_repeats"] = {"1": reason}
    none_fit = _result(tmp_path, "20261128T030000Z", only_unfit)
    change = _change(compare_results(old, none_fit, metrics=("samples_per_s",)), "one", "samples_per_s")
    assert (change.verdict, change.note) == ("unclear", f"NEW: no repeat fit to time (repeat 1: {reason})")


def test_another_spec_another_machine_and_a_failed_run_are_stated_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _result(tmp_path, "20261128T010000Z", _summary())
    changed = _summary()
    changed["spec"]["sha256"] = "f" * 64
    changed["environment"]["versions"]["torch"] = "2.14.0+cu128"
    changed["environment"]["cpu_count"] = 64
    changed["runs"]["one"]["status"] = "failed"
    changed["runs"]["one"]["reason"] = "rank 0 exited with code 1"
    changed["runs"]["one"]["declared"]["threads_per_process"] = 32
    changed["runs"]["bf16"]["status"] = "skipped"  # left out with --only: not measured, not broken
    del changed["runs"]["mid"]
    new = _result(tmp_path, "20261128T020000Z", changed)
    assert main(["compare", str(old), str(new), "--allow-inconclusive"]) == 1  # the failed run regresses
    lines = capsys.readouterr().out.splitlines()
    sha = _summary()["spec"]["sha256"][:12]
    threads = _summary()["runs"]["one"]["declared"]["threads_per_process"]
    assert lines[1:6] == [
        f"  spec: the spec changed between the two results (sha256 {sha} -> ffffffffffff): "
        "a run of the same name may not do the same work",
        "  machine: differs: cores 2 -> 64; torch 2.13.0+cpu -> 2.14.0+cu128 (timings may differ for that alone)",
        "  runs only in OLD: mid",
        f"  run 'one' is declared differently: threads_per_process {threads} -> 32",
        "  threshold: 10% (a change beyond it over the whole noise interval is a regression or an improvement)",
    ]
    assert "  REGRESSION  status          ok in OLD, failed in NEW: rank 0 exited with code 1" in lines
    assert "  note: run 'bf16' is skipped in NEW: nothing to compare" in lines


def test_compare_as_json_carries_the_same_facts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = _result(tmp_path, "20261128T010000Z", _summary())
    new = _result(tmp_path, "20261128T020000Z", _scaled(_summary(), "one", "samples_per_s", [0.5]))
    assert main(["compare", str(old), str(new), "--format", "json", "--metrics", "samples_per_s"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["regression"] == 1 and data["threshold"] == 0.1
    change = next(c for c in data["changes"] if c["run"] == "one")
    assert change["verdict"] == "regression" and change["ratio"] == pytest.approx(0.5)
    assert change["interval"]["low"] == pytest.approx(0.375) and change["interval"]["n"] == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "a"], "accel-run compare: error: the following arguments are required: NEW"),
        (
            ["compare", "a", "b", "--threshold", "10"],
            "accel-run compare: error: argument --threshold: must be between 0 and 1 (0.10 = 10%), got '10'",
        ),
        (["compare", "a", "b", "--metrics", "speed"], "accel-run: error: unknown metric 'speed'; choose from "),
    ],
)
def test_compare_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(message)


def test_compare_of_a_folder_that_is_not_a_result_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(tmp_path / "nope"), str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == (
        f"accel-run: error: {tmp_path / 'nope'} is not a result folder (expected OUTPUT/<spec>/<timestamp>/)\n"
    )


# --- naming a result without its timestamp ------------------------------------------------------


def _of_file(spec: Path, text: str) -> dict[str, Any]:
    """The recorded summary as if `spec` (holding `text`) had been run: summary.json's spec.file and sha256."""
    from runner.results.layout import sha256_text

    spec.write_text(text)
    summary = _summary()
    summary["spec"].update(path=spec.name, file=str(spec.resolve()), sha256=sha256_text(text))
    return summary


def test_latest_a_spec_file_and_a_spec_folder_name_the_newest_result(tmp_path: Path) -> None:
    output = tmp_path / "results"
    spec = tmp_path / "three.yaml"
    summary = _of_file(spec, "name: three-models\nmodel: {kind: mlp}\n")  # only its name matters here
    older = _result(output, "20261128T010000Z", summary)
    newest = _result(output, "20261128T010000Z-2", summary)  # a concurrent start in the same second
    _result(output, "20261127T230000Z", _summary(), spec="other")
    (output / "three-models" / "20261128T090000Z").mkdir()  # a dry run: no summary.json, not a result
    assert resolve_result("latest", output).folder == newest
    assert resolve_result(str(spec), output) == Resolved(newest)
    assert resolve_result(str(output / "three-models"), output).folder == newest
    assert resolve_result(str(older), output).folder == older


def test_a_spec_file_names_its_own_results_not_those_of_another_file_with_the_same_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a learner copies day6.yaml to try something and forgets to change `name:`: both file into one folder
    output = tmp_path / "results"
    mine = _of_file(tmp_path / "day6.yaml", "name: three-models\n")
    copy_of = _of_file(tmp_path / "day6-try.yaml", "name: three-models\n# trying bf16\n")
    own = _result(output, "20261128T010000Z", mine)
    _result(output, "20261128T020000Z", copy_of)  # newer, but another file's
    folder = output / "three-models"
    assert resolve_result(str(tmp_path / "day6.yaml"), output) == Resolved(
        own,
        f"{folder}/ also holds results of another spec file named 'three-models' (day6-try.yaml); "
        f"showing the newest of {tmp_path / 'day6.yaml'}",
    )
    main(["--report", str(tmp_path / "day6.yaml"), "--output", str(output)])
    err = capsys.readouterr().err
    assert err.startswith(f"accel-run: warning: {folder}/ also holds results of another spec file named ")
    assert (own / "report.md").is_file()
    # a third file of that name has no result, and is told whose results are there
    third = tmp_path / "day6-bf16.yaml"
    third.write_text("name: three-models\nlaunch: {mixed_precision: bf16}\n")
    assert main(["--report", str(third), "--output", str(output)]) == 2
    assert capsys.readouterr().err == (
        f"accel-run: error: no result of {third} in {folder}/: the results there are of other spec files named "
        f"'three-models' (day6-try.yaml, day6.yaml); run `accel-run {third}`, or give another name: to one of them\n"
    )


def test_a_result_from_before_spec_file_was_recorded_is_found_by_its_content(tmp_path: Path) -> None:
    output = tmp_path / "results"
    summary = _of_file(tmp_path / "moved.yaml", "name: three-models\n")
    del summary["spec"]["file"]  # as summary.json was written before spec.file
    summary["spec"]["path"] = "specs/elsewhere.yaml"  # given from another folder, or moved since
    folder = _result(output, "20261128T010000Z", summary)
    assert resolve_result(str(tmp_path / "moved.yaml"), output) == Resolved(folder)
    (tmp_path / "moved.yaml").write_text("name: three-models\n# edited since\n")
    with pytest.raises(ResultError, match="^no result of "):
        resolve_result(str(tmp_path / "moved.yaml"), output)


def test_compare_refuses_a_result_with_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "results"
    spec = tmp_path / "day6.yaml"
    folder = _result(output, "20261128T010000Z", _of_file(spec, "name: three-models\n"))
    for old in (str(spec), str(folder), "latest"):  # each names the one result there is
        assert main(["compare", old, str(spec), "--output", str(output)]) == 2
        assert capsys.readouterr().err == (
            f"accel-run: error: OLD and NEW are the same result, {folder}: compare two different results "
            "(a spec file stands for its newest one; give the older one's folder)\n"
        )


def test_report_latest_renders_the_newest_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "results"
    _result(output, "20261128T010000Z", _summary(), spec="other")
    newest = _result(output, "20261128T020000Z", _summary())
    main(["--report", "latest", "--output", str(output)])
    assert capsys.readouterr().out.startswith("accel-run report: three-models\n")
    assert (newest / "report.md").is_file()


def test_naming_a_result_that_does_not_exist_says_where_it_looked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "results"
    assert main(["--report", "latest", "--output", str(output)]) == 2
    assert (
        capsys.readouterr().err == f"accel-run: error: 'latest': there is no result under {output}/ yet "
        "(choose another with --output)\n"
    )
    spec = tmp_path / "day6.yaml"
    spec.write_text("name: day6\n")
    assert main(["--report", str(spec), "--output", str(output)]) == 2
    assert capsys.readouterr().err == (
        f"accel-run: error: no result of spec 'day6' in {output / 'day6'}/ (run `accel-run {spec}`)\n"
    )


def test_compare_imports_neither_torch_nor_process_control() -> None:
    import subprocess
    import sys

    code = "import sys, json, runner.report.compare; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert not loaded & {
        "torch",
        "accelerate",
        "psutil",
        "runner.pipeline",
        "runner.session.run",
        "runner.engines.local",
    }


# --- two real results -------------------------------------------------------------------------

SPEC = """\
name: compare-e2e
model: {kind: mlp, input_dim: 16, hidden: [32], classes: 4}
data: {kind: synthetic-classification, samples: 1024, features: 16, classes: 4}
train: {epochs: 2, batch_size: 32}
launch: {device: cpu}
measure: {warmup_steps: 2, repeats: 1, min_duration_s: 0.01, max_disturbance: 1.0, attribution: false}
runs:
  one: {}
  two: {launch: {processes: 2}, train: {batch_size: 16}}
"""


@pytest.fixture(scope="module")
def two_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("compare")
    spec = base / "compare-e2e.yaml"
    spec.write_text(SPEC)
    for _ in range(2):
        done = run_cli(str(spec), "--output", str(base / "results"), "--no-progress")
        assert done.returncode == 0, done.stderr
    old, new = sorted((base / "results" / "compare-e2e").iterdir())
    return spec, old, new


@pytest.mark.slow
def test_two_real_results_of_one_spec(two_results: tuple[Path, Path, Path]) -> None:
    spec, old, new = two_results
    # the spec file names its newest result
    done = run_cli("compare", str(old), str(spec), "--output", str(spec.parent / "results"), "--format", "json")
    data = json.loads(done.stdout)
    assert data["new"] == str(new) and data["old"] == str(old)
    # found by the file: summary.json records its absolute path beside the path as given
    assert json.loads((new / "summary.json").read_text())["spec"]["file"] == str(spec.resolve())
    assert data["differences"][0].startswith("spec: the same (sha256 ")
    assert data["differences"][1].startswith("machine: the same")
    changes = {(c["run"], c["metric"]): c for c in data["changes"]}
    for run in ("one", "two"):
        for metric in ("final_loss", "eval_loss", "accuracy"):  # fixed by the seeds: the same to the bit
            assert (changes[run, metric]["verdict"], changes[run, metric]["ratio"]) == ("same", 1.0)
        assert changes[run, "samples_per_s"]["interval"]["n"] == 1
    # the exit code is the verdicts': 1 exactly when a change is a regression or unclear
    flagged = data["counts"]["regression"] + data["counts"]["unclear"]
    assert done.returncode == (1 if flagged else 0), done.stderr


@pytest.mark.slow
def test_a_real_result_made_to_regress_is_flagged(two_results: tuple[Path, Path, Path], tmp_path: Path) -> None:
    # a copy of the old result itself, so only the edit differs (two sessions on a busy machine may differ 2x)
    _, old, _ = two_results
    slower = tmp_path / old.name
    shutil.copytree(old, slower)
    summary = json.loads((slower / "summary.json").read_text())
    for launch in summary["runs"]["two"]["repeats"]:
        launch["metrics"]["samples_per_s"] /= 3  # a third of the throughput: far beyond the noise of one repeat
    (slower / "summary.json").write_text(json.dumps(summary))
    done = run_cli("compare", str(old), str(slower), "--allow-inconclusive", "--metrics", "samples_per_s")
    assert done.returncode == 1, done.stdout + done.stderr
    regression = [line for line in done.stdout.splitlines() if line.startswith("  REGRESSION")]
    assert len(regression) == 1 and regression[0].startswith("  REGRESSION  samples_per_s")
    assert "\nrun 'two'\n  REGRESSION  samples_per_s" in done.stdout
