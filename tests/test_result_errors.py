"""--report and --resume on folders that are not (or no longer) results: one clear line each, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import TINY_SPEC, run_cli
from runner.results.layout import sha256_text


def fake_result(folder: Path, spec_text: str, recorded_sha: str, spec_path: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(spec_text)
    summary = {"format": 1, "status": "interrupted", "spec": {"sha256": recorded_sha, "path": spec_path}, "runs": {}}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_report_on_a_folder_without_a_summary(tmp_path: Path) -> None:
    done = run_cli("--report", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr == f"accel-run: error: {tmp_path}/summary.json does not exist; is {tmp_path} a result folder?\n"


def test_report_on_a_path_that_is_not_a_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    done = run_cli("--report", str(missing))
    assert done.returncode == 2
    assert done.stderr == (
        f"accel-run: error: {missing} is not a result folder (expected OUTPUT/<spec>/<timestamp>/)\n"
    )


def test_report_on_a_damaged_summary(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text("{not json")
    done = run_cli("--report", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith(f"accel-run: error: cannot read {tmp_path}/summary.json: Expecting property name")


def test_resume_refuses_an_edited_copy_of_the_spec(tmp_path: Path) -> None:
    folder = fake_result(tmp_path / "r", TINY_SPEC + "# edited\n", sha256_text(TINY_SPEC), str(tmp_path / "gone.yaml"))
    done = run_cli("--resume", str(folder))
    assert done.returncode == 2
    assert (
        done.stderr
        == f"accel-run: error: {folder}/spec.yaml was edited after the result was started; it cannot be resumed\n"
    )


def test_resume_keeps_the_options_it_was_started_with(tmp_path: Path) -> None:
    done = run_cli("--resume", str(tmp_path), "--only", "a")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "accel-run: error: --resume reruns a result as it was started: --only, --repeats, --engine and --output "
        "cannot change it"
    )


def recorded(folder: Path, status: str, runs: dict[str, str], verdicts: list[str], allow: bool = False) -> Path:
    folder.mkdir(parents=True)
    summary = {
        "format": 1,
        "status": status,
        "spec": {"name": "r", "path": "r.yaml", "sha256": "0" * 64, "baseline": None, "runs": list(runs)},
        "options": {"allow_inconclusive": allow},
        "environment": {},
        "runs": {name: {"status": run_status, "metrics": {}, "repeats": []} for name, run_status in runs.items()},
        "expectations": [
            {"title": f"e{i}", "kind": "bound", "verdict": v, "message": "m", "runs": ["a"]}
            for i, v in enumerate(verdicts)
        ],
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_report_exits_with_the_code_of_the_session_it_shows(tmp_path: Path) -> None:
    from runner.cli import main

    cases = {
        "all-pass": (recorded(tmp_path / "1", "complete", {"a": "ok"}, ["pass"]), 0),
        "a-fail": (recorded(tmp_path / "2", "complete", {"a": "ok"}, ["pass", "fail"]), 1),
        "inconclusive": (recorded(tmp_path / "3", "complete", {"a": "ok"}, ["inconclusive"]), 1),
        "allowed": (recorded(tmp_path / "4", "complete", {"a": "ok"}, ["inconclusive"], allow=True), 0),
        "run-failed": (recorded(tmp_path / "5", "complete", {"a": "failed"}, ["error"]), 3),
        "interrupted": (recorded(tmp_path / "6", "interrupted", {"a": "ok"}, ["pass"]), 130),
    }
    codes = {name: main(["--report", str(folder)]) for name, (folder, _) in cases.items()}
    assert codes == {name: code for name, (_, code) in cases.items()}
