"""A user's own Accelerate script as the workload: validated without running it, launched and supervised
like the built-in worker, reporting through runner.track (or an Accelerate tracker), checked alike."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, run_cli
from runner.plan.worker_plan import Declared, Observed
from runner.spec.validate import validate_file
from runner.verdicts.conformance import mismatches

EXAMPLE = ROOT / "examples" / "my-script.yaml"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def script_spec(
    folder: Path, script: str, *, launch: str = "{device: cpu}", extra: str = "", accumulation: int | None = None
) -> Path:
    section = (
        f"{{path: {script}}}"
        if accumulation is None
        else f"{{path: {script}, gradient_accumulation_steps: {accumulation}}}"
    )
    text = f"name: user-script\nscript: {section}\nlaunch: {launch}\nmeasure: {{warmup_steps: 2}}\n{extra}"
    return write(folder, "spec.yaml", text)


def messages(path: Path) -> list[str]:
    return [f"{d.line}:{d.col}: {d.message}" for d in validate_file(str(path)).diagnostics]


# --- validation: the script is checked, never imported or run ------------------------------------


def test_a_script_spec_needs_no_model_data_or_train(tmp_path: Path) -> None:
    write(tmp_path, "train.py", "raise SystemExit('validation must never run the script')\n")
    result = validate_file(str(script_spec(tmp_path, "train.py")))
    assert result.diagnostics == []
    assert result.spec is not None
    assert result.spec.runs["main"].script_file == str(tmp_path / "train.py")


def test_the_script_path_resolves_against_the_spec_file_and_a_missing_one_is_located(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    write(tmp_path, "train.py", "")  # beside the spec's folder, not in it
    spec = write(tmp_path / "specs", "spec.yaml", "name: s\nscript:\n  path: train.py\n")
    assert messages(spec) == [
        f"3:9: script.path 'train.py' does not exist (looked for {tmp_path}/specs/train.py; "
        "paths are relative to the spec)"
    ]


def test_a_folder_is_not_a_script(tmp_path: Path) -> None:
    (tmp_path / "train.py").mkdir()
    assert messages(script_spec(tmp_path, "train.py")) == [
        f"2:16: script.path 'train.py' is not a file (looked for {tmp_path}/train.py; paths are relative to the spec)"
    ]


def test_the_built_in_sections_are_errors_in_a_script_run(tmp_path: Path) -> None:
    write(tmp_path, "train.py", "")
    extra = "train: {epochs: 2}\nruns:\n  a: {}\n  b:\n    model: {kind: linear, input_dim: 4, classes: 2}\n"
    assert messages(script_spec(tmp_path, "train.py", extra=extra)) == [
        "5:1: train does not apply to a script workload: your script builds its own model, data and training "
        "loop; remove train (in a run, `train: null` removes a top-level one)",
        "9:5: run 'b': model does not apply to a script workload: your script builds its own model, data and "
        "training loop; remove model (in a run, `model: null` removes a top-level one)",
    ]


def test_a_spec_without_a_script_still_needs_the_built_in_sections(tmp_path: Path) -> None:
    spec = write(tmp_path, "spec.yaml", "name: s\nlaunch: {processes: 1}\n")
    assert messages(spec) == [
        "1:1: missing required key 'model' at the top level",
        "1:1: missing required key 'data' at the top level",
        "1:1: missing required key 'train' at the top level",
    ]


def test_the_compiled_launch_runs_the_script_in_the_wrapper_with_its_arguments(tmp_path: Path) -> None:
    write(tmp_path, "train.py", "")
    extra = (
        "runs:\n  dual:\n    launch: {processes: 2}\n"
        "    script: {args: [--lr, '0.1'], gradient_accumulation_steps: 2}\n"
    )
    spec = script_spec(tmp_path, "train.py", extra=extra)
    done = run_cli("--dry-run", str(spec), "--format", "json", "--output", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout)["runs"]
    assert run["argv"][-5:] == ["-m", "runner.worker.script", str(tmp_path / "train.py"), "--lr", "0.1"]
    assert run["env"]["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] == "2"
    assert run["env"]["ACCEL_RUN_PLAN"].endswith("/dual/plan.json")
    assert run["env"]["ACCELERATE_USE_CPU"] == "true"


def test_declared_accumulation_is_checked_only_when_the_spec_declares_it() -> None:
    declared = Declared("cpu", 1, 1, "NO", "no", 1, None)
    observed = Observed(world_size=1, distributed_type="NO", device="cpu", mixed_precision="no")
    assert mismatches(declared, replace(observed, gradient_accumulation_steps=4)) == []
    assert mismatches(
        replace(declared, gradient_accumulation_steps=2), replace(observed, gradient_accumulation_steps=4)
    ) == ["gradient_accumulation_steps is declared 2 (train or script section), Accelerate used 4"]


# --- the reporting API (its imports are checked in test_architecture.py) ---------------------------


def test_outside_accel_run_every_call_does_nothing() -> None:
    code = (
        "from runner import track; track.step(64, loss=0.5); track.evaluate(accuracy=1.0); track.finish(); "
        "print(track.active(), repr(track.missing()))"
    )
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    assert done.stdout == "False ''\n"


# --- real launches ---------------------------------------------------------------------------------


def run_spec(spec: Path, output: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = run_cli(str(spec), "--repeats", "1", "--no-progress", "--output", str(output), *args)
    (folder,) = [p for p in output.glob("*/*") if p.is_dir()]
    return done, json.loads((folder / "summary.json").read_text())


def launch_of(summary: dict[str, Any], run: str) -> dict[str, Any]:
    return dict(summary["runs"][run]["repeats"][0])


@pytest.mark.slow
def test_the_example_script_in_a_two_process_group_meets_its_expectations(tmp_path: Path) -> None:
    done, summary = run_spec(EXAMPLE, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [e["verdict"] for e in summary["expectations"]] == ["pass", "pass", "pass"]
    dual = launch_of(summary, "dual")
    assert dual["observed"]["world_size"] == 2
    assert dual["observed"]["distributed_type"] == "MULTI_CPU"
    assert dual["observed"]["backend"] == "gloo"
    assert dual["observed"]["compute_dtype"] == "torch.float32"
    assert dual["metrics"]["optimizer_steps"] == 128
    assert dual["metrics"]["timed_steps"] == 128 - 5  # measure.warmup_steps left out of the timing
    assert dual["metrics"]["global_batch_size"] == 64  # 2 processes x 32 samples per step
    assert dual["metrics"]["samples_per_s"] > 0


CRASH = """\
from accelerate import Accelerator
from runner import track

