"""Matrices, `extends`, YAML anchors and expectations over cells: what a spec's runs resolve to, and where
an error in them points."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, TINY_SPEC, run_cli
from runner.results.records import LaunchRecord, RunRecord
from runner.spec.models import MAX_CELLS
from runner.spec.resolved import ValidatedSpec, select_runs
from runner.spec.validate import validate_file, validate_text
from runner.verdicts.check import check_expectations
from runner.vocab import Status


def valid(text: str) -> ValidatedSpec:
    result = validate_text(text, "spec.yaml")
    assert result.spec is not None, [d.format() for d in result.diagnostics]
    return result.spec


def problems(text: str) -> list[str]:
    return [d.format() for d in validate_text(text, "spec.yaml").diagnostics]


def settings(spec: ValidatedSpec, name: str) -> tuple[int, str, int, int]:
    launch, train = spec.runs[name].config.launch, spec.runs[name].builtin.train
    return launch.processes, launch.mixed_precision, train.batch_size, train.gradient_accumulation_steps


# --- specs/day6.yaml ----------------------------------------------------------------------------


def _pairs(spec: ValidatedSpec) -> list[tuple[Any, ...]]:
    return [
        (e.kind, e.run, getattr(e, "baseline", None), getattr(e, "metric", None), e.model_dump().get("at_least"))
        for e in spec.spec.expect
    ]


def test_day6_with_a_matrix_and_extends_resolves_to_the_runs_and_checks_written_by_hand() -> None:
    new = validate_file(str(ROOT / "specs" / "day6.yaml")).spec
    old = validate_file(str(ROOT / "tests" / "cases" / "day6-handwritten.yaml")).spec
    assert new is not None and old is not None
    assert sorted(new.runs) == sorted(old.runs)
    for name in old.runs:
        assert new.runs[name].config == old.runs[name].config, name
    assert new.baseline == old.baseline == "single"
    assert sorted(_pairs(new), key=repr) == sorted(_pairs(old), key=repr)
    new_lines = (ROOT / "specs" / "day6.yaml").read_text().count("\n")
    old_lines = (ROOT / "tests" / "cases" / "day6-handwritten.yaml").read_text().count("\n") - 3  # its note
    assert new_lines < old_lines


def test_day6s_expectation_over_cells_gives_one_verdict_per_pair() -> None:
    spec = validate_file(str(ROOT / "specs" / "day6.yaml")).spec
    assert spec is not None
    titles = [e.title for e in spec.spec.expect if e.kind == "speedup"]
    assert titles[:2] == [
        "2 processes >= 1.8x faster than 1 (dual vs single)",
        "2 processes >= 1.8x faster than 1 (large-dual vs large-single)",
    ]


# --- the matrix ---------------------------------------------------------------------------------

GRID = (
    TINY_SPEC
    + """\
matrix:
  launch.processes: [1, 2]
  mixed_precision: [no, bf16]
"""
)


def test_every_combination_is_a_run_named_after_its_values() -> None:
    spec = valid(GRID)
    assert list(spec.runs) == [
        "processes=1,mixed_precision=no",
        "processes=1,mixed_precision=bf16",
        "processes=2,mixed_precision=no",
        "processes=2,mixed_precision=bf16",
    ]
    assert settings(spec, "processes=2,mixed_precision=bf16") == (2, "bf16", 32, 1)
    assert spec.runs["processes=2,mixed_precision=no"].description == (
        "matrix cell: launch.processes 2, launch.mixed_precision no"
    )


def test_exclude_removes_cells_and_include_extends_or_adds_them() -> None:
    spec = valid(
        GRID
        + """\
  exclude:
    - {launch.processes: 2, mixed_precision: bf16}
  include:
    - {launch.processes: 2, train.batch_size: 16}
    - {launch.processes: 4, mixed_precision: no}
"""
    )
    assert list(spec.runs) == [
        "processes=1,mixed_precision=no",
        "processes=1,mixed_precision=bf16",
        "processes=2,mixed_precision=no",
        "processes=4,mixed_precision=no",
    ]
    assert settings(spec, "processes=2,mixed_precision=no") == (2, "no", 16, 1)  # extended, name kept
    assert settings(spec, "processes=1,mixed_precision=no") == (1, "no", 32, 1)


def test_a_name_template_names_the_cells() -> None:
    spec = valid(
        TINY_SPEC
        + """\
matrix:
  name: accum-{gradient_accumulation_steps}
  train.gradient_accumulation_steps: [1, 4]
  include:
    - {train.gradient_accumulation_steps: 4, train.batch_size: 8}
