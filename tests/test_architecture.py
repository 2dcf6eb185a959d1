"""The layout's promises, checked by importing: light modules stay light, stages depend one way."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import typing
from pathlib import Path

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
PROCESS_CONTROL = {"runner.engines.local", "psutil", "runner.pipeline", "runner.session.run"}


def test_a_worker_rank_does_not_import_the_compiler_or_the_validation_stack() -> None:
    loaded = modules_after_import("runner.worker.train")
    assert not loaded & (VALIDATION_STACK | {"runner.plan.compile", "runner.plan.machine"})


@pytest.mark.parametrize(
    "module",
    [
        "runner.verdicts.check",
        "runner.verdicts.rounds",
        "runner.report.text",
        "runner.results.summary",
        "runner.session.summary",
    ],
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


def test_the_engine_registry_is_standard_library_only() -> None:
    # the CLI reads --engine's choices from it, and --validate its kinds' spec rules
    loaded = modules_after_import("runner.engines.kinds")
    assert {m for m in loaded if m.startswith("runner")} == {"runner", "runner.engines", "runner.engines.kinds"}
    assert not loaded & {"pydantic", "torch", "psutil", "ruamel"}


@pytest.mark.parametrize("module", ["runner.contract", "runner.metrics"])
def test_the_launch_contract_and_the_metrics_table_are_standard_library_leaves(module: str) -> None:
    # every worker rank and every user script's process import the contract; --validate, the table
    loaded = modules_after_import(module)
    assert {m for m in loaded if m.startswith("runner")} == {"runner", module}
    assert {m.split(".")[0] for m in loaded - modules_after_import("json")} <= set(sys.stdlib_module_names) | {"runner"}


def test_a_newcomer_finds_each_stage_by_its_folder() -> None:
    packages = sorted(p.name for p in (ROOT / "runner").iterdir() if (p / "__init__.py").is_file())
    assert packages == ["editor", "engines", "plan", "report", "results", "session", "spec", "verdicts", "worker"]


def test_the_install_prints_no_setuptools_warning_wall() -> None:
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    # a TOML table here makes every setuptools >= 77 build print the same 15-line warning three times
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in pyproject["build-system"]["requires"]
    # the flat layout named as such: the editable install is a .pth file, which setuptools makes without
    # its 9-line "Editable installation" warning (a meta path finder's)
    assert pyproject["tool"]["setuptools"]["package-dir"] == {"": "."}


# --- the static guards: every import, read with ast (function-level and TYPE_CHECKING ones too) ---

# The stages in the order they may import each other, derived from the code: a module imports
# only modules of its own stage or an earlier one. A module's stage is its longest matching prefix.
# - words: the shared vocabulary, standard library only (the engine registry names its kinds' parts
#   as text, so --validate and the CLI read it without importing any of them);
# - results before engines: an engine writes its logs through results.nofollow and asks
#   results.layout whether a launch's work is finished; results/ imports no engine;
# - worker before engines: the fork server imports the worker ahead of the launches it forks.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    (
        "words",
        (
            "runner.vocab",
            "runner.errors",
            "runner.jsonio",
            "runner.yamlout",
            "runner.timing",
            "runner.contract",
            "runner.metrics",
            "runner.engines.kinds",
        ),
    ),
    ("spec", ("runner.spec",)),
    ("plan", ("runner.plan",)),
    ("worker", ("runner.worker", "runner.track", "runner.tracker")),
    ("results", ("runner.results",)),
    ("engines", ("runner.engines",)),
    ("verdicts", ("runner.verdicts",)),
    ("report", ("runner.report",)),
    ("session", ("runner.session",)),
    ("front", ("runner.pipeline", "runner.editor", "runner.cli", "runner.__main__")),
]


def runner_modules() -> dict[str, Path]:
    """Every module of runner/, by dotted name (a package by its own name)."""
    found = {}
    for path in sorted((ROOT / "runner").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = runner_modules()
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in MODULES.items()}


def imports_of(name: str) -> set[str]:
    """The runner modules `name` imports anywhere in its file (`from runner.spec import advice` counts advice)."""
    found = set()
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "runner"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "runner":
            assert node.level == 0, f"{name}: relative import"
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
    return found - {name}


GRAPH = {name: imports_of(name) for name in MODULES}


def stage_of(module: str) -> int:
    if module == "runner":
        return 0  # the package itself: its version
    matches = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(STAGES)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} belongs to no stage: add it to STAGES in tests/test_architecture.py"
    return max(matches)[1]


def test_every_import_points_to_the_same_or_an_earlier_stage() -> None:
    wrong = [
        f"{module} ({STAGES[stage_of(module)][0]}) imports {target} ({STAGES[stage_of(target)][0]})"
        for module, targets in GRAPH.items()
        for target in sorted(targets)
        if stage_of(target) > stage_of(module)
    ]
    assert wrong == []


def test_results_keep_to_records_layout_lock_and_reading() -> None:
    # what needs the verdicts (summary.json's content, its exit and resume rules, the rebuild) is the session's
    assert {t for m, ts in GRAPH.items() if m.startswith("runner.results") for t in ts if "verdicts" in t} == set()


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in graph:
                continue
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_import_cycles() -> None:
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def engine_names() -> dict[str, str]:
    """Each engine kind's words (its name, its section model's class name) -> the kind."""
    from pydantic import BaseModel

    from runner.engines.kinds import kind_names
    from runner.spec import models

    words = {name: name for name in kind_names()}
    for value in vars(models).values():
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__name__.endswith("EngineSection"):
            (kind,) = typing.get_args(value.model_fields["kind"].annotation)
            words[value.__name__] = kind
    return words


def test_the_registry_and_the_spec_name_the_same_engine_kinds() -> None:
    # a registered kind needs a section model to be written in a spec, and a section model a registered kind
    from runner.engines.kinds import kind_names

    assert sorted(kind_names()) == sorted(set(engine_names().values()))


def of_kind(module: str, kind: str) -> bool:
    """Whether `module` is in the registry's list for `kind` (the modules of its parts), or is the registry
    itself, or the spec's vocabulary (runner.spec.models: the section models and their `kind` literals)."""
    from runner.engines.kinds import engine_kind

    entry = engine_kind(kind)
    parts = {where.partition(":")[0] for where in (entry.planning, entry.runner, entry.rules) if where}
    return module in parts | {"runner.engines.kinds"} or module.split(".")[:3] == ["runner", "spec", "models"]