accelerator = Accelerator()
track.setup(accelerator)
for step in range(5):
    track.step(samples=8, loss=1.0)
    if step == 2:
        raise ValueError("boom at step 3")
"""


@pytest.mark.slow
def test_a_script_that_crashes_fails_its_run_with_its_exception_line(tmp_path: Path) -> None:
    write(tmp_path, "crash.py", CRASH)
    done, summary = run_spec(script_spec(tmp_path, "crash.py"), tmp_path / "out")
    assert done.returncode == 3, done.stdout + done.stderr
    launch = launch_of(summary, "main")
    assert launch["status"] == "failed"
    assert launch["reason"] == "the launch exited with code 1: ValueError: boom at step 3"
    # fixed, the result resumes: the spec's copy in the result folder finds the script beside the original
    write(tmp_path, "crash.py", CRASH.replace('raise ValueError("boom at step 3")', "pass"))
    (folder,) = [p for p in (tmp_path / "out").glob("*/*") if p.is_dir()]
    resumed = run_cli("--resume", str(folder), "--no-progress")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    fixed = launch_of(json.loads((folder / "summary.json").read_text()), "main")
    assert (fixed["status"], fixed["metrics"]["optimizer_steps"]) == ("ok", 5)


HANG = """\
import time
from accelerate import Accelerator
from runner import track

accelerator = Accelerator()
track.setup(accelerator)
track.step(samples=8, loss=1.0)
time.sleep(3600)  # a collective that never returns, say
"""


@pytest.mark.slow
def test_a_script_that_hangs_is_stopped_at_the_time_limit(tmp_path: Path) -> None:
    write(tmp_path, "hang.py", HANG)
    spec = script_spec(tmp_path, "hang.py", launch="{device: cpu, timeout_s: 12}")
    done, summary = run_spec(spec, tmp_path / "out")
    assert done.returncode == 3, done.stdout + done.stderr
    launch = launch_of(summary, "main")
    assert launch["status"] == "timeout"
    assert launch["reason"] == "time limit of 12 s reached (launch.timeout_s or --timeout); every process was stopped"


FREEZE = """\
import os, signal, time
from accelerate import Accelerator
from runner import track

