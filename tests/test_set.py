"""`--set key.path=value`: values from the command line, checked like the file, located by the option,
recorded with the result and kept by --resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY_SPEC, run_cli
from runner.errors import ResultError
from runner.session.summary import resumable_sets
from runner.spec.resolved import ValidatedSpec
from runner.spec.validate import validate_text

GRID = TINY_SPEC + "matrix:\n  launch.processes: [1, 2]\nruns:\n  first.try: {}\n"


def with_sets(*sets: str, text: str = TINY_SPEC) -> ValidatedSpec:
    result = validate_text(text, "spec.yaml", sets=sets)
    assert result.spec is not None, [d.format() for d in result.diagnostics]
    return result.spec


def problems(*sets: str, text: str = TINY_SPEC) -> list[str]:
    return [d.format() for d in validate_text(text, "spec.yaml", sets=sets).diagnostics]


def test_a_set_value_is_yaml_and_replaces_the_files() -> None:
    spec = with_sets("launch.processes=2", "train.optimizer={kind: sgd, lr: 0.1}", "launch.mixed_precision=no")
    config = spec.runs["main"].builtin
    assert config.launch.processes == 2
    assert config.launch.mixed_precision == "no"  # YAML 1.2, as in the file: the text no
    assert (config.train.optimizer.kind, config.train.optimizer.lr) == ("sgd", 0.1)


def test_the_last_of_two_sets_of_one_key_wins() -> None:
    assert with_sets("train.epochs=3", "train.epochs=5").runs["main"].builtin.train.epochs == 5


def test_sets_reach_runs_matrix_settings_and_list_items() -> None:
    spec = with_sets(
        "matrix.launch.processes=[1, 4]",
        "matrix.train.batch_size=[16]",  # a new matrix setting keeps its dots
        "runs.first.try.train.epochs=1",  # a run name with a dot
        text=GRID,
    )
    assert list(spec.runs) == ["processes=1,batch_size=16", "processes=4,batch_size=16", "first.try"]
    assert spec.runs["first.try"].builtin.train.epochs == 1
    listed = with_sets(
        "expect.0.at_least=0.9",
        text=TINY_SPEC + "expect:\n  - {kind: bound, run: main, metric: accuracy, at_least: 0.5}\n",
    )
    assert listed.spec.expect[0].at_least == 0.9


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (
            "launch.processes=abc",
            "--set launch.processes=abc: error: launch.processes must be a whole number, got the text 'abc'",
        ),
        (
            "launch.device=tpu",
            "--set launch.device=tpu: error: invalid value 'tpu' for launch.device (did you mean 'cpu'?); "
            "allowed: 'auto', 'cpu', 'cuda'",
        ),
        ("train.epochs", "--set train.epochs: error: expected KEY.PATH=VALUE, e.g. --set launch.processes=2"),
        (
            "train.optimzer.lr=0.1",
            "--set train.optimzer.lr=0.1: error: unknown key 'optimzer' in train (did you mean 'optimizer'?)",
        ),
        ("name.x=1", "--set name.x=1: error: name is a single value, not a mapping: it has no key 'x'"),
        ("train.epochs=[1,", "--set train.epochs=[1,: error: invalid YAML: did not find expected node content"),
        (
            "train.epochs=!!python/object:os.system x",
            "--set train.epochs=!!python/object:os.system x: error: "
            "YAML tag '!!python/object:os.system' is not allowed in a spec (write plain values)",
        ),
    ],
)
def test_a_bad_set_is_an_error_that_names_the_option(option: str, expected: str) -> None:
    assert problems(option) == [expected]


def test_a_set_into_a_run_whose_name_holds_an_equals_sign_reaches_that_run() -> None:
    text = TINY_SPEC + "runs:\n  bs=16: {train: {batch_size: 16}}\n"
    result = validate_text(text, sets=["runs.bs=16.train.batch_size=8"])
    assert result.spec is not None and result.spec.runs["bs=16"].config.train.batch_size == 8


def test_a_rule_broken_by_a_set_value_names_the_option() -> None:
    assert problems("train.batch_size=4096") == [
        "--set train.batch_size=4096: error: zero optimizer steps: batch_size 4096 x 1 process(es) x "
        "1 accumulation step(s) = 4,096 samples per optimizer step, but there are only 512 training samples"
    ]


def test_validate_and_run_check_sets_like_the_file(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    checked = run_cli("--validate", str(spec), "--set", "train.epochs=0")
    assert checked.returncode == 1
    assert checked.stdout.splitlines()[0] == "--set train.epochs=0: error: train.epochs must be >= 1, got 0"
    refused = run_cli(str(spec), "--set", "train.epochs=0", "--output", str(tmp_path / "results"))
    assert refused.returncode == 2
    assert "--set train.epochs=0: error: train.epochs must be >= 1, got 0" in refused.stderr
    assert not (tmp_path / "results").exists()
    explained = run_cli("--explain", str(spec), "--set", "launch.processes=2")
    assert explained.returncode == 0
    assert "#   global batch: 64 = batch_size 32 x 2 process(es) x 1 accumulation" in explained.stdout


def test_resume_keeps_the_sets_a_result_was_started_with() -> None:
    summary = {"options": {"sets": ["train.epochs=3"]}}
    assert resumable_sets(summary, ()) == ("train.epochs=3",)
    assert resumable_sets(summary, ("train.epochs=3",)) == ("train.epochs=3",)
    with pytest.raises(ResultError) as refused:
        resumable_sets(summary, ("train.epochs=4",))
    assert str(refused.value) == (
        "this result was started with --set train.epochs=3; resuming with --set train.epochs=4 would mix two specs. "
        "Resume with the same --set options (or none), or start a new result"
    )
    with pytest.raises(ResultError, match="started with no --set options; resuming with --set a=1"):
        resumable_sets({"options": {}}, ("a=1",))


@pytest.mark.slow
def test_sets_are_recorded_in_the_result_and_a_different_resume_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC + "measure: {warmup_steps: 1, repeats: 1, min_duration_s: 0.01, max_disturbance: 1.0}\n")
    done = run_cli(str(spec), "--set", "train.epochs=1", "--output", str(tmp_path / "results"), "--no-progress")
    assert done.returncode == 0, done.stderr
    (folder,) = (tmp_path / "results" / "tiny").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["options"]["sets"] == ["train.epochs=1"]
    assert summary["runs"]["main"]["repeats"][0]["metrics"]["optimizer_steps"] == 16  # 512 / 32, one epoch
    assert "Overridden on the command line: `--set train.epochs=1`." in (folder / "report.md").read_text()
    assert "Overridden on the command line: --set train.epochs=1." in done.stdout
    resumed = run_cli("--resume", str(folder), "--set", "train.epochs=2")
    assert resumed.returncode == 2
    assert resumed.stderr == (
        "accel-run: error: this result was started with --set train.epochs=1; resuming with --set train.epochs=2 "
        "would mix two specs. Resume with the same --set options (or none), or start a new result\n"
    )
    # a damaged summary.json is rebuilt with the sets the result was started with (kept in sets.json)
    (folder / "summary.json").write_text('{"format": 1, "stat')
    rebuilt = run_cli("--report", str(folder))
    assert "rebuilt it from the run folders" in rebuilt.stdout + rebuilt.stderr
    assert json.loads((folder / "summary.json").read_text())["options"]["sets"] == ["train.epochs=1"]
