"""End to end on CPU: the real `accelerate launch`, real gloo process groups, real files.

One accel-run invocation (module fixture) runs a small spec with 1 and 2 processes, fp32 and
bf16, accumulation 1 and 4, and a run that crashes; the tests read what it left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file

from conftest import run_cli, run_in_terminal
from runner.results.records import RunRecord
from runner.spec.validate import require_valid
from runner.verdicts.check import timing_judged_runs

pytestmark = pytest.mark.slow

SPEC = """\
name: e2e
model: {kind: mlp, input_dim: 16, hidden: [64], classes: 4}
data: {kind: synthetic-classification, samples: 2048, features: 16, classes: 4}
train: {epochs: 3, batch_size: 32, lr_schedule: cosine, optimizer: {lr: 0.01}}
launch: {device: cpu}  # these tests are about gloo on CPU; on a GPU machine too
# one repeat, any window, any load: these tests are about the pipeline, not the verdict's statistics
measure: {warmup_steps: 2, repeats: 1, min_duration_s: 0.01, max_disturbance: 1.0}
baseline: one
runs:
  one: {}
  two:
    description: 2 processes x batch 16 = the global batch of one
    launch: {processes: 2}
    train: {batch_size: 16}
  bf16:
    launch: {mixed_precision: bf16}
  accum4:
    train: {batch_size: 8, gradient_accumulation_steps: 4}
  crash:
    launch: {env: {ACCEL_RUN_FAILPOINT: "raise:3"}}
  diverge:
    train: {optimizer: {kind: sgd, lr: 100}}
expect:
  - {kind: speedup, title: two processes 100x faster, run: two, baseline: one, at_least: 100}
  - {kind: close, run: two, baseline: one, metric: final_loss, rel_tol: 0.05}
  - {kind: close, run: accum4, baseline: one, metric: final_loss, rel_tol: 0.05}
  - {kind: bound, run: one, metric: accuracy, at_least: 0.4}
  - {kind: ratio, run: bf16, baseline: one, metric: peak_memory_mb, at_most: 1.5}
  - {kind: bound, run: crash, metric: accuracy, at_least: 0.1}
