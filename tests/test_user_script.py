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
from runner.contract import Declared, Observed
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
    assert summary["runs"]["dual"]["workload"] == "script"  # its Why says why it has no step split
    assert dual["command"].endswith("/my_train.py --epochs 2 --batch-size 32")  # script.batch_size, passed


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
    from runner.worker import reports as track

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


# --- reports checked against what the optimizer and the model did --------------------------------

SLIPS = """\
import argparse
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from runner import track

parser = argparse.ArgumentParser()
parser.add_argument("--slip", required=True)
parser.add_argument("--batch-size", type=int, default=16)  # accepted, and ignored by the third slip
slip = parser.parse_args().slip
accelerator = Accelerator()  # accumulation: ACCELERATE_GRADIENT_ACCUMULATION_STEPS (script.gradient_accumulation_steps)
torch.manual_seed(0)
data = torch.utils.data.TensorDataset(torch.randn(256, 8), torch.randint(0, 2, (256,)))
model = torch.nn.Linear(8, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loader = torch.utils.data.DataLoader(data, batch_size=16)
model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
track.setup(accelerator, model)
for x, y in loader:
    with accelerator.accumulate(model):
        loss = F.cross_entropy(model(x), y)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
    if slip == "every-micro-batch":
        track.step(samples=len(x), loss=loss)  # line 26: per micro-batch, not per optimizer step
    elif accelerator.sync_gradients:
        track.step(samples=len(x), loss=loss)  # line 28: once per step (of one micro-batch here)
"""


@pytest.mark.slow
def test_reports_that_contradict_the_optimizer_or_the_model_fail_the_run_at_the_reporting_line(
    tmp_path: Path,
) -> None:
    write(tmp_path, "slips.py", SLIPS)
    runs = (
        "runs:\n"
        "  per-micro-batch: {script: {args: [--slip, every-micro-batch], gradient_accumulation_steps: 4}}\n"
        "  batch-ignored: {script: {args: [--slip, none], batch_size: 32}}\n"
    )
    done, summary = run_spec(script_spec(tmp_path, "slips.py", extra=runs), tmp_path / "out")
    assert done.returncode == 3, done.stdout + done.stderr
    reasons = {name: launch_of(summary, name)["reason"] for name in summary["runs"]}
    failed = "the launch exited with code 1: accel-run worker: "
    assert reasons == {
        # 256 samples in micro-batches of 16, 4 per optimizer step: 16 micro-batches, 4 optimizer steps
        "per-micro-batch": failed + "slips.py:26: runner.track.step was called while gradients were not "
        "synchronised (12 of 16 calls came between optimizer steps, under gradient accumulation 4), so it reported "
        "16 optimizer steps where the optimizer took 4: call it once per optimizer step: after optimizer.step(), "
        "when accelerator.sync_gradients is True",
        "batch-ignored": failed + "slips.py:28: script.batch_size declares 32 samples per process and micro-batch "
        "(32 per optimizer step with gradient accumulation 1), but the script reported 16 per optimizer step (the "
        "model trained micro-batches of 16): give the declared batch to your DataLoader (accel-run passes "
        "--batch-size 32), and samples= counts this process's samples of the whole optimizer step",
    }
    assert not list((tmp_path / "out").glob("*/*/*/metrics.json"))  # numbers built on such reports: never written


COMPARISON = """\
name: fair
script: {path: train.py, SCRIPT}
launch: {device: cpu}
runs:
  single: {}
  dual: {launch: {processes: 2}, script: {DUAL}}
expect:
  - {kind: speedup, run: dual, baseline: single, at_least: 1.5}
"""


def comparison(folder: Path, script: str, dual: str) -> Path:
    write(folder, "train.py", "")
    return write(folder, "spec.yaml", COMPARISON.replace("SCRIPT", script).replace("DUAL", dual))


def test_a_declared_batch_makes_the_readme_comparison_of_equal_global_batches_warning_free(tmp_path: Path) -> None:
    # the learning log's fair comparison, 2 processes x 32 against 1 x 64, with a speedup expected
    assert messages(comparison(tmp_path, "batch_size: 64", "batch_size: 32")) == []
    # the same batches written into script.args cannot be told apart from a second change
    in_args = comparison(tmp_path, "args: [--batch-size, '64']", "args: [--batch-size, '32']")
    assert messages(in_args) == [
        "8:5: speedup of 'dual' over 'single' is confounded: the runs differ in launch.processes (2 vs 1) and "
        "script.args (['--batch-size', '32'] vs ['--batch-size', '64']), so the speedup cannot be credited to one "
        "of them; compare runs that differ in one setting (a batch size in script.args? declare it as "
        "script.batch_size, and accel-run knows the global batch) [acknowledge: confounded]"
    ]
    # and a declared batch says when the work differs: 2 x 64 against 1 x 64
    assert messages(comparison(tmp_path, "batch_size: 64", "batch_size: 64")) == [
        "8:5: speedup of 'dual' over 'single' compares different work: global batch 128 vs 64; it is measured in "
        "samples/s, but the two runs do not train alike [acknowledge: different-work]"
    ]


