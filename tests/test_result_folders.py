"""A result folder has one owner, survives machine faults with a one-line error, and a damaged
summary.json is rebuilt from the run folders. Real launches, real files, a real small filesystem."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from test_faults import alive, descendants, launch_started, result_dir, spec, start, summary_of, wait_until

from conftest import run_cli
from runner.report.text import environment_line, render

pytestmark = pytest.mark.slow


def test_a_second_session_is_refused_while_the_first_lives_and_allowed_after_it_was_killed(tmp_path: Path) -> None:
    path = spec(tmp_path, "owned", "  first: {}\n  long:\n    train: {max_steps: 100000}\n")
    output = tmp_path / "out"
    proc = start(str(path), "--output", str(output))
    wait_until(lambda: launch_started(output, "long"), 90, "the long launch")
    folder = result_dir(output)
    refused = run_cli("--resume", str(folder), "--no-progress")
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        f"accel-run: error: {folder} is in use by another accel-run session (PID {proc.pid}); "
        "wait for it to end (or stop it), then resume"
    )
    family = descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    wait_until(lambda: not alive(family), 30, "the orphaned launch to exit")
    # The dead session's summary no longer claims to be running.
    report = run_cli("--report", str(folder))
    assert report.returncode == 130
    assert "Status: abandoned." in report.stdout
    assert "ended without finishing (killed, or stopped by a machine fault); --resume reruns the rest" in report.stdout
    resumed = run_cli("--resume", str(folder), "--timeout", "15", "--no-progress")
    assert "resuming" in resumed.stderr and "1 finished launch(es) kept" in resumed.stderr
    assert resumed.returncode == 3  # the long run met its time limit: resumed, not refused
    assert summary_of(folder)["runs"]["long"]["status"] == "timeout"


def mounted_tmpfs(tmp_path: Path, size: str):  # type: ignore[no-untyped-def]
    """A tmpfs of `size` mounted (by root) under tmp_path for one test, unmounted after it."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.fixture
def small_filesystem(tmp_path: Path):  # type: ignore[no-untyped-def]
    yield from mounted_tmpfs(tmp_path, "64k")


@pytest.fixture
def filled_filesystem(tmp_path: Path):  # type: ignore[no-untyped-def]
    yield from mounted_tmpfs(tmp_path, "2m")


def test_a_full_disk_is_one_line_naming_the_path_and_the_cause(tmp_path: Path, small_filesystem: Path) -> None:
    path = spec(tmp_path, "disk", "  a: {}\n  b: {}\n  c: {}\n")
    done = run_cli(str(path), "--output", str(small_filesystem), "--no-progress")
    assert done.returncode == 3
    last = done.stderr.splitlines()[-1]
    assert last.startswith("accel-run: error: no space left on device while writing " + str(small_filesystem))
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    # What was saved is whole: the summary of the last launch the disk could still record.
    folder = result_dir(small_filesystem)
    assert summary_of(folder)["runs"]["a"]["status"] == "ok"
    report = run_cli("--report", str(folder))
    assert report.returncode == 3  # the code the session had
    assert "Traceback" not in report.stderr