def engine_words_in(tree: ast.AST, words: dict[str, str]) -> list[tuple[int, str]]:
    """(line, word) of each engine word in a module: a kind's name as a string, a section class by name."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            word = node.value  # "slurm", or a section's name as text
        elif isinstance(node, ast.Name):
            word = node.id
        elif isinstance(node, ast.Attribute):
            word = node.attr
        elif isinstance(node, ast.alias):
            word = node.name.rsplit(".", 1)[-1]
        else:
            continue
        if word in words and (isinstance(node, ast.Constant) or word != words[word]):  # a variable may say local
            found.append((getattr(node, "lineno", 0), word))
    return found


def test_engine_names_appear_only_in_their_own_modules() -> None:
    # a kind's name as a string, or its section class (isinstance, an annotation), anywhere else is a
    # branch on the engine outside it: ask the registry (runner.engines.kinds) instead
    words = engine_names()
    assert set(words.values()) >= {"local", "slurm"}
    stray = [
        f"{MODULES[module].relative_to(ROOT)}:{line}: {word!r}"
        for module, tree in TREES.items()
        for line, word in engine_words_in(tree, words)
        if not of_kind(module, words[word])
    ]
    assert stray == []


def test_the_engine_name_guard_sees_a_branch() -> None:
    code = "if run.config.engine.kind == 'slurm' or isinstance(e, models.SlurmEngineSection): local = 1"
    assert engine_words_in(ast.parse(code), engine_names()) == [(1, "slurm"), (1, "SlurmEngineSection")]


# Modules that start processes, and the calls that do (os.fork, os.system, asyncio.create_subprocess_exec).
PROCESS_MODULES = {"subprocess", "multiprocessing", "pty", "concurrent.futures"}
PROCESS_CALLS = {
    "fork",
    "forkpty",
    "system",
    "popen",
    "posix_spawn",
    "posix_spawnp",
    "create_subprocess_exec",
    "create_subprocess_shell",
    *(f"exec{suffix}" for suffix in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")),
    *(f"spawn{suffix}" for suffix in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")),
}
# Outside runner/engines/, a module that must start a process goes here, with the reason. None does:
# the worker's processes are started by `accelerate launch` (or the fork server), not by the worker.
STARTS_PROCESSES_TOO: dict[str, str] = {}


def process_starts_in(tree: ast.AST) -> list[str]:
    """What in a module can start a process: an import of a process module, or a call of os/asyncio/pty."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
            if node.module in ("os", "asyncio"):
                names += [f"{node.module}.{alias.name}" for alias in node.names if alias.name in PROCESS_CALLS]
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in PROCESS_CALLS
            and isinstance(node.value, ast.Name)
            and node.value.id in ("os", "asyncio", "pty")
        ):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
            continue
        else:
            continue
        if any(
            name == m or name.startswith(m + ".") or name.startswith("os.") for name in names for m in PROCESS_MODULES
        ):
            found.append(f"{node.lineno}: imports {', '.join(names)}")
    return found


def test_only_the_engines_start_processes() -> None:
    found = [
        f"{module}:{where}"
        for module, tree in TREES.items()
        if not module.startswith("runner.engines.") and module not in STARTS_PROCESSES_TOO
        for where in process_starts_in(tree)
    ]
    assert found == []


def test_the_process_guard_sees_each_way_to_start_one() -> None:
    code = (
        "import subprocess\nfrom multiprocessing import Process\nfrom os import fork\nos.system('x')\nplatform.system()"
    )
    assert len(process_starts_in(ast.parse(code))) == 4
