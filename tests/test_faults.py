"""Faults on CPU with the real `accelerate launch`: a rank killed, a hang, Ctrl-C, the runner killed and
resumed, two invocations at once. Nothing lost, nothing left running."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import ROOT, run_cli

pytestmark = pytest.mark.slow

LONG = """\
name: {name}
model: {{kind: mlp, input_dim: 16, hidden: [64], classes: 4}}
data: {{kind: synthetic-classification, samples: 4096, features: 16, classes: 4}}
train: {{max_steps: {steps}, batch_size: 16, eval_samples: 0}}
launch: {{device: cpu}}
measure: {{warmup_steps: 2, attribution: false}}
"""


def spec(tmp_path: Path, name: str, runs: str, steps: int = 20, expect: str = "") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(LONG.format(name=name, steps=steps) + "runs:\n" + runs + expect)
    return path


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args, "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result_dir(output: Path) -> Path:
    (folder,) = [p for p in output.glob("*/*") if p.is_dir()]
    return folder


def summary_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "summary.json").read_text())


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.NoSuchProcess:
            continue
    return out


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def launch_started(folder_parent: Path, run: str) -> bool:
    return any(folder_parent.glob(f"*/*/{run}/heartbeat.rank0"))


def test_a_killed_rank_ends_the_run_fast_and_the_next_run_still_runs(tmp_path: Path) -> None:
    runs = (
        "  victim:\n    launch: {processes: 2, env: {ACCEL_RUN_FAILPOINT: 'kill:5:1'}}\n"
        "    train: {max_steps: 5000}\n"
        "  after: {}\n"
    )
    path = spec(tmp_path, "rankkill", runs)
    done = run_cli(str(path), "--output", str(tmp_path / "out"), "--no-progress")
    folder = result_dir(tmp_path / "out")
    summary = summary_of(folder)
    victim = summary["runs"]["victim"]
    assert done.returncode == 3
    assert victim["status"] == "failed"
    assert summary["runs"]["after"]["status"] == "ok"  # the other run's results are intact
    fired = float(
        re.search(r"kill at step 5 on rank 1 at t=([0-9.]+)", (folder / "victim" / "stderr.log").read_text())[1]
    )
    launch = victim["repeats"][0]
    ended = launch["started_at"] + launch["wall_s"]
    assert ended - fired < 30, f"the run ended {ended - fired:.1f} s after the kill"
    # No process of the victim's launch is left: its PIDs were recorded by the worker.
    assert not [
        p for p in psutil.process_iter(["cmdline"]) if str(folder / "victim") in " ".join(p.info["cmdline"] or [])
    ]


def test_a_hang_is_stopped_by_the_time_limit(tmp_path: Path) -> None:
    runs = "  stuck:\n    launch: {processes: 2, timeout_s: 25, env: {ACCEL_RUN_FAILPOINT: 'hang:3:1'}}\n"
    path = spec(tmp_path, "hang", runs, steps=1000)
    started = time.time()
    done = run_cli(str(path), "--output", str(tmp_path / "out"), "--no-progress")
    elapsed = time.time() - started
    folder = result_dir(tmp_path / "out")
    stuck = summary_of(folder)["runs"]["stuck"]
    assert done.returncode == 3
    assert stuck["status"] == "timeout"
    assert stuck["reason"] == "time limit of 25 s reached (launch.timeout_s or --timeout); every process was stopped"
    assert elapsed < 25 + 30  # the limit, plus start-up and the stop's grace period
    assert not [
        p for p in psutil.process_iter(["cmdline"]) if str(folder / "stuck") in " ".join(p.info["cmdline"] or [])
    ]


def test_ctrl_c_stops_the_run_cleanly_marks_it_interrupted_and_exits_130(tmp_path: Path) -> None:
    path = spec(tmp_path, "ctrlc", "  long:\n    launch: {processes: 2}\n  never: {}\n", steps=100000)
    proc = start(str(path), "--output", str(tmp_path / "out"))
    wait_until(lambda: launch_started(tmp_path / "out", "long"), 60, "the first launch")
    family = descendants(proc.pid)
    assert len(family) >= 3  # the launcher and two ranks
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode == 130
    assert alive(family) == []
    summary = summary_of(result_dir(tmp_path / "out"))
    assert summary["status"] == "interrupted"
    assert summary["runs"]["long"]["status"] == "interrupted"
    assert summary["runs"]["never"]["status"] == "pending"


def test_a_second_ctrl_c_kills_at_once(tmp_path: Path) -> None:
    path = spec(tmp_path, "ctrlc2", "  long:\n    launch: {processes: 2}\n", steps=100000)
    proc = start(str(path), "--output", str(tmp_path / "out"))
    wait_until(lambda: launch_started(tmp_path / "out", "long"), 60, "the launch")
    family = descendants(proc.pid)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert proc.returncode == 130
    assert alive(family) == []
    assert summary_of(result_dir(tmp_path / "out"))["runs"]["long"]["status"] == "interrupted"


def test_a_killed_runner_loses_only_the_run_in_flight_and_resumes(tmp_path: Path) -> None:
    runs = "  first: {}\n  second:\n    train: {max_steps: 100000}\n  third: {}\n"
    path = spec(tmp_path, "resume", runs)
    output = tmp_path / "out"
    proc = start(str(path), "--output", str(output))
    wait_until(lambda: launch_started(output, "second"), 90, "the second launch")
    folder = result_dir(output)
    family = descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    # Workers notice their runner is gone (heartbeat watchdog) and exit: nothing keeps the cores.
    wait_until(lambda: not alive(family), 30, "the orphaned launch to exit")
    before = summary_of(folder)
    assert before["runs"]["first"]["status"] == "ok"
    assert before["runs"]["second"]["status"] == "pending"
    first_started = before["runs"]["first"]["repeats"][0]["started_at"]

    # The spec is unchanged: resume reruns only what did not finish (second: make it short now? no,
    # the spec must not change; give the rerun a time limit instead and expect a timeout).
    resumed = run_cli("--resume", str(folder), "--timeout", "20", "--no-progress")
    after = summary_of(folder)
    assert after["runs"]["first"]["repeats"][0]["started_at"] == first_started  # kept, not rerun
    assert after["runs"]["third"]["status"] == "ok"
    assert after["runs"]["second"]["status"] == "timeout"
    assert resumed.returncode == 3
    assert "1 finished launch(es) kept" in resumed.stderr


def test_resume_refuses_when_the_spec_changed(tmp_path: Path) -> None:
    path = spec(tmp_path, "changed", "  only: {}\n")
    assert run_cli(str(path), "--output", str(tmp_path / "out"), "--no-progress").returncode == 0
    folder = result_dir(tmp_path / "out")
    path.write_text(path.read_text().replace("max_steps: 20", "max_steps: 21"))
    done = run_cli("--resume", str(folder))
    assert done.returncode == 2
    assert done.stderr.startswith(f"accel-run: error: {path} changed since this result was started (sha256 ")
    assert "Traceback" not in done.stderr


def test_two_invocations_at_once_both_succeed(tmp_path: Path) -> None:
    runs = "  pair:\n    launch: {processes: 2}\n"
    first = start(str(spec(tmp_path, "concurrent", runs)), "--output", str(tmp_path / "a"))
    second = start(str(spec(tmp_path, "concurrent", runs)), "--output", str(tmp_path / "b"))
    assert first.wait(timeout=180) == 0, first.stderr.read() if first.stderr else ""
    assert second.wait(timeout=180) == 0, second.stderr.read() if second.stderr else ""
    ports = {
        re.search(r"rendezvous port: (\d+)", (result_dir(tmp_path / out) / "pair" / "command.txt").read_text())[1]
        for out in ("a", "b")
    }
    assert len(ports) == 2


def test_an_unwritable_output_folder_is_a_clean_usage_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/accel-run-cannot-write-here")  # even root cannot create folders in /proc
    else:
        target = tmp_path / "locked"
        target.mkdir(mode=0o500)
    path = spec(tmp_path, "nowrite", "  only: {}\n")
    done = run_cli(str(path), "--output", str(target))
    assert done.returncode == 2
    assert done.stderr.startswith(f"accel-run: error: cannot create the results folder {target}/nowrite: ")
    assert "Traceback" not in done.stderr


def test_a_rank_that_aborts_after_finishing_keeps_the_measurements_with_a_warning(tmp_path: Path) -> None:
    runs = (
        "  late:\n    launch: {processes: 2, env: {ACCEL_RUN_FAILPOINT: 'abort:end:1'}}\n"
        "  early:\n    launch: {processes: 2, env: {ACCEL_RUN_FAILPOINT: 'abort:5:1'}}\n"
    )
    path = spec(tmp_path, "teardown", runs)
    done = run_cli(str(path), "--output", str(tmp_path / "out"), "--no-progress")
    summary = summary_of(result_dir(tmp_path / "out"))
    late, early = summary["runs"]["late"], summary["runs"]["early"]
    # After every rank finished and metrics.json was durable: the run stands, with a visible warning.
    assert late["status"] == "ok"
    assert late["metrics"]["optimizer_steps"] == 20
    assert late["repeats"][0]["notes"] == [
        "the launch exited with code 1 after every rank had finished and metrics.json was written; "
        "the measurements are kept (see stderr.log)"
    ]
    assert "note: the launch exited with code 1 after every rank had finished" in done.stderr
    # Before it finished: a failure, as ever.
    assert early["status"] == "failed"
    # a forked rank's abort is printed by the faulthandler torch's elastic enables in each rank
    assert early["reason"] == "the launch exited with code 1: Fatal Python error: Aborted"
    assert done.returncode == 3


def test_a_precision_the_launch_did_not_apply_fails_the_run_naming_the_field(tmp_path: Path) -> None:
    """The compiled config decides the precision; when what ran differs from the spec, the run fails."""
    from runner.engines.base import Interrupts
    from runner.engines.local import execute
    from runner.plan.machine import probe_machine
    from runner.results.records import LaunchRecord
    from runner.session.launch import prepare_launch, read_metrics
    from runner.spec.validate import require_valid
    from runner.vocab import Status

    validated = require_valid(str(spec(tmp_path, "precision", "  fp32: {}\n")))
    plan = prepare_launch(validated, probe_machine(), tmp_path / "out", "fp32", 1, 1)
    config = plan.directory / "accelerate_config.yaml"
    config.write_text(config.read_text().replace("mixed_precision: 'no'", "mixed_precision: bf16"))
    outcome = execute(plan, timeout_s=120, interrupts=Interrupts())
    assert outcome.status is Status.OK, outcome.log_tail
    launch = LaunchRecord(1, outcome.status, "fp32")
    read_metrics(launch, plan)
    assert launch.status is Status.FAILED
    assert launch.reason == (
        "what ran differs from the spec: launch.mixed_precision is fp32, but Accelerate ran bf16; "
        "launch.mixed_precision is fp32, but accelerate launch passed bf16 (the compiled config did not take effect); "
        "mixed precision fp32 should compute in torch.float32, but layers computed in torch.bfloat16"
    )