"""
    )
    assert list(spec.runs) == ["accum-1", "accum-4"]
    assert settings(spec, "accum-4") == (1, "no", 8, 4)


def test_cells_come_before_written_runs_when_the_matrix_is_written_first() -> None:
    matrix_first = valid(TINY_SPEC + "matrix: {launch.processes: [1, 2]}\nruns: {extra: {}}\n")
    runs_first = valid(TINY_SPEC + "runs: {extra: {}}\nmatrix: {launch.processes: [1, 2]}\n")
    assert list(matrix_first.runs) == ["processes=1", "processes=2", "extra"]
    assert list(runs_first.runs) == ["extra", "processes=1", "processes=2"]


def test_a_bad_value_in_a_matrix_points_at_the_value() -> None:
    text = TINY_SPEC + "matrix:\n  launch.processes: [1, 0]\n  train.optimizer.lr: [0.1, fast]\n"
    assert problems(text) == [
        "spec.yaml:6:25: error: launch.processes must be >= 1, got 0",
        "spec.yaml:7:29: error: train.optimizer.lr must be a number, got the text 'fast'",
    ]


def test_a_rule_broken_by_one_cell_names_the_cell_at_the_value() -> None:
    text = TINY_SPEC + "matrix:\n  train.batch_size: [32, 4096]\n"
    assert problems(text) == [
        "spec.yaml:6:26: error: run 'batch_size=4096': zero optimizer steps: batch_size 4096 x 1 process(es) x "
        "1 accumulation step(s) = 4,096 samples per optimizer step, but there are only 512 training samples"
    ]


@pytest.mark.parametrize(
    ("matrix", "expected"),
    [
        (
            "{classes: [4, 8]}",
            "spec.yaml:5:10: error: 'classes' is a key of model and data: write model.classes or data.classes",
        ),
        (
            "{launch.procesess: [1, 2]}",
            "spec.yaml:5:10: error: unknown key 'procesess' in launch (did you mean 'processes'?)",
        ),
        (
            "{lanch.processes: [1, 2]}",
            "spec.yaml:5:10: error: unknown setting 'lanch.processes' (did you mean 'launch'?): "
            "write section.key, e.g. launch.processes",
        ),
        (
            "{launch.processes: [1, 2], processes: [4]}",
            "spec.yaml:5:36: error: 'processes' and 'launch.processes' are the same setting; list its values once",
        ),
        ("{launch.processes: [1, 1]}", "spec.yaml:5:32: error: 1 is listed twice for launch.processes"),
        (
            "{launch.processes: [1, 2], exclude: [{train.epochs: 3}]}",
            "spec.yaml:5:47: error: exclude matches matrix keys only; 'train.epochs' is not one "
            "(matrix keys: launch.processes)",
        ),
        (
            "{name: 'p{procs}', launch.processes: [1, 2]}",
            "spec.yaml:5:16: error: the name template uses {procs}, which is not a matrix key "
            "(did you mean 'processes'?); matrix keys: launch.processes",
        ),
        (
            "{name: same, launch.processes: [1, 2]}",
            "spec.yaml:5:16: error: two cells are both named 'same' (cells 1 and 2); "
            "make the template use every matrix key",
        ),
        (
            "{launch.env: [{A: x y}]}",
            'spec.yaml:5:23: error: \'{"A": "x y"}\' cannot be part of a run name (it becomes a folder name): '
            "give matrix.name a template without it",
        ),
    ],
)
def test_matrix_mistakes_are_located_errors(matrix: str, expected: str) -> None:
    assert problems(TINY_SPEC + f"matrix: {matrix}\n") == [expected]


def test_an_exclude_that_matches_nothing_is_a_warning() -> None:
    result = validate_text(TINY_SPEC + "matrix: {launch.processes: [1, 2], exclude: [{launch.processes: 3}]}\n")
    assert [d.format() for d in result.diagnostics] == ["<spec>:5:46: warning: this exclude matches no cell"]


def test_the_cell_limit_is_a_clear_error() -> None:
    values = ", ".join(str(v) for v in range(1, 65))
    text = TINY_SPEC + f"matrix:\n  train.seed: [{values}]\n  data.seed: [{values}]\n"
    assert problems(text) == [
        f"spec.yaml:5:1: error: the matrix has 4,096 cells (64 x 64); at most {MAX_CELLS} are allowed: "
        "split the experiment, or list fewer values"
    ]


def test_only_accepts_cell_names_with_commas() -> None:
    spec = valid(GRID)
    parts = ("processes=2", "mixed_precision=bf16", "processes=1", "mixed_precision=no")
    assert select_runs(spec, parts) == ["processes=1,mixed_precision=no", "processes=2,mixed_precision=bf16"]


def test_explain_and_dry_run_list_the_cells(tmp_path: Path) -> None:
    spec = tmp_path / "grid.yaml"
    spec.write_text(GRID)
    explained = run_cli("--explain", str(spec))
    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.startswith("# tiny: 4 run(s), baseline 'processes=1,mixed_precision=no'\n")
    assert "# run 'processes=2,mixed_precision=bf16': matrix cell: launch.processes 2, " in explained.stdout
    dry = run_cli("--dry-run", "--format", "json", "--output", str(tmp_path / "out"), str(spec))
    assert dry.returncode == 0, dry.stderr
    launches = json.loads(dry.stdout)["runs"]
    assert [(x["name"], x["processes"]) for x in launches] == [
        ("processes=1,mixed_precision=no", 1),
        ("processes=1,mixed_precision=bf16", 1),
        ("processes=2,mixed_precision=no", 2),
        ("processes=2,mixed_precision=bf16", 2),
    ]
    assert (Path(launches[3]["config"]).parent.name) == "processes=2,mixed_precision=bf16"


# --- extends and YAML anchors -------------------------------------------------------------------

LARGE = (
    TINY_SPEC
    + """\
