"""The editor agrees with the CLI: the real yaml-language-server, driven over stdio, with our schema.

yaml-language-server is the server behind the YAML support of VS Code, Neovim, Helix and others;
`make editor-tools` installs the pinned version into .tools/yaml-ls (`make test` tries it where npm
is). Without node or without the server these tests are skipped, saying why in one line; where CI
requires them (ACCEL_RUN_REQUIRE_EDITOR=1, set by .ci/run where node is) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REQUIRE_EDITOR, ROOT, editor_tool_missing
from lsp_client import LanguageServer
from runner.spec.models import (
    GPU_IDS_PATTERN,
    NAME_PATTERN,
    RULE_ACCURACY_FRACTION,
    RULE_EVAL_BOTH,
    RULE_FP16_ON_CPU,
    RULE_LENGTH_BOTH,
    RULE_NO_BOUND,
    RULE_NO_TOLERANCE,
    RULE_VISIBLE_DEVICES_AND_GPU_IDS,
    SLURM_TIME_PATTERN,
    rule_script_excludes,
)
from runner.spec.rules.names import RESULT_FOLDER_RULE
from runner.spec.schema_rules import PATTERN_MESSAGES
from runner.spec.validate import validate_text

# The server's launcher; ACCEL_RUN_YAML_LS names another (the test of the missing-server failure uses it).
SERVER = Path(
    os.environ.get(
        "ACCEL_RUN_YAML_LS",
        ROOT / ".tools" / "yaml-ls" / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server",
    )
)
SCHEMA = ROOT / "schemas" / "experiment.schema.json"
CURSOR = "<|>"

BASE = f"""\
# yaml-language-server: $schema={SCHEMA.as_uri()}
name: editor
model: {{kind: mlp, input_dim: 16, hidden: [32], classes: 4}}
data: {{kind: synthetic-classification, samples: 512, features: 16, classes: 4}}
train:
  epochs: 2
  batch_size: 32
launch:
  processes: 1
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LanguageServer]:
    node = shutil.which("node")
    if node is None:
        editor_tool_missing("node is not installed: the yaml-language-server tests need node (and `make editor-tools`)")
    if not SERVER.is_file():
        editor_tool_missing(f"yaml-language-server is not installed at {SERVER}: run `make editor-tools` (needs npm)")
    assert node is not None
    settings = {"yaml": {"validate": True, "completion": True, "hover": True, "schemas": {}}}
    language_server = LanguageServer([node, str(SERVER), "--stdio"], settings, tmp_path_factory.mktemp("editor"))
    yield language_server
    language_server.close()


class Editor:
    """One document open in the server, as a person typing it."""

    count = 0

    def __init__(self, server: LanguageServer, folder: Path, text: str) -> None:
        Editor.count += 1
        self.server = server
        self.text = text.replace(CURSOR, "")
        self.cursor = _position(text, CURSOR) if CURSOR in text else (0, 0)
        self.path = folder / f"spec{Editor.count}.yaml"
        self.path.write_text(self.text, encoding="utf-8")
        self.uri = server.open(self.path, self.text)

    def completions(self) -> list[str]:
        return self.server.completion_labels(self.uri, *self.cursor)

    def diagnostics(self) -> list[tuple[int, str]]:
        """(1-based line, message) of every problem the editor underlines."""
        found = self.server.wait_for_diagnostics(self.uri)
        return sorted((d["range"]["start"]["line"] + 1, d["message"]) for d in found)

    def hover(self, marker: str) -> str:
        line, character = _position(self.text, marker)
        return self.server.hover(self.uri, line, character - 1)


def _position(text: str, marker: str) -> tuple[int, int]:
    """0-based line and character just after the first `marker` in `text`."""
    before = text[: text.index(marker) + len(marker)]
    lines = before.split("\n")
    return len(lines) - 1, len(lines[-1]) - (len(marker) if marker == CURSOR else 0)


def _cli(text: str) -> list[tuple[int, str]]:
    """(line, message) of the CLI's errors for the same text."""
    result = validate_text(text, "spec.yaml")
    return sorted((d.line or 0, d.message) for d in result.errors)


