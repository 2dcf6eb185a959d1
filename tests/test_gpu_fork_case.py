"""The second H200 visit's real result (tests/cases/gpu-h200-fork): what the GPU issue asked of a run there.

A one-GPU machine ran the seed's spec (the runs that need two GPUs skipped), every launch was forked
by the fork server, the timed parts were blocks, and the bf16 verdict was decided at one launch.
The report is rendered again from summary.json, as `accel-run --report` does.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import ROOT
from runner.report.text import render
from runner.session.summary import exit_code_of

CASE = ROOT / "tests" / "cases" / "gpu-h200-fork"


@pytest.fixture(scope="module")
def summary() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CASE / "summary.json").read_text(encoding="utf-8"))
    return data


def test_the_runs_that_need_two_gpus_were_skipped_and_the_others_ran(summary: dict[str, Any]) -> None:
    runs = summary["runs"]
    skipped = {name: run["reason"] for name, run in runs.items() if run["status"] == "skipped"}
    assert skipped == {
        "dual": "needs 2 GPUs; this machine has 1",
        "large-dual": "needs 2 GPUs; this machine has 1",
    }
    assert all(run["status"] == "ok" for name, run in runs.items() if name not in skipped)
    verdicts = {e["title"]: (e["verdict"], e["message"]) for e in summary["expectations"]}
    assert verdicts["2 processes >= 1.8x faster than 1 (dual vs single)"] == (
        "skipped",
        "not evaluated: run 'dual' needs 2 GPUs; this machine has 1",
    )


def test_every_launch_was_forked_and_timed_in_enough_blocks(summary: dict[str, Any]) -> None:
    launches = [r for run in summary["runs"].values() for r in run["repeats"]]
    assert len(launches) == 7
    assert {r["launcher"] for r in launches} == {"fork"}
    assert min(r["metrics"]["timed_blocks"] for r in launches) >= 10
    # after the fork server's start, a launch reaches its first step in under a second (16-19 s before)
    assert max(r["metrics"]["startup_s"] for r in launches[1:]) < 1.0


def test_the_bf16_speedup_is_decided_at_one_launch_and_explained_by_the_gpu_clock(summary: dict[str, Any]) -> None:
    (bf16,) = [e for e in summary["expectations"] if e["title"].startswith("bf16 >= 2x")]
    assert bf16["verdict"] == "fail"
    assert bf16["repeats_used"] == 1
    assert bf16["message"] == "measured 0.74x, needs >= 2x (63% short)"
    sentences = bf16["why"]["sentences"]
    assert any(s.startswith("the step is bound by launching kernels") for s in sentences)


def test_the_report_renders_again_from_the_summary_with_its_time_section(summary: dict[str, Any]) -> None:
    text = render(summary, markdown=False)
    assert "7 launch(es) in 50.2 s of wall; their timed parts took 34.7 s (69% of the session)." in text
    assert "SKIP  2 processes >= 1.8x faster than 1 (dual vs single): not evaluated" in text
    assert exit_code_of(summary) == 1  # failed expectations: a measured result