runs:
  large:
    model: {hidden: [64, 64]}
    train: {batch_size: 64}
  large-dual:
    extends: large
    launch: {processes: 2}
  large-dual-b8:
    extends: large-dual
    train: {batch_size: 8}
"""
)


def test_a_run_extends_another_and_chains() -> None:
    spec = valid(LARGE)
    assert settings(spec, "large-dual") == (2, "no", 64, 1)
    assert settings(spec, "large-dual-b8") == (2, "no", 8, 1)
    assert spec.runs["large-dual-b8"].builtin.model.hidden == [64, 64]  # type: ignore[union-attr]


def test_an_error_in_an_extended_run_points_at_the_line_that_wrote_it() -> None:
    text = LARGE.replace("train: {batch_size: 64}", "train: {batch_size: 0}")
    assert problems(text) == ["spec.yaml:8:25: error: train.batch_size must be >= 1, got 0"]


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        (
            "{a: {extends: b}, b: {extends: a}}",
            "spec.yaml:5:38: error: runs extend each other in a cycle: 'a' -> 'b' -> 'a'",
        ),
        ("{a: {extends: a}}", "spec.yaml:5:21: error: run 'a' extends itself"),
        (
            "{a: {extends: larg}, large: {}}",
            "spec.yaml:5:21: error: extends names no run: 'larg' (did you mean 'large'?); runs: a, large",
        ),
    ],
)
def test_extends_cycles_and_unknown_names_are_located_errors(runs: str, expected: str) -> None:
    assert problems(TINY_SPEC + f"runs: {runs}\n") == [expected]


def test_yaml_anchors_and_merge_keys_share_settings_between_runs() -> None:
    anchored = valid(
        TINY_SPEC
        + """\
runs:
  large: &large
    model: {hidden: [64, 64]}
    train: &large-train {batch_size: 64, epochs: 3}
  large-dual:
    <<: *large
    launch: {processes: 2}
  large-b8:
    <<: *large
    train:
      <<: *large-train
      batch_size: 8
"""
    )
    assert settings(anchored, "large-dual") == (2, "no", 64, 1)
    assert anchored.runs["large-dual"].builtin.model.hidden == [64, 64]  # type: ignore[union-attr]
    assert settings(anchored, "large-b8") == (1, "no", 8, 1)  # an explicit key wins over the merged one
    assert anchored.runs["large-b8"].builtin.train.epochs == 3


def test_an_error_in_an_anchor_points_at_the_anchor() -> None:
    text = TINY_SPEC + "runs:\n  a: &base {train: {batch_size: -1}}\n  b: {<<: *base}\n"
    assert problems(text) == ["spec.yaml:6:33: error: train.batch_size must be >= 1, got -1"]


# --- expectations over cells ---------------------------------------------------------------------

OVER_CELLS = (
    GRID
    + """\
expect:
  - kind: speedup
    title: 2 processes faster
    run: {launch.processes: 2}
    baseline: {launch.processes: 1}
    at_least: 1.5
  - kind: ratio
    run: {mixed_precision: bf16}
    baseline: {mixed_precision: no}
    metric: peak_memory_mb
    at_most: 0.7