@pytest.fixture
def edit(server: LanguageServer, tmp_path: Path):  # type: ignore[no-untyped-def]
    return lambda text: Editor(server, tmp_path, text)


# --- completion ---------------------------------------------------------------------------------


def test_after_kind_mlp_the_mlp_fields_are_offered(edit) -> None:  # type: ignore[no-untyped-def]
    text = BASE.replace(
        "model: {kind: mlp, input_dim: 16, hidden: [32], classes: 4}", f"model:\n  kind: mlp\n  {CURSOR}"
    )
    offered = edit(text).completions()
    assert {"input_dim", "hidden", "classes", "activation", "dropout"} <= set(offered)
    assert "vocab" not in offered  # a transformer's field, not an mlp's


def test_inside_a_run_the_section_keys_are_offered(edit) -> None:  # type: ignore[no-untyped-def]
    offered = edit(BASE + f"runs:\n  dual:\n    launch:\n      {CURSOR}\n").completions()
    assert {"processes", "mixed_precision", "gpu_ids", "main_process_port"} <= set(offered)


def test_inside_a_matrix_the_settings_are_offered(edit) -> None:  # type: ignore[no-untyped-def]
    offered = edit(BASE + f"matrix:\n  {CURSOR}\n").completions()
    assert {"launch.processes", "launch.mixed_precision", "train.gradient_accumulation_steps"} <= set(offered)
    assert {"include", "exclude"} <= set(offered)


def test_enum_values_are_offered(edit) -> None:  # type: ignore[no-untyped-def]
    offered = edit(BASE.replace("  processes: 1\n", f"  mixed_precision: {CURSOR}\n")).completions()
    assert offered == ['"no"', "bf16", "fp16"]


def test_enum_values_are_offered_inside_a_matrix_list(edit) -> None:  # type: ignore[no-untyped-def]
    offered = edit(BASE + f"matrix:\n  launch.mixed_precision: [{CURSOR}]\n").completions()
    assert {"bf16", "fp16"} <= set(offered)


# --- diagnostics: the editor flags what the CLI refuses ----------------------------------------


