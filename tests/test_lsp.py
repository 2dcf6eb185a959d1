"""`accel-run lsp` says in the editor what `accel-run --validate` says: the real server, driven over stdio.

The server is started as an editor starts it (`accel-run lsp`, here `python -m runner lsp`) and spoken
to with tests/lsp_client.py. It needs the `lsp` extra (pygls, lsprotocol), which the dev extra
installs; without it these tests are skipped, saying so (CI requires them: conftest.editor_tool_missing).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, editor_tool_missing, run_cli
from lsp_client import LanguageServer
from runner.report.explain import explain
from runner.spec.validate import validate_text

SHIPPED = sorted([*ROOT.glob("specs/**/*.yaml"), *ROOT.glob("examples/**/*.yaml")])
GOLDEN = sorted((ROOT / "tests" / "cases" / "diagnostics").glob("*/spec.yaml"))
CURSOR = "<|>"

SPEC = """\
name: lsp
model: {kind: mlp, input_dim: 16, hidden: [32], classes: 4}
data: {kind: synthetic-classification, samples: 512, features: 16, classes: 4}
train: {epochs: 2, batch_size: 32}
runs:
  single: {description: one process}
  dual: {launch: {processes: 2}, train: {batch_size: 16}}
  dual-bf16:
    extends: dual
    launch: {mixed_precision: bf16}
expect:
  - {kind: speedup, run: dual, baseline: single, at_least: 1.5}