accelerator = Accelerator()
track.setup(accelerator)
track.step(samples=8, loss=1.0)
if accelerator.process_index == 1:
    os.kill(os.getpid(), signal.SIGSTOP)  # frozen: its heartbeat stops with it
time.sleep(3600)
"""


@pytest.mark.slow
def test_a_frozen_rank_of_a_script_is_found_by_its_heartbeat(tmp_path: Path) -> None:
    write(tmp_path, "freeze.py", FREEZE)
    spec = script_spec(tmp_path, "freeze.py", launch="{device: cpu, processes: 2, timeout_s: 120}")
    done, summary = run_spec(spec, tmp_path / "out")
    assert done.returncode == 3, done.stdout + done.stderr
    launch = launch_of(summary, "main")
    assert launch["status"] == "failed"
    assert launch["reason"].startswith("rank 1 stopped responding (no heartbeat for 1")  # not "died": frozen
    assert launch["reason"].endswith(" s); the other ranks were stopped")


SILENT = """\
import torch
from accelerate import Accelerator

accelerator = Accelerator()
model = accelerator.prepare(torch.nn.Linear(4, 2))
model(torch.randn(8, 4)).sum().backward()
print("trained, reported nothing")
"""


@pytest.mark.slow
def test_a_script_that_reports_nothing_fails_with_a_message_naming_the_api(tmp_path: Path) -> None:
    write(tmp_path, "silent.py", SILENT)
    done, summary = run_spec(script_spec(tmp_path, "silent.py"), tmp_path / "out")
    assert done.returncode == 3, done.stdout + done.stderr
    launch = launch_of(summary, "main")
    assert launch["status"] == "failed"
    assert launch["reason"] == (
        "the launch exited with code 1: accel-run worker: silent.py: the script reported nothing to accel-run: "
        "call runner.track.step(samples=...) once per optimizer step (and runner.track.setup(accelerator, model) "
        "before training), or pass runner.track.AccelRunTracker(samples_per_step=...) to Accelerator(log_with=...)"
    )


TRACKED = """\
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from runner import track

accelerator = Accelerator(log_with=track.AccelRunTracker(samples_per_step=16))  # the one added line
accelerator.init_trackers("tracked")
torch.manual_seed(0)
model = torch.nn.Linear(8, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model, optimizer = accelerator.prepare(model, optimizer)
x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
for step in range(12):
    loss = F.cross_entropy(model(x), y)
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad()
    if step % 2 == 1:  # logs every other step, with the number of steps completed
        accelerator.log({"loss": loss.item()}, step=step + 1)
accelerator.log({"eval_loss": 0.25, "accuracy": 0.75})
accelerator.end_training()
"""


@pytest.mark.slow
def test_a_script_that_already_logs_reports_through_the_tracker(tmp_path: Path) -> None:
    write(tmp_path, "tracked.py", TRACKED)
    expect = "expect:\n  - {kind: bound, run: main, metric: accuracy, at_least: 0.7}\n"
    spec = script_spec(tmp_path, "tracked.py", extra=expect, accumulation=2)  # passed in, then observed
    done, summary = run_spec(spec, tmp_path / "out")
    assert done.returncode == 0, done.stdout + done.stderr
    launch = launch_of(summary, "main")
    assert launch["status"] == "ok"
    metrics = launch["metrics"]
    assert (metrics["optimizer_steps"], metrics["eval_loss"], metrics["accuracy"]) == (12, 0.25, 0.75)
    assert launch["observed"]["world_size"] == 1
    assert launch["observed"]["distributed_type"] == "NO"
    assert launch["observed"]["gradient_accumulation_steps"] == 2


def test_steps_logged_in_groups_are_timed_from_the_end_of_the_group_holding_the_warm_up() -> None:
    from runner import track

    # 10 steps per log, 640 samples (one second) per log; measure.warmup_steps 5 falls inside the first group
    report = track._Report(plan={}, main=True, warmup=5)
    report.start_perf = 0.0
    for group in range(5):
        report.times += [group + 1.0] * 10
        report.samples += [0] * 9 + [640]
        report.tokens += [0] * 10
    steps, timed_s, _ = track._timed(report)
    assert (steps, timed_s) == (40, 4.0)
    assert sum(report.samples[-steps:]) / timed_s == 640.0