"""

LEFTOVER_CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
mixed_precision: fp16
num_processes: 8
use_cpu: false
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("e2e")
    spec = base / "e2e.yaml"
    spec.write_text(SPEC)
    # A leftover global `accelerate config` and ACCELERATE_* variables must change nothing.
    hf_home = base / "hf"
    (hf_home / "accelerate").mkdir(parents=True)
    (hf_home / "accelerate" / "default_config.yaml").write_text(LEFTOVER_CONFIG)
    env = {"HF_HOME": str(hf_home), "ACCELERATE_MIXED_PRECISION": "fp16", "ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "7"}
    done = run_cli(str(spec), "--output", str(base / "results"), "--no-progress", env=env)
    folders = list((base / "results" / "e2e").iterdir())
    assert len(folders) == 1, done.stderr
    folder = folders[0]
    return {
        "done": done,
        "folder": folder,
        "summary": json.loads((folder / "summary.json").read_text()),
    }


def test_a_crashed_run_exits_3_and_the_others_are_kept(result: dict[str, Any]) -> None:
    done, summary = result["done"], result["summary"]
    assert done.returncode == 3, done.stderr
    statuses = {name: run["status"] for name, run in summary["runs"].items()}
    assert statuses == {"one": "ok", "two": "ok", "bf16": "ok", "accum4": "ok", "crash": "failed", "diverge": "failed"}
    crash = summary["runs"]["crash"]
    assert (
        crash["reason"]
        == "the launch exited with code 1: RuntimeError: injected failure at step 3 (ACCEL_RUN_FAILPOINT)"
    )
    assert "injected failure at step 3" in crash["repeats"][0]["log_tail"]
    assert "injected failure at step 3" in done.stderr  # shown to the user, not hidden in a log
    assert (
        "runner/session/" not in done.stderr and "runner/pipeline.py" not in done.stderr
    )  # the worker's traceback is shown, accel-run's own is not


def test_a_diverged_training_is_reported_as_such_not_as_a_crash(result: dict[str, Any]) -> None:
    diverge = result["summary"]["runs"]["diverge"]
    assert diverge["reason"] == "training diverged: the training loss is not finite (lower train.optimizer.lr?)"
    metrics = json.loads((result["folder"] / "diverge" / "metrics.json").read_text())
    assert metrics["metrics"]["final_loss"] is None and metrics["observed"]["diverged"] is True


def test_the_results_layout_is_complete(result: dict[str, Any]) -> None:
    folder = result["folder"]
    assert {p.name for p in folder.iterdir()} >= {"spec.yaml", "summary.json", "report.md", "one", "two", "crash"}
    for run in ("one", "two", "bf16", "accum4", "crash"):
        files = {p.name for p in (folder / run).iterdir()}
        assert files >= {"accelerate_config.yaml", "command.txt", "plan.json", "stdout.log", "stderr.log"}, run
        if run != "crash":
            assert "metrics.json" in files
    assert (folder / "spec.yaml").read_text() == SPEC


def test_summary_json_has_the_contract_keys(result: dict[str, Any]) -> None:
    summary = result["summary"]
    assert set(summary) >= {"spec", "environment", "runs", "expectations"}
    one = summary["runs"]["one"]
    assert set(one) >= {"status", "metrics", "declared", "observed"}
    required = {
        "train_time_s",
        "startup_s",
        "samples_per_s",
        "optimizer_steps",
        "final_loss",
        "eval_loss",
        "accuracy",
        "peak_memory_mb",
        "processes",
        "mixed_precision",
        "global_batch_size",
        "params",
    }
    assert required <= set(one["metrics"])
    for verdict in summary["expectations"]:
        assert set(verdict) >= {"title", "kind", "verdict", "measured", "expected", "message"}


def test_two_processes_form_a_real_gloo_group_with_synchronised_gradients(result: dict[str, Any]) -> None:
    two = result["summary"]["runs"]["two"]
    observed = two["observed"]
    assert observed["world_size"] == 2
    assert observed["distributed_type"] == "MULTI_CPU" and observed["backend"] == "gloo"
    hashes = observed["param_hashes"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]  # identical parameters after training


def test_training_really_learns(result: dict[str, Any]) -> None:
    one = result["summary"]["runs"]["one"]
    curve = [loss for _, loss in one["loss_curve"]]
    assert curve[-1] < 0.8 * curve[0]
    assert one["metrics"]["accuracy"] > 0.4  # chance is 0.25 with 4 classes
    assert one["metrics"]["optimizer_steps"] == 3 * (2048 // 32)


def test_equal_global_batches_give_the_same_training(result: dict[str, Any]) -> None:
    runs = result["summary"]["runs"]
    one, two, accum = (runs[n]["metrics"] for n in ("one", "two", "accum4"))
    assert two["global_batch_size"] == accum["global_batch_size"] == one["global_batch_size"] == 32
    assert two["optimizer_steps"] == accum["optimizer_steps"] == one["optimizer_steps"]
    assert abs(two["final_loss"] - one["final_loss"]) < 1e-3 * one["final_loss"]
    assert abs(accum["final_loss"] - one["final_loss"]) < 1e-3 * one["final_loss"]


def test_declared_precision_and_accumulation_are_what_ran(result: dict[str, Any]) -> None:
    runs = result["summary"]["runs"]
    assert runs["bf16"]["observed"]["compute_dtype"] == "torch.bfloat16"
    assert runs["bf16"]["observed"]["launcher_mixed_precision"] == "bf16"
    assert runs["one"]["observed"]["compute_dtype"] == "torch.float32"
    assert runs["one"]["observed"]["mixed_precision"] == "no"  # not the leftover fp16
    assert runs["accum4"]["observed"]["gradient_accumulation_steps"] == 4  # not the leftover 7
    for name in ("one", "bf16"):  # autocast computes in bf16 and keeps the parameters in fp32
        observed = runs[name]["observed"]
        assert observed["param_dtype"] == "torch.float32"
        assert (observed["float32_matmul_precision"], observed["cuda_matmul_allow_tf32"]) == ("highest", False)


def test_the_second_clock_ran_after_training_in_every_process(result: dict[str, Any]) -> None:
    runs = result["summary"]["runs"]
    for name in ("one", "two", "bf16", "accum4"):  # "two": both ranks ran the window's steps in step
        probe = runs[name]["attribution"]
        assert probe["device_clock"] == "cpu_ops", name
        assert (
            0 < probe["device_busy_s"]
            and probe["device_launches_per_step"] > probe["device_optimizer_launches_per_step"]
        )
    assert runs["bf16"]["attribution"]["device_cast_s"] > 0  # autocast's conversions, seen as casts


def test_threads_are_declared_and_observed(result: dict[str, Any]) -> None:
    runs = result["summary"]["runs"]
    for name in ("one", "two"):
        assert (
            runs[name]["observed"]["threads_per_process"]
            == [runs[name]["declared"]["threads_per_process"]] * (runs[name]["declared"]["processes"])
        )


def test_each_verdict_kind_is_reported(result: dict[str, Any]) -> None:
    verdicts = {(v["kind"], v["verdict"]) for v in result["summary"]["expectations"]}
    assert ("speedup", "fail") in verdicts
    assert ("close", "pass") in verdicts
    assert ("bound", "pass") in verdicts
    assert ("ratio", "pass") in verdicts
    assert ("bound", "error") in verdicts  # the crashed run cannot be evaluated: error, not skipped
    lines = result["done"].stdout
    assert "FAIL  two processes 100x faster: measured " in lines
    assert (
        "ERROR bound" not in lines
        and "ERROR accuracy of crash >= 0.1: cannot be evaluated: run 'crash' is failed" in lines
    )


def test_the_compiled_config_is_accepted_by_accelerate(result: dict[str, Any]) -> None:
    config_path = result["folder"] / "two" / "accelerate_config.yaml"
    config = load_config_from_file(str(config_path))
    assert config.num_processes == 2
    port = yaml.safe_load(config_path.read_text())["main_process_port"]
    assert f"# rendezvous port: {port}" in (result["folder"] / "two" / "command.txt").read_text()


def test_the_report_is_written_and_rerendered_identically(result: dict[str, Any]) -> None:
    folder = result["folder"]
    markdown = (folder / "report.md").read_text()
    assert "| Run | Status | Procs | Precision | Global batch |" in markdown
    assert "## Why" in markdown and "gradient synchronisation takes" in markdown
    again = run_cli("--report", str(folder))
    assert again.returncode == result["done"].returncode == 3  # the exit code of the session it shows
    assert again.stdout.startswith("accel-run report: e2e")
    assert (folder / "report.md").read_text() == markdown


def test_a_failed_expectation_alone_exits_1(tmp_path: Path) -> None:
    spec = tmp_path / "strict.yaml"
    spec.write_text(
        SPEC.split("baseline:")[0]
        + "expect:\n  - {kind: bound, title: impossible accuracy, run: main, metric: accuracy, at_least: 0.999}\n"
    )
    done = run_cli(str(spec), "--output", str(tmp_path / "results"), "--no-progress")
    assert done.returncode == 1, done.stderr
    assert "FAIL  impossible accuracy: measured " in done.stdout


def test_progress_bars_in_a_terminal(tmp_path: Path) -> None:
    """In a terminal: a bar over launches and a per-run bar of steps fed by the worker (tqdm)."""
    spec = tmp_path / "bars.yaml"
    # one thread: 40 epochs of two threads crawl when another process takes a core (docs/timing.md)
    launch = "launch: {device: cpu, cpu_threads_per_process: 1}"
    head = SPEC.split("baseline:")[0].replace("epochs: 3", "epochs: 40")
    spec.write_text(head.replace("launch: {device: cpu}", launch))
    code, screen = run_in_terminal(str(spec), "--output", str(tmp_path / "out"))
    assert code == 0
    assert "runs: 100%" in screen and "1/1" in screen  # the bar over launches, finished
    assert "/2560 [" in screen  # the per-run bar of optimizer steps (40 epochs x 64)
    assert "[1/1] main: ok in" in screen


TIMED_AND_NOT = """\
name: judged
model: {kind: mlp, input_dim: 16, hidden: [32], classes: 4}
data: {kind: synthetic-classification, samples: 2048, features: 16, classes: 4}
train: {max_steps: 600, batch_size: 16, eval_samples: 64}
launch: {device: cpu, cpu_threads_per_process: 1}
# blocks of 5 ms: 600 steps of about 0.5 ms give some 60, so min_blocks (10) is met by the declared training
# even when the first blocks are still warm-up (at 20 ms, 14 blocks less those once left one launch short)
measure: {repeats: 1, warmup_steps: 2, max_disturbance: 1.0, block_s: 0.005}
runs:
  a: {}
  b: {train: {batch_size: 32}}
  c: {train: {batch_size: 8}}
  d: {launch: {processes: 2}}