def fill(folder: Path) -> None:
    """What another program does: write until the disk is full."""
    with open(folder / "filler", "wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass


def test_a_disk_that_fills_during_a_launch_is_its_reason_and_the_sessions(
    tmp_path: Path, filled_filesystem: Path
) -> None:
    """The probe: the launch was told only as "exited with code 1", summary.json kept it pending, and --report
    then exited 130 where the session had exited 3."""
    path = spec(tmp_path, "fills", "  b:\n    train: {max_steps: 100000}\n  c: {}\n")
    proc = start(str(path), "--output", str(filled_filesystem))
    wait_until(lambda: launch_started(filled_filesystem, "b"), 90, "the launch")
    fill(filled_filesystem)
    report, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    folder = result_dir(filled_filesystem)
    summary = summary_of(folder)
    b = summary["runs"]["b"]
    assert b["status"] == "failed"
    assert "no space left on device" in b["reason"], b["reason"]
    assert summary["fault"].startswith("no space left on device while writing " + str(folder))
    assert (summary["status"], summary["runs"]["c"]["status"]) == ("interrupted", "pending")
    assert "no space left on device" in report  # the report printed by the session says it too
    assert err.splitlines()[-1] == f"accel-run: error: {summary['fault']}"
    rerendered = run_cli("--report", str(folder))
    assert rerendered.returncode == 3, rerendered.stderr


def test_the_result_folder_deleted_mid_run_stops_the_session_with_one_line(tmp_path: Path) -> None:
    # the launch hangs at step 5 (a failpoint) so the folder is always deleted while it runs: a launch of
    # a few hundred steps could end, with the session, before the deletion on an idle machine
    long = "  long:\n    train: {max_steps: 400}\n    launch: {timeout_s: 600, env: {ACCEL_RUN_FAILPOINT: 'hang:5'}}\n"
    path = spec(tmp_path, "gone", long + "  after: {}\n")
    output = tmp_path / "out"
    proc = start(str(path), "--output", str(output))
    wait_until(lambda: launch_started(output, "long"), 90, "the long launch")
    folder = result_dir(output)
    shutil.rmtree(folder)
    # the running launch is stopped when its folder goes, not at its 600 s time limit
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3
    assert err.splitlines()[-1] == (
        f"accel-run: error: the result folder {folder} was deleted while the session ran; "
        "nothing more can be saved there"
    )


def finished_result(tmp_path: Path) -> tuple[Path, int]:
    path = spec(tmp_path, "rebuild", "  a: {}\n  b:\n    launch: {processes: 2}\n")
    done = run_cli(str(path), "--output", str(tmp_path / "out"), "--no-progress")
    return result_dir(tmp_path / "out"), done.returncode


def test_a_wrong_shaped_summary_is_rebuilt_from_the_run_folders(tmp_path: Path) -> None:
    folder, code = finished_result(tmp_path)
    original = summary_of(folder)
    (folder / "summary.json").write_text(json.dumps({"format": 1, "runs": []}))
    report = run_cli("--report", str(folder))
    assert report.returncode == code
    assert (
        f"{folder}/summary.json has the wrong shape: 'status' is missing, not str; rebuilt it from the run "
        "folders: 2 launch(es), 2 with metrics (the damaged file is kept as summary.json.damaged)"
    ) in report.stdout
    rebuilt = summary_of(folder)
    assert rebuilt["status"] == "rebuilt"
    for name in ("a", "b"):
        assert rebuilt["runs"][name]["metrics"]["final_loss"] == original["runs"][name]["metrics"]["final_loss"]
    assert (folder / "summary.json.damaged").read_text() == json.dumps({"format": 1, "runs": []})
    # the Machine line, rebuilt from plan.json: the session's own ("?: ? CPU cores ... torch ?" before)
    assert machine_line(report.stdout) == machine_line(render(original, markdown=False))
    for plan in folder.glob("*/plan.json"):  # run folders of an older accel-run: no machine in plan.json
        plan.write_text(json.dumps({k: v for k, v in json.loads(plan.read_text()).items() if k != "machine"}))
    # nested 200,000 deep: --report and --resume exited 4 with a RecursionError; rebuilt like the rest now
    nested = "[" * 200_000 + "]" * 200_000
    (folder / "summary.json").write_text(nested)
    report = run_cli("--report", str(folder))
    assert report.returncode == code, report.stderr
    assert (
        f"cannot read {folder}/summary.json: JSON nested deeper than Python's parser can follow; rebuilt it from "
        "the run folders: 2 launch(es), 2 with metrics (the damaged file is kept as summary.json.damaged)"
    ) in report.stdout
    assert (folder / "summary.json.damaged").read_text() == nested
    versions = original["environment"]["versions"]
    assert machine_line(report.stdout) == (
        f"Machine: {original['environment']['hostname']}: CPU cores unknown, GPUs unknown; torch {versions['torch']}, "
        f"accelerate {versions['accelerate']}, Python {versions['python']}."
    )
    (folder / "summary.json").write_text(nested)
    resumed = run_cli("--resume", str(folder), "--no-progress")
    assert resumed.returncode == code, resumed.stderr
    assert "JSON nested deeper than Python's parser can follow; rebuilt it from the run folders" in resumed.stderr
    assert f"resuming {folder}: 2 finished launch(es) kept" in resumed.stderr


def machine_line(report: str) -> str:
    return next(line for line in report.splitlines() if line.startswith("Machine: "))


def test_a_machine_no_file_recorded_is_unknown() -> None:
    rebuilt = {"environment": {"rebuilt_from": "run folders (plan.json, metrics.json)"}, "runs": {}}
    assert environment_line(rebuilt) == "unknown (the run folders this summary was rebuilt from do not record it)"


def test_a_truncated_summary_is_rebuilt_and_resumed(tmp_path: Path) -> None:
    folder, _ = finished_result(tmp_path)
    text = (folder / "summary.json").read_text()
    (folder / "summary.json").write_text(text[: len(text) // 2])
    resumed = run_cli("--resume", str(folder), "--no-progress")
    assert "cannot read " + str(folder / "summary.json") in resumed.stderr
    assert "rebuilt it from the run folders: 2 launch(es), 2 with metrics" in resumed.stderr
    assert "resuming " + str(folder) + ": 2 finished launch(es) kept" in resumed.stderr
    assert summary_of(folder)["status"] == "complete"


def test_a_pinned_port_taken_between_two_runs_fails_that_run_clearly(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runs = (
        "  first:\n    train: {max_steps: 200}\n    launch: {processes: 2}\n"
        f"  pinned:\n    launch: {{main_process_port: {port}}}\n"
    )
    output = tmp_path / "out"
    proc = start(str(spec(tmp_path, "port", runs)), "--output", str(output))
    wait_until(lambda: launch_started(output, "first"), 90, "the first launch")
    with socket.socket() as taker:
        taker.bind(("0.0.0.0", port))  # what another program does between the two runs
        taker.listen()
        proc.wait(timeout=120)
    summary = summary_of(result_dir(output))
    assert summary["runs"]["first"]["status"] == "ok"
    first = summary["runs"]["first"]["repeats"][0]
    assert first["port"] == first["observed"]["main_process_port"]  # the port the group really used
    assert summary["runs"]["pinned"]["reason"] == (
        f"launch.main_process_port {port} is in use on this machine (taken since the session started); "
        "pick another, or remove it to get a free port per launch"
    )
    assert proc.returncode == 3


def resumable(tmp_path: Path, runs: str) -> Path:
    """A result whose session ended before any launch: --resume runs every launch of it."""
    from runner.results.layout import sha256_text

    path = spec(tmp_path, "linked", runs)
    folder = tmp_path / "out" / "linked" / "20260101T000000Z"
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(path.read_text())
    recorded = {"sha256": sha256_text(path.read_text()), "path": str(path)}
    summary = {"format": 1, "status": "interrupted", "spec": recorded, "runs": {}}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def victim(tmp_path: Path) -> Path:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "metrics.json").write_text("precious")
    (target / "stdout.log").write_text("precious log")
    return target


@pytest.mark.parametrize("where", ["b", "b/repeat-2"])
def test_resume_refuses_a_run_folder_that_is_a_symbolic_link(tmp_path: Path, where: str) -> None:
    """--resume followed the link: it deleted the target's metrics.json, emptied its stdout.log, wrote there."""
    folder = resumable(tmp_path, "  a: {}\n  b:\n    measure: {repeats: 2}\n")
    target = victim(tmp_path)
    (folder / where).parent.mkdir(parents=True, exist_ok=True)
    (folder / where).symlink_to(target)
    done = run_cli("--resume", str(folder), "--no-progress")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"accel-run: error: {folder / where} is a symbolic link (to {target}); accel-run never writes or deletes "
        "through one: replace it with the real folder, or remove it"
    )
    assert (target / "metrics.json").read_text() == "precious"
    assert (target / "stdout.log").read_text() == "precious log"
    assert sorted(p.name for p in target.iterdir()) == ["metrics.json", "stdout.log"]
    assert not (folder / "a").exists()  # refused before any launch


def test_nothing_is_written_through_a_link_inside_a_run_folder_or_at_the_result_folder(tmp_path: Path) -> None:
    from runner.results.nofollow import create_fresh, make_folders

    folder = resumable(tmp_path, "  a: {}\n")
    target = victim(tmp_path)
    (folder / "a").mkdir()
    (folder / "a" / "stdout.log").symlink_to(target / "stdout.log")
    make_folders(folder, folder / "a" / "repeat-2")
    os.close(create_fresh(folder / "a" / "stdout.log"))  # the launch's log: a new file, the link is gone
    assert not (folder / "a" / "stdout.log").is_symlink()
    assert (target / "stdout.log").read_text() == "precious log"
    (folder / "session.lock").symlink_to(target / "metrics.json")
    done = run_cli("--resume", str(folder), "--no-progress")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith(f"accel-run: error: {folder}/session.lock is a symbolic link")
    assert (target / "metrics.json").read_text() == "precious"
    linked_result = tmp_path / "linked-result"
    linked_result.symlink_to(folder)
    report = run_cli("--report", str(linked_result))
    assert report.returncode == 2
    assert report.stderr == (
        f"accel-run: error: {linked_result} is a symbolic link (to {folder}); accel-run never writes or deletes "
        "through one: replace it with the real folder, or remove it\n"
    )