def test_the_declared_batch_is_passed_after_the_arguments_and_never_twice(tmp_path: Path) -> None:
    spec = comparison(tmp_path, "args: [--epochs, '1'], batch_size: 64", "batch_size: 8, batch_size_arg: --bs")
    done = run_cli("--dry-run", str(spec), "--format", "json", "--output", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    argvs = {run["name"]: run["argv"][-4:] for run in json.loads(done.stdout)["runs"]}
    assert argvs == {"single": ["--epochs", "1", "--batch-size", "64"], "dual": ["--epochs", "1", "--bs", "8"]}
    twice = comparison(tmp_path, "args: [--batch-size=16], batch_size: 32", "batch_size: 16")
    assert messages(twice) == [
        "2:33: script.args passes --batch-size and so does script.batch_size (32): remove --batch-size and its "
        "value from script.args (accel-run adds --batch-size 32)"
    ]


def _seen(
    accumulation: int,
    optimizer_steps: tuple[int, ...],
    reports: list[tuple[int, int, int]],
    micro: int = 16,
    world: int = 1,
) -> Any:
    """A Seen fed as the hooks and track.step feed it: reports of (samples, steps, forwards of `micro` before it)."""
    from runner.worker.report_checks import Seen

    seen = Seen(accumulation=accumulation, world=world)
    for samples, steps, forwards in reports:
        for _ in range(forwards):
            seen.forward(micro)
        seen.reported(samples, steps, synchronised=True)
    seen.stepped_at_last_report = optimizer_steps
    return seen


def test_counts_apart_by_a_factor_contradict_and_counts_off_by_one_do_not() -> None:
    from runner.worker.report_checks import contradiction

    # accumulation by hand (Accelerate sees 1): the optimizer steps every 4 micro-batches, the script reports each
    manual = _seen(1, (25,), [(16, 1, 1)] * 100)
    assert contradiction(manual).endswith(
        ": the script reported 100 optimizer steps, but its optimizer took 25 (gradient accumulation 1): call "
        "runner.track.step once per optimizer step: after optimizer.step(), when accelerator.sync_gradients is True "
        "(steps=N reports N at once; through accelerator.log, pass step= the optimizer steps completed)"
    )
    # one report per step after its 4 micro-batches, with their 64 samples: as it should be
    assert contradiction(_seen(4, (25,), [(64, 1, 4)] * 25)) == ""
    # an fp16 step the loss scaler skipped, or a report made just before optimizer.step(): one step apart
    assert contradiction(_seen(1, (24,), [(16, 1, 1)] * 25)) == ""
    # a tracker logging every 10 steps with step=N: 10 steps per report, 10 forwards before it
    assert contradiction(_seen(1, (50,), [(160, 10, 10)] * 5)) == ""
    # a critic stepped 5 times per generator step: the generator's optimizer matches the reports
    assert contradiction(_seen(1, (125, 25), [(16, 1, 1)] * 25)) == ""


def test_samples_are_judged_only_where_the_model_shows_its_batch_plainly() -> None:
    from runner.worker.report_checks import contradiction

    # once per step of 4 micro-batches of 16, with one micro-batch's samples
    assert contradiction(_seen(4, (25,), [(16, 1, 4)] * 25)).endswith(
        ": the script reported 16 samples per optimizer step, but the model trained 64 in this process per optimizer "
        "step (4 micro-batches of 16, gradient accumulation 4): samples= counts this process's samples of the whole "
        "optimizer step (its batch x gradient accumulation)"
    )
    # the samples of both processes (2 x 16) where this process trained 16
    assert ": the script reported 32 samples per optimizer step, the samples of all 2 processes, but samples= " in (
        contradiction(_seen(1, (25,), [(32, 1, 1)] * 25, world=2))
    )
    # a sequence-first model (its first input is [50 steps, 16 samples]): the batch cannot be read, nothing claimed
    assert contradiction(_seen(4, (25,), [(64, 1, 4)] * 25, micro=50)) == ""
    # two forwards per micro-batch (two views of each batch): neither
    assert contradiction(_seen(1, (25,), [(16, 1, 2)] * 25)) == ""
    # a declared batch is checked on the reported samples alone, whatever the model shows
    assert "but the script reported 16 per optimizer step: give the declared batch" in contradiction(
        _seen(1, (25,), [(16, 1, 1)] * 25, micro=50), declared_batch=32, batch_arg="--batch-size"
    )
