"""Validation: every diagnostic, located exactly, phrased exactly (golden folders under tests/cases/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import Severity
from runner.spec.validate import validate_file, validate_text

CASES = Path(__file__).parent / "cases" / "diagnostics"
CASE_NAMES = sorted(p.name for p in CASES.iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASE_NAMES)
def test_diagnostics_match_the_golden_file(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = CASES / case
    monkeypatch.chdir(folder)
    result = validate_file("spec.yaml")
    expected = (folder / "expected.txt").read_text(encoding="utf-8").splitlines()
    assert [d.format() for d in result.diagnostics] == expected
    has_error = any(": error: " in line for line in expected)
    assert (result.spec is None) == has_error


def test_every_golden_case_reports_something() -> None:
    for case in CASE_NAMES:
        assert (CASES / case / "expected.txt").read_text().strip(), f"{case} expects no diagnostic"


def test_a_missing_file_is_one_located_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = validate_file(str(missing))
    assert [d.format() for d in result.diagnostics] == [f"{missing}:1:1: error: no such file"]


def test_a_directory_is_refused(tmp_path: Path) -> None:
    result = validate_file(str(tmp_path))
    assert [d.format() for d in result.diagnostics] == [
        f"{tmp_path}:1:1: error: is a directory, not a spec file (give the path of a .yaml file)"
    ]


def test_non_utf8_bytes_are_located(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    result = validate_file(str(path))
    assert [d.format() for d in result.diagnostics] == [
        f"{path}:1:10: error: not UTF-8 text: byte 0xe9 cannot be decoded (save the file as UTF-8)"
    ]


def test_a_utf8_bom_and_crlf_line_endings_are_accepted(tmp_path: Path) -> None:
    text = "name: bom\r\nmodel: {kind: mlp, input_dim: 8, classes: 2}\r\n" + (
        "data: {kind: synthetic-classification, samples: 256, features: 8, classes: 2}\r\ntrain: {epochs: 1}\r\n"
    )
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    result = validate_file(str(path))
    assert result.errors == []
    assert result.spec is not None and result.spec.spec.name == "bom"


def test_crlf_errors_keep_their_columns() -> None:
    text = "name: x\r\nmodel:\r\n  kind: mpl\r\n"
    result = validate_text(text, "crlf.yaml")
    kinds = [d.format() for d in result.diagnostics if "unknown kind" in d.message]
    assert kinds == [
        "crlf.yaml:3:9: error: unknown kind 'mpl' for model (did you mean 'mlp'?); "
        "allowed: 'mlp', 'linear', 'transformer', 'huggingface'"
    ]


def test_an_unquoted_no_is_the_string_no(write_spec) -> None:  # type: ignore[no-untyped-def]
    text = (Path(__file__).parent / "cases" / "valid-base.yaml").read_text() + "launch: {mixed_precision: no}\n"
    result = validate_file(str(write_spec(text)))
    assert result.spec is not None
    assert result.spec.runs["main"].config.launch.mixed_precision == "no"


def test_gpu_ids_accept_accelerates_text_form() -> None:
    base = (Path(__file__).parent / "cases" / "valid-base.yaml").read_text()
    result = validate_text(base + 'launch: {processes: 2, gpu_ids: "6,7"}\n')
    assert result.spec is not None
    assert result.spec.runs["main"].config.launch.gpu_ids == [6, 7]


def test_runs_deep_merge_over_the_top_level() -> None:
    base = (Path(__file__).parent / "cases" / "valid-base.yaml").read_text()
    text = base + (
        "runs:\n"
        "  a: {}\n"
        "  b:\n"
        "    model: {hidden: [64, 64]}\n"
        "    train: {epochs: null, max_steps: 5, optimizer: {lr: 0.01}}\n"
        "  c:\n"
        "    train: {optimizer: {kind: sgd, momentum: 0.9}}\n"
    )
    spec = validate_text(text).spec
    assert spec is not None
    a, b, c = (spec.runs[n].config for n in "abc")
    assert a.model.hidden == [32] and b.model.hidden == [64, 64]
    assert b.model.input_dim == a.model.input_dim  # untouched keys come from the top level
    assert (b.train.epochs, b.train.max_steps) == (None, 5)  # null removes the top-level epochs
    assert b.train.optimizer.kind == "adamw" and b.train.optimizer.lr == 0.01  # kind may be left out
    assert c.train.optimizer.kind == "sgd" and c.train.optimizer.momentum == 0.9  # a new kind replaces
    assert spec.baseline == "a"  # the first run unless the spec names one


def test_anchors_and_merge_keys_work_and_locate_errors_at_the_anchor() -> None:
    base = (Path(__file__).parent / "cases" / "valid-base.yaml").read_text()
    text = (
        base
        + "runs:\n  a:\n    launch: &two {processes: 2}\n"
        + "  b:\n    launch:\n      <<: *two\n      mixed_precision: bf16\n"
    )
    spec = validate_text(text).spec
    assert spec is not None
    assert spec.runs["b"].config.launch.processes == 2
    assert spec.runs["b"].config.launch.mixed_precision == "bf16"


def test_all_errors_are_collected_not_just_the_first() -> None:
    text = "name: x\nmodel: {kind: mlp, input_dim: 0, classes: 1}\ndata: {kind: nope}\ntrain: {epochs: -1}\n"
    result = validate_text(text, "many.yaml")
    assert len(result.errors) >= 4
    assert all(d.severity is Severity.ERROR and d.line is not None for d in result.errors)


def test_validation_never_imports_torch_or_accelerate() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from runner.cli import main\n"
        "main(['--validate', 'specs/day6.yaml', 'examples/minimal.yaml'])\n"
        "main(['--explain', 'specs/day6.yaml'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'accelerate', 'numpy'))\n"
        "print('HEAVY', heavy)\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert "HEAVY []" in done.stdout