def test_a_typo_is_flagged_where_the_cli_flags_it(edit) -> None:  # type: ignore[no-untyped-def]
    text = BASE.replace("  processes: 1\n", "  precison: bf16\n")
    assert edit(text).diagnostics() == [(9, "Property precison is not allowed.")]
    assert _cli(text) == [(9, "unknown key 'precison' in launch (did you mean 'mixed_precision'?)")]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("  batch_size: '64'\n", 'Incorrect type. Expected "integer".'),
        ("  optimizer: {kind: adamw, lr: '0.001'}\n", 'Incorrect type. Expected "number".'),
        ("  optimizer: {kind: sgd, momentum: 0.9, nesterov: yes}\n", 'Incorrect type. Expected "boolean".'),
    ],
)
def test_a_quoted_number_or_a_yes_is_refused_by_both(edit, line: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    text = BASE.replace("  batch_size: 32\n", line)
    assert edit(text).diagnostics() == [(7, expected)]
    assert [n for n, _ in _cli(text)] == [7]


def test_a_boolean_for_a_number_is_refused_by_both(edit) -> None:  # type: ignore[no-untyped-def]
    text = BASE.replace("  processes: 1\n", "  processes: true\n")
    assert edit(text).diagnostics() == [(9, 'Incorrect type. Expected "integer".')]
    assert _cli(text) == [
        (9, "launch.processes must be a whole number, got true (a boolean is not a number: write the number itself)")
    ]


def test_epochs_and_max_steps_together_say_what_the_cli_says(edit) -> None:  # type: ignore[no-untyped-def]
    text = BASE.replace("  epochs: 2\n", "  epochs: 2\n  max_steps: 100\n")
    assert edit(text).diagnostics() == [(7, RULE_LENGTH_BOTH)]
    assert _cli(text) == [(7, RULE_LENGTH_BOTH)]


def test_eval_samples_beside_eval_split_say_what_the_cli_says(edit) -> None:  # type: ignore[no-untyped-def]
    text = BASE.replace("  epochs: 2\n", "  epochs: 2\n  eval_samples: 64\n  eval_split: 0.1\n")
    assert edit(text).diagnostics() == [(8, RULE_EVAL_BOTH)]
    assert _cli(text) == [(8, RULE_EVAL_BOTH)]


def test_several_machines_are_flagged_by_both_where_they_are_written(edit) -> None:  # type: ignore[no-untyped-def]
    text = BASE.replace("  processes: 1\n", "  processes: 2\n  num_machines: 2\n")
    assert edit(text).diagnostics() == [(10, "Property num_machines is not allowed.")]
    ((line, message),) = _cli(text)
    assert line == 10 and "write engine: {kind: slurm, nodes: 2}" in message


def test_an_expectation_without_a_bound_says_what_the_cli_says(edit) -> None:  # type: ignore[no-untyped-def]
    text = BASE + "expect:\n  - {kind: bound, run: main, metric: accuracy}\n"
    assert edit(text).diagnostics() == [(11, RULE_NO_BOUND)]
    assert [message for _, message in _cli(text)] == [RULE_NO_BOUND]


def test_a_run_may_switch_from_epochs_to_max_steps(edit) -> None:  # type: ignore[no-untyped-def]
    text = BASE + "runs:\n  steps:\n    train: {epochs: null, max_steps: 50}\n"
    assert edit(text).diagnostics() == []
    assert _cli(text) == []


# --- matrix keys, entries and settings mappings: checked and completed like sections ---------------

MATRIX = "matrix:\n  launch.processes: [1, 2]\n"


@pytest.mark.parametrize(
    ("written", "line", "message"),
    [
        ("  train.batch_sise: [16, 32]\n", 12, "Property train.batch_sise is not allowed."),
        ("  incldue:\n    - {launch.processes: 2}\n", 12, "Property incldue is not allowed."),
        (
            "  include:\n    - {launch.processes: 2, train.bach_size: 16}\n",
            13,
            "Property train.bach_size is not allowed.",
        ),
        ("  mixed_precision: [no, bf61]\n", 12, 'Value is not accepted. Valid values: "no", "fp16", "bf16", null.'),
    ],
    ids=["key", "include", "entry", "bare-key-value"],
)
def test_a_typo_in_a_matrix_is_flagged_where_the_cli_flags_it(edit, written: str, line: int, message: str) -> None:  # type: ignore[no-untyped-def]
    text = BASE + MATRIX + written
    assert edit(text).diagnostics() == [(line, message)]
    assert [n for n, _ in _cli(text)] == [line]


def test_a_typo_in_an_expectations_settings_is_flagged_where_the_cli_flags_it(edit) -> None:  # type: ignore[no-untyped-def]
    text = BASE + MATRIX + "expect:\n  - kind: speedup\n    run: {launch.procesess: 2}\n    at_least: 1.5\n"
    assert edit(text).diagnostics() == [(14, "Property launch.procesess is not allowed.")]
    assert [n for n, _ in _cli(text)] == [14]


def test_inside_a_matrix_entry_and_a_settings_mapping_the_settings_are_offered(edit) -> None:  # type: ignore[no-untyped-def]
    entry = edit(BASE + MATRIX + f"  include:\n    - {CURSOR}\n").completions()
    assert {"launch.processes", "train.batch_size", "processes"} <= set(entry)
    selection = edit(BASE + MATRIX + f"expect:\n  - kind: bound\n    metric: accuracy\n    run:\n      {CURSOR}\n")
    assert {"launch.processes", "launch.mixed_precision"} <= set(selection.completions())


# --- kinds: dispatched on `kind`, each mistake named as the CLI names it ---------------------------


@pytest.mark.parametrize(
    ("before", "after", "line", "message"),
    [
        (
            "{kind: mlp,",
            "{kind: mpl,",
            3,
            "unknown kind for model; allowed: 'mlp', 'linear', 'transformer', 'huggingface'",
        ),
        (
            "  batch_size: 32\n",
            "  batch_size: 32\n  optimizer: adamw\n",
            8,
            "optimizer must be a mapping of keys to values, not the text 'adamw': write optimizer: {kind: adamw} "
            "(its other settings go in the same mapping)",
        ),
    ],
    ids=["kind-typo", "kind-without-mapping"],
)
def test_a_kind_mistake_is_named_in_the_clis_words(edit, before: str, after: str, line: int, message: str) -> None:  # type: ignore[no-untyped-def]
    text = BASE.replace(before, after)
    assert edit(text).diagnostics() == [(line, message)]
    assert [n for n, _ in _cli(text)] == [line]


def test_a_key_of_another_kind_is_flagged_on_its_own_line(edit) -> None:  # type: ignore[no-untyped-def]
    runs = "runs:\n  a: {}\n  b: {launch: {processes: 2}}\n"
    text = (
        BASE + runs + "expect:\n  - kind: speedup\n    run: b\n    baseline: a\n    metric: accuracy\n    at_least: 1\n"
    )
    assert edit(text).diagnostics() == [(17, "Property metric is not allowed.")]
    assert [n for n, _ in _cli(text)] == [17]


# --- the rules between keys, in the CLI's words -----------------------------------------------------

RUNS = "runs:\n  a: {}\n  b: {launch: {processes: 2}}\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (BASE + RUNS + "expect:\n  - {kind: close, run: b, baseline: a, metric: final_loss}\n", 14, RULE_NO_TOLERANCE),
        (
            BASE + RUNS + "expect:\n  - {kind: bound, run: a, metric: accuracy, at_least: 40}\n",
            14,
            f"{RULE_ACCURACY_FRACTION} (write 0.4 for 40%)",
        ),
        (BASE.replace("  processes: 1\n", "  device: cpu\n  mixed_precision: fp16\n"), 10, RULE_FP16_ON_CPU),
        (BASE + "runs:\n  a:\n    launch: {device: cpu, mixed_precision: fp16}\n", 12, RULE_FP16_ON_CPU),
        (BASE + "runs:\n  a:\n    train: {epochs: 3, max_steps: 10}\n", 12, RULE_LENGTH_BOTH),
        (BASE + "runs:\n  a:\n    train: {eval_samples: 10, eval_split: 0.1}\n", 12, RULE_EVAL_BOTH),
        (BASE + "script: {path: train.py}\n", 3, rule_script_excludes("model")),
        (
            BASE.replace(
                "  processes: 1\n", "  processes: 2\n  gpu_ids: [6, 7]\n  env: {CUDA_VISIBLE_DEVICES: '6,7'}\n"
            ),
            11,
            RULE_VISIBLE_DEVICES_AND_GPU_IDS,
        ),
        (BASE + "runs:\n  Summary.json: {}\n", 11, f"this run name {RESULT_FOLDER_RULE}"),
    ],
    ids=[
        "close-without-tolerance",
        "accuracy-as-percent",
        "fp16-on-cpu",
        "fp16-on-cpu-in-a-run",
        "epochs-and-max-steps-in-a-run",
        "eval-both-in-a-run",
        "script-with-model",
        "visible-devices-beside-gpu-ids",
        "run-named-like-a-result-file",
    ],
)
def test_a_rule_between_keys_is_flagged_on_the_clis_line(edit, text: str, line: int, message: str) -> None:  # type: ignore[no-untyped-def]
    editor = edit(text)
    (editor.path.parent / "train.py").write_text("")
    flagged = editor.diagnostics()
    assert (line, message) in flagged
    cli = validate_text(text, str(editor.path))
    assert line in {d.line for d in cli.errors}
    assert {n for n, _ in flagged} == {d.line for d in cli.errors}


