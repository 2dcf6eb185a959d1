"""`accel-run --validate`, `--explain`, `--schema` and `--help`, run as a user runs them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, TINY_SPEC, run_cli, run_in_terminal

BROKEN = TINY_SPEC.replace("train: {epochs: 2, batch_size: 32}", "train: {epochs: 2, batch_sise: 32}")


def test_valid_files_exit_0_with_a_summary(write_spec) -> None:  # type: ignore[no-untyped-def]
    path = write_spec(TINY_SPEC)
    done = run_cli("--validate", str(path))
    assert done.returncode == 0
    assert done.stdout == "1 file checked: all valid (0 errors, 0 warnings)\n"
    assert done.stderr == ""


def test_errors_exit_1_one_located_line_each(write_spec) -> None:  # type: ignore[no-untyped-def]
    good, bad = write_spec(TINY_SPEC, "good.yaml"), write_spec(BROKEN, "bad.yaml")
    done = run_cli("--validate", str(good), str(bad))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"{bad}:4:20: error: unknown key 'batch_sise' in train (did you mean 'batch_size'?)",
        "2 files checked: 1 invalid (1 error, 0 warnings)",
    ]
    assert "Traceback" not in done.stderr


def test_usage_errors_exit_2() -> None:
    assert run_cli("--validate").returncode == 2
    assert run_cli("--no-such-flag").returncode == 2
    assert run_cli("--repeats", "0", "specs/day6.yaml").returncode == 2


def test_strict_turns_warnings_into_errors() -> None:
    relaxed = run_cli("--validate", "specs/day6.yaml")
    strict = run_cli("--validate", "--strict", "specs/day6.yaml")
    assert relaxed.returncode == 0 and ": warning: " in relaxed.stdout
    assert strict.returncode == 1 and ": warning: " not in strict.stdout and ": error: speedup of" in strict.stdout


def test_json_format_carries_the_same_facts_with_key_paths(write_spec) -> None:  # type: ignore[no-untyped-def]
    bad = write_spec(BROKEN)
    done = run_cli("--validate", "--format", "json", str(bad))
    assert done.returncode == 1
    payload = json.loads(done.stdout)
    assert payload["summary"] == {"files": 1, "valid": 0, "invalid": 1, "errors": 1, "warnings": 0}
    assert payload["files"][0]["diagnostics"] == [
        {
            "path": str(bad),
            "line": 4,
            "col": 20,
            "severity": "error",
            "message": "unknown key 'batch_sise' in train (did you mean 'batch_size'?)",
            "key_path": ["train", "batch_sise"],
        }
    ]


def test_a_terminal_gets_the_source_line_and_a_caret(write_spec) -> None:  # type: ignore[no-untyped-def]
    bad = write_spec(BROKEN)
    code, screen = run_in_terminal("--validate", str(bad))
    plain = re.sub(r"\x1b\[[0-9;]*m", "", screen)
    assert code == 1
    assert "    4 | train: {epochs: 2, batch_sise: 32}\n      | " + " " * 19 + "^\n" in plain


def test_explain_shows_each_run_resolved_with_its_figures() -> None:
    done = run_cli("--explain", "specs/day6.yaml")
    assert done.returncode == 0
    out = done.stdout
    assert out.startswith("# day6: 9 run(s), baseline 'single'\n")
    assert "# run 'large-dual': train_large, 2 processes, fp32 (global batch 512)" in out
    assert "#   parameters: 31,493,642 (31.5M)" in out
    assert "#   global batch: 512 = batch_size 256 x 2 process(es) x 1 accumulation" in out
    assert "  mixed_precision: 'no'\n" in out  # quoted, so a YAML 1.1 reader keeps it a string


def test_schema_prints_the_committed_schema() -> None:
    done = run_cli("--schema")
    assert done.returncode == 0
    assert done.stdout == (ROOT / "schemas" / "experiment.schema.json").read_text()


def test_help_teaches_and_ends_with_runnable_examples() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    assert "exit codes:" in done.stdout
    assert done.stdout.rstrip().splitlines()[-1].strip().startswith("accel-run --report")
    assert "accel-run --validate specs/*.yaml" in done.stdout


def test_a_missing_spec_is_a_clean_usage_error() -> None:
    done = run_cli("specs/nope.yaml")
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == "specs/nope.yaml:1:1: error: no such file"
    assert "Traceback" not in done.stderr


def test_python_dash_m_and_the_console_script_agree() -> None:
    script = Path(sys.executable).parent / "accel-run"
    assert script.exists()
    via_script = subprocess.run(
        [str(script), "--validate", "specs/day5.yaml"], cwd=ROOT, capture_output=True, text=True
    )
    assert via_script.stdout == run_cli("--validate", "specs/day5.yaml").stdout


def test_dry_run_writes_configs_and_commands_and_starts_nothing(tmp_path: Path) -> None:
    done = run_cli("--dry-run", "specs/day5.yaml", "--output", str(tmp_path))
    assert done.returncode == 0, done.stderr
    (folder,) = (tmp_path / "day5").iterdir()
    for run in ("single", "dual"):
        files = {p.name for p in (folder / run).iterdir()}
        assert files == {"accelerate_config.yaml", "command.txt", "plan.json"}  # no logs: nothing ran
    assert done.stdout.count(" launch --config_file ") == 2
    import torch

    # with a GPU the processes use it; without one they form a gloo group on the CPU
    assert ("ACCELERATE_USE_CPU=true" in done.stdout) is not torch.cuda.is_available()


def test_only_names_a_run_that_does_not_exist() -> None:
    done = run_cli("specs/day5.yaml", "--only", "duel")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "accel-run: error: --only names no run: 'duel' (did you mean 'dual'?); runs: single, dual"
    )


# --- where specs are linted: GitHub Actions annotations, pre-commit, acknowledged warnings ---------

CONFOUNDED = TINY_SPEC + (
    "runs:\n"
    "  single: {}\n"
    "  dual-bf16: {launch: {processes: 2, mixed_precision: bf16}, train: {batch_size: 16}}\n"
    "expect:\n"
    "  - {kind: speedup, run: dual-bf16, baseline: single, at_least: 1.5}\n"
)


def test_github_format_prints_one_annotation_per_diagnostic(write_spec) -> None:  # type: ignore[no-untyped-def]
    bad = write_spec(BROKEN, "bad.yaml")
    warned = write_spec(CONFOUNDED, "warned.yaml")
    done = run_cli("--validate", "--format", "github", str(bad), str(warned))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"::error file={bad},line=4,col=20::unknown key 'batch_sise' in train (did you mean 'batch_size'?)",
        f"::warning file={warned},line=9,col=5::speedup of 'dual-bf16' over 'single' is confounded: the runs differ "
        "in launch.mixed_precision ('bf16' vs 'no') and launch.processes (2 vs 1), so the speedup cannot be "
        "credited to one of them; compare runs that differ in one setting [acknowledge: confounded]",
        "2 files checked: 1 invalid (1 error, 1 warning)",
    ]


def test_github_format_escapes_what_a_workflow_command_cannot_hold(write_spec) -> None:  # type: ignore[no-untyped-def]
    bad = write_spec(BROKEN, "a,b:c.yaml")
    done = run_cli("--validate", "--format", "github", str(bad))
    escaped = str(bad).replace(":", "%3A").replace(",", "%2C")
    assert done.stdout.splitlines()[0].startswith(f"::error file={escaped},line=4,col=20::unknown key")


def test_github_format_is_for_validate_only() -> None:
    done = run_cli("--explain", "--format", "github", "specs/day5.yaml")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "accel-run: error: --format github is for --validate (GitHub Actions annotations of its diagnostics)"
    )


def test_an_acknowledged_warning_keeps_strict_usable(write_spec) -> None:  # type: ignore[no-untyped-def]
    warned = write_spec(CONFOUNDED, "warned.yaml")
    acknowledged = write_spec(
        CONFOUNDED.replace("at_least: 1.5}", "at_least: 1.5, acknowledge: [confounded]}"), "acknowledged.yaml"
    )
    assert run_cli("--validate", "--strict", str(warned)).returncode == 1
    done = run_cli("--validate", "--strict", str(acknowledged))
    assert done.returncode == 0, done.stdout
    assert done.stdout == "1 file checked: all valid (0 errors, 0 warnings)\n"


def test_the_pre_commit_hook_runs_validate_on_spec_files() -> None:
    from ruamel.yaml import YAML

    (hook,) = YAML(typ="safe").load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "accel-run-validate"
    assert hook["language"] == "python"
    entry = hook["entry"].split()
    assert entry == ["accel-run", "--validate"]
    assert 'accel-run = "runner.cli:main"' in (ROOT / "pyproject.toml").read_text()  # what pre-commit installs
    files = re.compile(hook["files"])
    for path in ("specs/day6.yaml", "specs/sub/x.yml", "examples/minimal.yaml"):
        assert files.search(path), path
    for path in (
        ".github/workflows/ci.yaml",
        "results/day6/x/spec.yaml",
        "specs/day6.yaml.bak",
        ".pre-commit-hooks.yaml",
    ):
        assert not files.search(path), path
    shipped = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("specs/*.yaml"), *ROOT.glob("examples/*.yaml")])
    assert all(files.search(p) for p in shipped)
    done = run_cli(*entry[1:], *shipped)  # as pre-commit runs it: the entry, then the staged files
    assert done.returncode == 0, done.stdout


def test_a_newline_in_an_env_value_is_refused_at_the_value(write_spec) -> None:  # type: ignore[no-untyped-def]
    """The probe's value: it ended command.txt's comment and started a shell line. Refused, located, at once."""
    path = write_spec(TINY_SPEC + 'launch: {env: {FOO: "x\\ntouch /tmp/pwned\\n"}}\n')
    done = run_cli("--validate", "--format", "json", str(path))
    assert done.returncode == 1
    (diagnostic,) = json.loads(done.stdout)["files"][0]["diagnostics"]
    assert diagnostic == {
        "path": str(path),
        "line": 5,
        "col": 21,
        "severity": "error",
        "message": "launch.env.FOO contains a line break (\\n), which would start a new line in command.txt, "
        "job.sbatch or the report (a line of shell, in a script); write it on one line",
        "key_path": ["launch", "env", "FOO"],
    }
    running = run_cli(str(path), "--output", str(path.parent / "out"))
    assert running.returncode == 2 and not (path.parent / "out").exists()  # nothing written, nothing started
