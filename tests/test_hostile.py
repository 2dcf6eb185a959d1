"""Hostile and broken spec files: each is one located line (or one file-level line), never a traceback,
never an explosion of time or memory, and nothing in a spec is ever executed."""

from __future__ import annotations

import ast
import random
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, TINY_SPEC, run_cli
from runner.spec.validate import validate_file, validate_text

# Far above the sub-second times measured (see benchmarks/hostile_inputs.py): these bounds catch
# a hang or an explosion, they are not speed targets.
NO_HANG_S = 10.0


def validate_timed(path: Path) -> tuple[list[str], float]:
    start = time.perf_counter()
    result = validate_file(str(path))
    return [d.format() for d in result.diagnostics], time.perf_counter() - start


def test_a_billion_laughs_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    diagnostics, elapsed = validate_timed(path)
    assert len(diagnostics) == 1
    assert diagnostics[0].endswith(
        "error: the document expands to more than 20000 values through YAML aliases ('billion laughs'); "
        "a spec needs a few dozen"
    )
    assert elapsed < NO_HANG_S


def test_a_50_mb_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with open(path, "wb") as handle:
        handle.truncate(50 * 2**20)
    diagnostics, elapsed = validate_timed(path)
    assert diagnostics == [
        f"{path}:1:1: error: file is 50.0 MiB; a spec file may be at most 1 MiB (is this really a spec?)"
    ]
    assert elapsed < NO_HANG_S


DEEP = {
    # 100,000 nested brackets crash ruamel.yaml's C parser (a segmentation fault): refused before parsing
    "flow": ("name: " + "[" * 100_000 + "]" * 100_000 + "\n", "1:70"),
    "block": ("".join("  " * i + f"k{i}:\n" for i in range(300)), "65:129"),
    "dashes": ("- " * 100_000 + "x\n", "1:1"),
}


@pytest.mark.parametrize("shape", list(DEEP))
def test_deep_nesting_is_refused_before_parsing(tmp_path: Path, shape: str) -> None:
    text, where = DEEP[shape]
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    diagnostics, elapsed = validate_timed(path)
    assert diagnostics == [f"{path}:{where}: error: nesting is too deep (a spec needs about 5 levels; limit 64)"]
    assert elapsed < NO_HANG_S


def test_a_megabyte_of_dense_values_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "dense.yaml"
    path.write_text("a: {" + "b: [1, 2], " * 90_000 + "}\n")
    diagnostics, elapsed = validate_timed(path)
    assert diagnostics == [f"{path}:1:73329: error: the file holds more than 20000 values; a spec needs a few hundred"]
    assert elapsed < NO_HANG_S


def test_binary_garbage_is_one_located_line(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "garbage.yaml"
    path.write_bytes(bytes(rng.randrange(256) for _ in range(4096)))
    diagnostics, _ = validate_timed(path)
    assert len(diagnostics) == 1
    assert diagnostics[0].startswith(f"{path}:") and ": error: " in diagnostics[0]


def test_a_spec_path_that_is_a_directory(tmp_path: Path) -> None:
    validate = run_cli("--validate", str(tmp_path))
    run = run_cli(str(tmp_path))
    assert validate.returncode == 1 and run.returncode == 2
    line = f"{tmp_path}:1:1: error: is a directory, not a spec file (give the path of a .yaml file)"
    assert validate.stdout.splitlines()[0] == line
    assert run.stderr.splitlines()[0] == line
    assert "Traceback" not in validate.stderr + run.stderr


def test_running_an_invalid_spec_exits_2_before_anything_starts(tmp_path: Path) -> None:
    path = tmp_path / "nan.yaml"
    path.write_text(TINY_SPEC.replace("epochs: 2", "epochs: .nan"))
    done = run_cli(str(path), "--output", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == f"{path}:4:17: error: train.epochs must be a finite number, got nan"
    assert not (tmp_path / "out").exists()


def test_python_tags_are_data_errors_not_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "tag.yaml"
    path.write_text(TINY_SPEC + f'description: !!python/object/apply:os.system ["touch {marker}"]\n')
    diagnostics, _ = validate_timed(path)
    assert diagnostics == [
        f"{path}:5:14: error: YAML tag '!!python/object/apply:os.system' is not allowed in a spec (write plain values)"
    ]
    assert not marker.exists()


def test_no_command_is_ever_built_as_a_shell_string() -> None:
    """shell=True, os.system and os.popen appear nowhere in the package or the benchmarks."""
    offenders = []
    for path in [*ROOT.glob("runner/**/*.py"), *ROOT.glob("benchmarks/*.py")]:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                if func in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"):
                    offenders.append(f"{path.name}:{node.lineno} {func}")
                for keyword in node.keywords:
                    if keyword.arg == "shell" and not (
                        isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                    ):
                        offenders.append(f"{path.name}:{node.lineno} shell=")
    assert offenders == []


# --- fuzzing ------------------------------------------------------------------------------------

VALID_TEXTS = [
    p.read_text(encoding="utf-8") for p in sorted([*ROOT.glob("specs/*.yaml"), *ROOT.glob("examples/*.yaml")])
]
YAMLISH = st.text(
    alphabet=st.sampled_from(list("abcdekmnopstx01289 :-[]{},&*!|>'\"#\n\t.~?%@\\") + ["，", "\ufeff", "é"]),
    max_size=300,
)


def assert_located(text: str) -> None:
    result = validate_text(text, "fuzz.yaml")  # must not raise
    for diag in result.diagnostics:
        assert diag.path == "fuzz.yaml"
        assert diag.line is not None and diag.line >= 1 and diag.col is not None and diag.col >= 1
        assert diag.message and "\n" not in diag.message
    if result.spec is None:
        assert result.errors, "an invalid spec must say why"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(YAMLISH)
def test_fuzz_random_yamlish_text(text: str) -> None:
    assert_located(text)


@st.composite
def mutated_specs(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(VALID_TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "replace", "duplicate-line", "swap-lines"]))
        lines = text.splitlines(keepends=True)
        if kind == "delete" and text:
            start = draw(st.integers(0, len(text) - 1))
            text = text[:start] + text[start + draw(st.integers(1, 20)) :]
        elif kind == "insert":
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(YAMLISH.filter(lambda s: len(s) < 20)) + text[at:]
        elif kind == "replace":
            token = draw(
                st.sampled_from(["no", "1e30", ".nan", "-1", "null", "[]", "{}", "*x", "&x", "! t", '"6，7"', "0x10"])
            )
            words = text.split(" ")
            index = draw(st.integers(0, len(words) - 1))
            words[index] = token
            text = " ".join(words)
        elif kind == "duplicate-line" and lines:
            index = draw(st.integers(0, len(lines) - 1))
            lines.insert(index, lines[index])
            text = "".join(lines)
        elif kind == "swap-lines" and len(lines) > 1:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_specs())
def test_fuzz_mutations_of_the_shipped_specs(text: str) -> None:
    assert_located(text)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=512))
def test_fuzz_random_bytes(data: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("bytes") / "spec.yaml"
    path.write_bytes(data)
    result = validate_file(str(path))
    assert all(d.line is not None and d.line >= 1 for d in result.diagnostics)
    assert result.spec is None or not result.errors


def test_validation_writes_nothing(tmp_path: Path) -> None:
    for text in VALID_TEXTS:
        (tmp_path / "spec.yaml").write_text(text, encoding="utf-8")
        validate_file(str(tmp_path / "spec.yaml"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # no cache, no results, no copies
