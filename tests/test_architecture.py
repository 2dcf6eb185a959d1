"""The layout's promises, checked by importing: light modules stay light, stages depend one way."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT


def modules_after_import(module: str) -> set[str]:
    """Every module loaded by importing `module` in a fresh interpreter."""
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout))


VALIDATION_STACK = {
    "runner.spec.load",
    "runner.spec.validate",
    "runner.spec.diagnose",
    "runner.spec.merge",
    "runner.spec.matrix",
    "runner.spec.expectations",
    "runner.spec.settings",
    "runner.spec.rules",
    "runner.spec.set_option",
    "ruamel",
}
PROCESS_CONTROL = {"runner.engines.local", "psutil", "runner.pipeline"}


def test_a_worker_rank_does_not_import_the_compiler_or_the_validation_stack() -> None:
    loaded = modules_after_import("runner.worker.train")
    assert not loaded & (VALIDATION_STACK | {"runner.plan.compile", "runner.plan.machine"})


@pytest.mark.parametrize(
    "module",
    ["runner.verdicts.check", "runner.verdicts.rounds", "runner.report.text", "runner.results.summary"],
)
def test_verdicts_and_reports_do_not_import_process_control_or_torch(module: str) -> None:
    loaded = modules_after_import(module)
    assert not loaded & (PROCESS_CONTROL | {"torch", "accelerate"})


def test_validation_imports_neither_torch_nor_accelerate() -> None:
    loaded = modules_after_import("runner.spec.validate")
    assert not loaded & {"torch", "accelerate", "psutil"}


@pytest.mark.parametrize("module", ["runner.editor.server", "runner.report.explain"])
def test_the_language_server_imports_neither_torch_nor_accelerate(module: str) -> None:
    # runner.report.explain: what a hover imports on first use
    pytest.importorskip("pygls", reason="pygls is not installed (pip install -e '.[lsp]')")
    loaded = modules_after_import(module)
    assert not loaded & {"torch", "accelerate", "psutil"}


def modules_after_validating(spec: str) -> set[str]:
    """The top-level packages loaded by `accel-run --validate SPEC` (which must be valid) in a fresh interpreter."""
    code = (
        "import contextlib, io, json, sys\n"
        "from runner.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main(['--validate', {spec!r}])\n"
        "print(json.dumps([code, sorted(sys.modules)]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    code, loaded = json.loads(done.stdout)
    assert code == 0
    return {m.split(".")[0] for m in loaded}


def test_validate_leaves_the_language_server_library_unimported() -> None:
    assert not modules_after_validating("specs/day6.yaml") & {"pygls", "lsprotocol", "cattrs", "torch", "accelerate"}


def test_a_valid_spec_is_checked_without_jsonschema_or_the_did_you_mean_matcher() -> None:
    # the editor's schema is generated from the models, never read back; difflib only words a mistake
    assert not modules_after_validating("specs/day6.yaml") & {"jsonschema", "difflib"}


def test_the_reporting_api_a_user_script_imports_is_standard_library_only() -> None:
    loaded = modules_after_import("runner.track")
    assert {m for m in loaded if m.startswith("runner")} == {
        "runner",
        "runner.track",
        "runner.worker",
        "runner.worker.reports",
        "runner.worker.report_checks",
        "runner.worker.device",
        "runner.contract",
        "runner.jsonio",
        "runner.errors",
        "runner.vocab",
    }
    assert not loaded & {"torch", "accelerate", "numpy", "pydantic", "psutil", "ruamel"}


def test_the_vocabulary_is_a_leaf() -> None:
    assert {m for m in modules_after_import("runner.vocab") if m.startswith("runner")} == {"runner", "runner.vocab"}


@pytest.mark.parametrize("module", ["runner.contract", "runner.metrics"])
def test_the_launch_contract_and_the_metrics_table_are_standard_library_leaves(module: str) -> None:
    # every worker rank and every user script's process import the contract; --validate, the table
    loaded = modules_after_import(module)
    assert {m for m in loaded if m.startswith("runner")} == {"runner", module}
    assert {m.split(".")[0] for m in loaded - modules_after_import("json")} <= set(sys.stdlib_module_names) | {"runner"}


def test_a_newcomer_finds_each_stage_by_its_folder() -> None:
    packages = sorted(p.name for p in (ROOT / "runner").iterdir() if (p / "__init__.py").is_file())
    assert packages == ["editor", "engines", "plan", "report", "results", "spec", "verdicts", "worker"]


def test_the_install_prints_no_setuptools_warning_wall() -> None:
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    # a TOML table here makes every setuptools >= 77 build print the same 15-line warning three times
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in pyproject["build-system"]["requires"]
    # the flat layout named as such: the editable install is a .pth file, which setuptools makes without
    # its 9-line "Editable installation" warning (a meta path finder's)
    assert pyproject["tool"]["setuptools"]["package-dir"] == {"": "."}