"""


def _start(folder: Path, *options: str) -> LanguageServer:
    if importlib.util.find_spec("pygls") is None:
        editor_tool_missing("pygls is not installed: the accel-run lsp tests need pip install -e '.[lsp]'")
    return LanguageServer([sys.executable, "-m", "runner", "lsp", *options], {}, folder)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LanguageServer]:
    """The server as an editor starts it: it checks specs and leaves other YAML files alone."""
    language_server = _start(tmp_path_factory.mktemp("lsp"))
    yield language_server
    language_server.close()


@pytest.fixture(scope="module")
def every_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LanguageServer]:
    """The server checking every file, as --validate checks every file it is given (an empty one too)."""
    language_server = _start(tmp_path_factory.mktemp("lsp-every-file"), "--every-file")
    yield language_server
    language_server.close()


def _published(server: LanguageServer, path: Path, text: str) -> list[tuple[int, int, str, str]]:
    """(line, column, severity, message) of what the server publishes for the text, 1-based in code points."""
    uri = server.open(path, text)
    lines = text.split("\n")
    out = []
    for found in server.wait_for_diagnostics(uri, version=server.versions[uri]):
        start = found["range"]["start"]
        line = lines[start["line"]] if start["line"] < len(lines) else ""
        column = len(line.encode("utf-16-le")[: 2 * start["character"]].decode("utf-16-le")) + 1
        severity = {1: "error", 2: "warning"}[found["severity"]]
        out.append((start["line"] + 1, column, severity, found["message"]))
    return out


@pytest.fixture(scope="module")
def cli_json() -> dict[str, list[tuple[int, int, str, str]]]:
    """`accel-run --validate --format json` of every shipped spec and golden mistake, by path: one process."""
    done = run_cli("--validate", "--format", "json", *map(str, [*SHIPPED, *GOLDEN]))
    return {
        entry["path"]: [(d["line"] or 1, d["col"] or 1, d["severity"], d["message"]) for d in entry["diagnostics"]]
        for entry in json.loads(done.stdout)["files"]
    }


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_diagnostics_of_a_shipped_spec_are_the_clis_json_ones(
    server: LanguageServer, cli_json: dict[str, list[tuple[int, int, str, str]]], path: Path
) -> None:
    assert _published(server, path, path.read_text(encoding="utf-8")) == cli_json[str(path)]


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.parent.name)
def test_the_diagnostics_of_each_golden_mistake_are_the_clis_json_ones(
    every_file: LanguageServer, cli_json: dict[str, list[tuple[int, int, str, str]]], path: Path
) -> None:
    assert _published(every_file, path, path.read_text(encoding="utf-8")) == cli_json[str(path)]


def test_a_yaml_file_that_is_no_spec_gets_nothing(server: LanguageServer, tmp_path: Path) -> None:
    workflow = "name: ci\non: [push]\njobs:\n  test: {runs-on: ubuntu-latest}\n"
    assert _published(server, tmp_path / "ci.yaml", workflow) == []
    assert _complete(server, tmp_path / "ci.yaml", workflow + f"run: {CURSOR}\n") == []
    # a spec is known by its modeline, or by a top-level name: beside a section, even mid-edit
    modeline = "# yaml-language-server: $schema=../schemas/experiment.schema.json\nname: x\n"
    assert [m for *_, m in _published(server, tmp_path / "new.yaml", modeline)] == [
        "missing required key 'model' at the top level",
        "missing required key 'data' at the top level",
        "missing required key 'train' at the top level",
    ]
    broken = SPEC.replace("train: {epochs: 2, batch_size: 32}", "train: {epochs: 2, batch_size: 32")
    assert [m for *_, m in _published(server, tmp_path / "broken.yaml", broken)][0].startswith("invalid YAML")


def test_errors_and_warnings_keep_the_did_you_mean_and_the_acknowledge_hint(server: LanguageServer) -> None:
    folder = ROOT / "tests" / "cases" / "diagnostics"
    typo = _published(
        server, folder / "unknown-key-top" / "spec.yaml", (folder / "unknown-key-top" / "spec.yaml").read_text()
    )
    assert typo == [(15, 1, "error", "unknown key 'lunch' (did you mean 'launch'?)")]
    warned = folder / "lr-warmup-too-long" / "spec.yaml"
    ((_, _, severity, message),) = _published(server, warned, warned.read_text())
    assert severity == "warning" and message.endswith("[acknowledge: warmup-too-long]")


def test_a_diagnostic_underlines_the_word_it_is_about(server: LanguageServer, tmp_path: Path) -> None:
    text = SPEC.replace("train: {epochs: 2,", "train: {epochs: 2, bach_size: 8,")
    uri = server.open(tmp_path / "spec.yaml", text)
    (found,) = server.wait_for_diagnostics(uri, version=server.versions[uri])
    assert found["range"] == {"start": {"line": 3, "character": 19}, "end": {"line": 3, "character": 28}}
    assert text.split("\n")[3][19:28] == "bach_size"


def test_the_diagnostics_follow_each_edit_to_the_last(server: LanguageServer, tmp_path: Path) -> None:
    # the server answers every change with the diagnostics of that version; the timeout only guards a hang
    path = tmp_path / "edited.yaml"
    for steps in range(1, 21):
        uri = server.open(path, SPEC.replace("epochs: 2", f"epochs: {steps}"))
    assert server.wait_for_diagnostics(uri, timeout=10, version=server.versions[uri]) == []
    server.open(path, SPEC.replace("epochs: 2", "epochs: 0"))
    (found,) = server.wait_for_diagnostics(uri, timeout=10, version=server.versions[uri])
    assert found["message"] == "train.epochs must be >= 1, got 0"


# --- completion of the file's own runs ---------------------------------------------------------


def _complete(server: LanguageServer, path: Path, text: str) -> list[dict[str, Any]]:
    before = text[: text.index(CURSOR)]
    uri = server.open(path, text.replace(CURSOR, ""))
    line, character = before.count("\n"), len(before.split("\n")[-1])
    return server.completion_items(uri, line, character)


def test_after_run_and_baseline_the_files_runs_are_offered_in_file_order(
    server: LanguageServer, tmp_path: Path
) -> None:
    text = SPEC + f"  - {{kind: speedup, run: dual-bf16, baseline: {CURSOR}}}\n"
    items = _complete(server, tmp_path / "spec.yaml", text)
    assert [item["label"] for item in items] == ["single", "dual", "dual-bf16"]
    assert items[0]["detail"] == "one process"
    block = SPEC + f"  - kind: bound\n    metric: accuracy\n    run: du{CURSOR}\n"
    items = _complete(server, tmp_path / "spec.yaml", block)
    assert {item["label"] for item in items} == {"single", "dual", "dual-bf16"}
    assert {json.dumps(item["textEdit"]["range"]) for item in items} == {
        json.dumps({"start": {"line": 14, "character": 9}, "end": {"line": 14, "character": 11}})
    }


def test_after_extends_the_written_runs_but_its_own_are_offered(server: LanguageServer, tmp_path: Path) -> None:
    text = SPEC.replace("    extends: dual\n", f"    extends: {CURSOR}\n")
    assert [item["label"] for item in _complete(server, tmp_path / "spec.yaml", text)] == ["single", "dual"]


def test_matrix_cells_are_offered_and_quoted_where_a_comma_would_end_them(
    server: LanguageServer, tmp_path: Path
) -> None:
    text = (
        SPEC.split("runs:")[0]
        + "matrix:\n  launch.processes: [1, 2]\n  launch.mixed_precision: [no, bf16]\n"
        + f"expect:\n  - {{kind: speedup, run: {CURSOR}}}\n"
    )
    items = _complete(server, tmp_path / "spec.yaml", text)
    cell = "processes=2,mixed_precision=bf16"
    assert cell in [item["label"] for item in items] and len(items) == 4
    assert {item["textEdit"]["newText"] for item in items if item["label"] == cell} == {f"'{cell}'"}


def test_elsewhere_the_server_offers_nothing_and_leaves_keys_to_the_schema(
    server: LanguageServer, tmp_path: Path
) -> None:
    assert _complete(server, tmp_path / "spec.yaml", SPEC.replace("train: {", f"train: {{{CURSOR}")) == []


# --- hover: a run as --explain shows it -----------------------------------------------------------


def test_a_run_name_hovers_with_its_differences_from_the_baseline(server: LanguageServer, tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    uri = server.open(path, SPEC)
    server.wait_for_diagnostics(uri, version=server.versions[uri])
    line = SPEC.split("\n").index("  - {kind: speedup, run: dual, baseline: single, at_least: 1.5}")
    hover = server.hover(uri, line, len("  - {kind: speedup, run: du"))
    validated = validate_text(SPEC, str(path)).spec
    assert validated is not None
    as_explained = explain(validated, only=("dual",)).split("---\n", 1)[1]  # the run's document of --explain
    assert as_explained in hover
    assert "processes: 2                          # single: 1" in hover
    key_line = SPEC.split("\n").index("  dual-bf16:")
    assert "extends" not in server.hover(uri, key_line, 4) and "mixed_precision: bf16" in server.hover(uri, key_line, 4)


def test_while_the_file_has_errors_the_hover_is_of_its_last_valid_version(
    server: LanguageServer, tmp_path: Path
) -> None:
    path = tmp_path / "spec.yaml"
    uri = server.open(path, SPEC)
    server.wait_for_diagnostics(uri, version=server.versions[uri])
    broken = SPEC.replace("samples: 512", "samples: -1")
    server.open(path, broken)
    assert server.wait_for_diagnostics(uri, version=server.versions[uri]) != []
    line = broken.split("\n").index("  - {kind: speedup, run: dual, baseline: single, at_least: 1.5}")
    hover = server.hover(uri, line, len("  - {kind: speedup, run: du"))
    assert "(as of the last version of this file without errors)" in hover
    assert "#   samples: 512 train + 1,000 eval" in hover


# --- without the extra -------------------------------------------------------------------------


def test_without_the_extra_accel_run_lsp_says_how_to_install_it() -> None:
    # pygls made unimportable in a real process, as on an install without the extra
    code = "import sys; sys.modules['pygls'] = None; from runner.cli import main; sys.exit(main(['lsp']))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == (
        "accel-run lsp: the language server needs pygls and lsprotocol (pygls is not installed): "
        "pip install 'accel-run[lsp]'\n"
    )
    assert done.stdout == ""