@pytest.mark.parametrize(
    ("before", "after", "line", "message"),
    [
        ("name: editor", "name: my editor", 2, PATTERN_MESSAGES[NAME_PATTERN]),
        ("  processes: 1\n", "  processes: 2\n  gpu_ids: '6，7'\n", 10, PATTERN_MESSAGES[GPU_IDS_PATTERN]),
        (
            "  processes: 1\n",
            "  processes: 1\nengine: {kind: slurm, time: 2h}\n",
            10,
            PATTERN_MESSAGES[SLURM_TIME_PATTERN],
        ),
    ],
    ids=["name", "gpu-ids", "slurm-time"],
)
def test_a_pattern_is_explained_not_shown(edit, before: str, after: str, line: int, message: str) -> None:  # type: ignore[no-untyped-def]
    text = BASE.replace(before, after)
    assert edit(text).diagnostics() == [(line, message)]
    assert [n for n, _ in _cli(text)] == [line]


def test_a_yaml_1_1_directive_is_refused_by_both(edit) -> None:  # type: ignore[no-untyped-def]
    # the editor reads `no` as false under the directive; accel-run reads YAML 1.2 only and says so
    text = "%YAML 1.1\n---\n" + BASE.replace("  processes: 1\n", "  mixed_precision: no\n")
    assert edit(text).diagnostics() != []
    assert [n for n, _ in _cli(text)] == [1]