"""
)


def test_an_expectation_over_cells_becomes_one_per_pair() -> None:
    spec = valid(OVER_CELLS)
    assert [(e.kind, e.run, e.baseline, e.title) for e in spec.spec.expect] == [
        (
            "speedup",
            "processes=2,mixed_precision=no",
            "processes=1,mixed_precision=no",
            "2 processes faster (processes=2,mixed_precision=no vs processes=1,mixed_precision=no)",
        ),
        (
            "speedup",
            "processes=2,mixed_precision=bf16",
            "processes=1,mixed_precision=bf16",
            "2 processes faster (processes=2,mixed_precision=bf16 vs processes=1,mixed_precision=bf16)",
        ),
        ("ratio", "processes=1,mixed_precision=bf16", "processes=1,mixed_precision=no", None),
        ("ratio", "processes=2,mixed_precision=bf16", "processes=2,mixed_precision=no", None),
    ]


def _record(name: str, metrics: dict[str, float]) -> RunRecord:
    run = RunRecord(name, "", 3, None, noise_floor=0.03)
    for index in range(1, 4):
        run.launches[index] = LaunchRecord(index, Status.OK, name, metrics=metrics)
    return run


def test_each_pair_gets_its_own_verdict() -> None:
    spec = valid(OVER_CELLS)
    rates = {"processes=1,mixed_precision=no": 100.0, "processes=2,mixed_precision=no": 190.0}
    rates |= {"processes=1,mixed_precision=bf16": 100.0, "processes=2,mixed_precision=bf16": 120.0}
    runs = {name: _record(name, {"samples_per_s": rate, "peak_memory_mb": 100.0}) for name, rate in rates.items()}
    lines = [v.line() for v in check_expectations(spec.spec, runs)[:2]]
    assert lines[0].startswith(
        "PASS  2 processes faster (processes=2,mixed_precision=no vs processes=1,mixed_precision=no)"
    )
    assert lines[1].startswith(
        "FAIL  2 processes faster (processes=2,mixed_precision=bf16 vs processes=1,mixed_precision=bf16)"
    )


def test_the_top_level_baseline_is_the_default_of_every_expectation() -> None:
    spec = valid(
        TINY_SPEC
        + "baseline: a\nruns: {a: {}, b: {launch: {processes: 2}}}\n"
        + "expect:\n  - {kind: close, run: b, metric: final_loss, rel_tol: 0.05}\n"
    )
    (expectation,) = spec.spec.expect
    assert (expectation.run, expectation.baseline) == ("b", "a")


@pytest.mark.parametrize(
    ("expect", "expected"),
    [
        (
            "{kind: speedup, run: {launch.processes: 4}, baseline: a, at_least: 1}",
            "spec.yaml:7:26: error: no run has launch.processes: 4",
        ),
        (
            "{kind: speedup, run: {launch.procs: 2}, baseline: a, at_least: 1}",
            "spec.yaml:7:27: error: unknown key 'procs' in launch (did you mean 'processes'?)",
        ),
        (
            "{kind: speedup, run: b, baseline: {launch.processes: 3}, at_least: 1}",
            "spec.yaml:7:39: error: no run is the twin of 'b' with launch.processes: 3 (the same settings otherwise)",
        ),
    ],
)
def test_expectation_over_cells_mistakes_are_located(expect: str, expected: str) -> None:
    text = TINY_SPEC + "runs: {a: {}, b: {launch: {processes: 2}}}\nexpect:\n  - " + expect + "\n"
    assert problems(text) == [expected]


def test_a_value_include_adds_to_a_cell_need_not_fit_in_a_name() -> None:
    spec = valid(
        TINY_SPEC
        + "matrix:\n  launch.processes: [1, 2]\n  include:\n"
        + "    - {launch.processes: 2, train.optimizer: {kind: sgd, lr: 0.1}}\n"
    )
    assert list(spec.runs) == ["processes=1", "processes=2"]
    assert spec.runs["processes=2"].builtin.train.optimizer.kind == "sgd"


def test_a_twin_is_found_by_value_whether_written_as_int_or_float() -> None:
    spec = valid(
        TINY_SPEC.replace("batch_size: 32}", "batch_size: 32, optimizer: {lr: 1}}")
        + "runs: {a: {}, b: {train: {optimizer: {lr: 2}}}}\n"
        + "expect:\n  - {kind: close, run: b, baseline: {train.optimizer.lr: 1}, metric: final_loss, rel_tol: 0.1}\n"
    )
    assert [(e.run, e.baseline) for e in spec.spec.expect] == [("b", "a")]


def test_an_expectation_without_a_baseline_takes_the_first_run_when_no_top_level_baseline_is_set() -> None:
    text = TINY_SPEC + "runs: {a: {}, b: {launch: {processes: 2}}}\nexpect:\n"
    text += "  - {kind: close, run: b, metric: final_loss, rel_tol: 0.05}\n"
    result = validate_text(text, "spec.yaml")
    assert result.spec is not None
    (expectation,) = result.spec.spec.expect
    assert (expectation.run, expectation.baseline) == ("b", "a")