expect:
  - {kind: speedup, run: b, baseline: a, at_least: 0.1}
  - {kind: close, run: c, baseline: a, metric: final_loss, rel_tol: 10}
  - {kind: speedup, run: d, baseline: a, at_least: 0.1}
"""


def test_timing_only_steps_serve_only_runs_whose_timing_a_checked_expectation_reads(tmp_path: Path) -> None:
    """'c' is only compared on its loss, and 'd' is left out by --only: neither needs a tight interval, so their
    launches are told so (plan.json) and add no timing-only steps beyond what measure.min_blocks asks for."""
    spec = tmp_path / "judged.yaml"
    spec.write_text(TIMED_AND_NOT)
    validated = require_valid(str(spec))
    records = {name: RunRecord(name, "", 1, None, 0.0, selected=name != "d") for name in validated.runs}
    assert timing_judged_runs(validated.spec, records) == {"a", "b"}
    done = run_cli(str(spec), "--only", "a,b,c", "--output", str(tmp_path / "out"), "--no-progress")
    assert done.returncode == 0, done.stderr
    (folder,) = (tmp_path / "out" / "judged").iterdir()
    plans = {name: json.loads((folder / name / "plan.json").read_text()) for name in ("a", "b", "c")}
    assert {name: plan["timing_judged"] for name, plan in plans.items()} == {"a": True, "b": True, "c": False}
    summary = json.loads((folder / "summary.json").read_text())
    c = summary["runs"]["c"]["metrics"]
    # 600 declared steps give c at least measure.min_blocks blocks of 5 ms: nothing to add for it
    assert c["timed_blocks"] >= 10 and c["extra_steps"] == 0


def test_a_later_launch_tightens_no_interval_once_an_earlier_one_was_fit(tmp_path: Path) -> None:
    """From two launches on, a verdict compares launches: a run's second launch adds timing-only steps only
    up to measure.min_blocks once its first was fit to time (plan.json says so), and still when it was not."""
    spec = tmp_path / "judged.yaml"
    spec.write_text(TIMED_AND_NOT.replace("repeats: 1", "repeats: 2"))
    done = run_cli(str(spec), "--only", "a,b", "--output", str(tmp_path / "out"), "--no-progress")
    assert done.returncode == 0, done.stderr
    (folder,) = (tmp_path / "out" / "judged").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    for name in ("a", "b"):
        first = json.loads((folder / name / "plan.json").read_text())
        second = json.loads((folder / name / "repeat-2" / "plan.json").read_text())
        first_unfit = "1" in (summary["runs"][name]["disturbance"].get("unfit_repeats") or {})
        assert first["timing_judged"] is True
        assert second["timing_judged"] is first_unfit, (name, summary["runs"][name]["disturbance"])
        (later,) = [r for r in summary["runs"][name]["repeats"] if r["repeat"] == 2]
        if not first_unfit:  # 600 declared steps give some 50 blocks, over min_blocks: nothing to top up
            assert later["metrics"]["extra_steps"] == 0


CORES = os.cpu_count() or 2
HOGGED = """\
name: hogged
model: {kind: mlp, input_dim: 16, hidden: [64], classes: 4}
data: {kind: synthetic-classification, samples: 2048, features: 16, classes: 4}
train: {max_steps: 600, batch_size: 16, eval_samples: 64}
launch: {device: cpu, cpu_threads_per_process: 1, processes: 2}
measure: {repeats: 1, warmup_steps: 2, block_s: 0.005}  # 5 ms blocks: as TIMED_AND_NOT's, min_blocks is met
runs:
  a: {}
  b: {train: {batch_size: 32}}