def test_every_shipped_spec_is_clean_in_the_editor(server: LanguageServer) -> None:
    for path in sorted([*ROOT.glob("specs/**/*.yaml"), *ROOT.glob("examples/**/*.yaml")]):
        uri = server.open(path, path.read_text(encoding="utf-8"))
        assert server.wait_for_diagnostics(uri) == [], path


# --- hover ------------------------------------------------------------------------------------


def test_hover_text_has_one_title_and_readable_section_names(edit) -> None:  # type: ignore[no-untyped-def]
    editor = edit(BASE + "runs:\n  dual:\n    launch: {processes: 2}\n")
    epochs = editor.hover("  epochs")
    assert epochs.startswith("#### Epochs\n\nPasses over the training data.")
    assert "||" not in epochs
    assert editor.hover("train").startswith("#### Train\n\nHow to train")
    assert editor.hover("{kind: ml").startswith("#### Kind\n\nBuilt-in model: a multi-layer perceptron.")
    assert "||" not in editor.hover("    launch")


def test_a_run_reference_hovers_with_its_own_text_and_offers_no_example_names(edit) -> None:  # type: ignore[no-untyped-def]
    text = BASE + RUNS + "expect:\n  - {kind: speedup, run: b, baseline: a, at_least: 1.5}\n"
    editor = edit(text)
    hover = editor.hover("run: b")
    assert hover.startswith("#### Run\n\nThe run expected to be faster. A run's name, or a mapping of settings")
    assert "folder name" not in hover and "Example" not in hover
    offered = edit(text.replace("baseline: a,", f"baseline: {CURSOR},")).completions()
    assert not {"single", "dual", "fp32", "large-single"} & set(offered)


# --- without the server: skipped saying why, never passed silently; required in CI ------------------


def _pytest_this_file(env: dict[str, str]) -> str:
    environment = {key: value for key, value in os.environ.items() if key != REQUIRE_EDITOR}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-k", "test_a_typo_is_flagged_where_the_cli_flags_it"]
        + ["-rsf", "-p", "no:cacheprovider", "-q"],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.stdout


def test_without_node_the_tests_are_skipped_saying_why(tmp_path: Path) -> None:
    out = _pytest_this_file({"PATH": str(tmp_path)})  # a PATH with no node on it
    assert "1 skipped" in out
    assert "node is not installed: the yaml-language-server tests need node (and `make editor-tools`)" in out


def test_with_node_but_no_server_the_tests_are_skipped_naming_the_make_target(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    out = _pytest_this_file({"ACCEL_RUN_YAML_LS": str(tmp_path / "missing")})
    assert "1 skipped" in out
    assert f"yaml-language-server is not installed at {tmp_path / 'missing'}: run `make editor-tools`" in out


def test_where_ci_requires_the_server_its_absence_fails_the_tests(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    out = _pytest_this_file({"ACCEL_RUN_YAML_LS": str(tmp_path / "missing"), REQUIRE_EDITOR: "1"})
    assert "1 error" in out
    assert f"yaml-language-server is not installed at {tmp_path / 'missing'}: run `make editor-tools`" in out