expect:
  - {kind: speedup, run: b, baseline: a, at_least: 0.1}
"""


def test_a_launch_disturbed_beyond_the_limit_spends_nothing_on_tightening_its_interval(tmp_path: Path) -> None:
    """Under a CPU hog this test starts (and stops), others take more than measure.max_disturbance (10%) of the
    cores: the launch is unfit whatever it adds, so it gets no timing-only steps beyond what min_blocks asks."""
    spec = tmp_path / "hogged.yaml"
    spec.write_text(HOGGED)
    # half the cores busy, on any machine: others take about 50%, far over the limit
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(1, CORES // 2))]
    try:
        done = run_cli(str(spec), "--output", str(tmp_path / "out"), "--no-progress")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert done.returncode in (0, 1), done.stderr
    (folder,) = (tmp_path / "out" / "hogged").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    for name in ("a", "b"):
        (launch,) = summary["runs"][name]["repeats"]
        share = launch["disturbance"]["others_share"]
        assert share > 0.10, f"{name}: the hog was not seen ({share}): nothing to check"
        # 600 declared steps give far more than measure.min_blocks blocks of 5 ms: nothing to add for a disturbed launch
        metrics = launch["metrics"]
        assert metrics["timed_blocks"] >= 10 and metrics["extra_steps"] == 0, (name, share, metrics)
