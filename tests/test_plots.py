"""Plots are an optional extra: every picture renders from a recorded summary.json (no launches), and says what
can be checked without eyes; a hint (never a crash) when matplotlib is missing."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT
from runner.report.plots import (
    LOSS_PNG,
    MAX_WHY_PANELS,
    PLOTS_HINT,
    THROUGHPUT_PNG,
    VERDICTS_PNG,
    WHY_PNG,
    figures,
    loss_series,
    model_groups,
    verdict_rows,
    why_panels,
    write_plots,
)

RECORDED = ROOT / "tests" / "cases" / "summaries" / "three-models" / "summary.json"


def recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RECORDED.read_text())
    return data


def test_every_picture_is_written_with_the_verdicts_first(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")  # installed by `make test` ('.[dev,plots]')
    written, hint = write_plots(recorded(), tmp_path)
    assert hint is None
    assert written == [VERDICTS_PNG, WHY_PNG, LOSS_PNG, THROUGHPUT_PNG]  # the report lists them in this order
    for name in written:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


def test_one_panel_per_model_in_the_loss_and_throughput_pictures() -> None:
    pytest.importorskip("matplotlib")
    summary = recorded()
    assert list(model_groups(summary)) == ["1.35k parameters", "399k parameters", "2.37k parameters"]
    drawn = figures(summary)
    for name in (LOSS_PNG, THROUGHPUT_PNG):
        panels = [ax for ax in drawn[name].axes if ax.get_visible()]
        assert [ax.get_title() for ax in panels] == ["1.35k parameters", "399k parameters", "2.37k parameters"]


def test_the_verdict_chart_draws_each_bound_and_measured_ratio() -> None:
    pytest.importorskip("matplotlib")
    summary = recorded()
    rows = verdict_rows(summary)
    assert [(r.title, r.verdict, r.at_least, r.at_most) for r in rows] == [
        ("two processes 100x faster", "fail", 100.0, None),
        ("peak_memory_mb of bf16 <= 1.5x one's", "pass", None, 1.5),
        ("tiny-two >= 1.5x faster than tiny-one", "inconclusive", 1.5, None),
        ("mid-dual >= 1.8x faster than mid", "inconclusive", 1.8, None),
        ("mid-bf16 step time <= 0.6x mid's", "fail", None, 0.6),
    ]
    (ax,) = figures(summary)[VERDICTS_PNG].axes
    bounds = sorted(line.get_xdata()[0] for line in ax.lines if line.get_gid() == "bound")
    assert bounds == [0.6, 1.5, 1.5, 1.8, 100.0]
    measured = sorted(round(line.get_xdata()[0], 3) for line in ax.lines if line.get_gid() == "measured")
    assert measured == [0.667, 2.363, 11.184, 19.188]  # the inconclusive one without a measurement has no dot
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "two processes 100x faster"


def test_the_why_picture_splits_the_run_and_its_baseline() -> None:
    pytest.importorskip("matplotlib")
    summary = recorded()
    panels = why_panels(summary)
    assert [(p.title, [b.run for b in p.bars]) for p in panels] == [
        ("two processes 100x faster", ["two", "one"]),
        ("tiny-two >= 1.5x faster than tiny-one", ["tiny-two", "tiny-one"]),
        ("mid-dual >= 1.8x faster than mid", ["mid-dual", "mid"]),
        ("mid-bf16 step time <= 0.6x mid's", ["mid-bf16", "mid"]),
    ]
    why = summary["expectations"][0]["why"]["parts_s"]  # the Why's own figures: picture and sentences agree
    assert panels[0].bars[0].parts_ms == pytest.approx({k: v * 1000 for k, v in why.items()})
    for panel in panels:
        for bar in panel.bars:
            assert sum(bar.parts_ms.values()) == pytest.approx(bar.step_ms)
    gids = {p.get_gid() for ax in figures(summary)[WHY_PNG].axes for p in ax.patches}
    assert {"two:communication", "one:compute", "mid:other"} <= gids


def test_identical_runs_are_both_drawn_and_named() -> None:
    pytest.importorskip("matplotlib")
    summary = recorded()
    series = loss_series(summary, ["one", "two", "bf16", "accum4"])
    assert [s.label for s in series] == [
        "one",
        "two (identical to one)",
        "bf16 (within 0.65% of one)",
        "accum4 (identical to one)",
    ]
    (first, *_) = figures(summary)[LOSS_PNG].axes
    assert [line.get_gid() for line in first.lines] == ["one", "two", "bf16", "accum4"]
    assert [t.get_text() for t in first.get_legend().get_texts()][1] == "two (identical to one)"


def test_loss_is_against_samples_seen_and_short_runs_stay_visible() -> None:
    summary = recorded()
    one, dual = loss_series(summary, ["mid", "mid-dual"])
    assert one.samples[0] == 10 * 64 and dual.samples[0] == 10 * 128  # optimizer step x global batch
    assert len(dual.samples) == 3  # a 3-point run still has a line and markers on every point
    short = {**summary["runs"]["mid"], "loss_curve": [[4, 2.3]]}
    (point,) = loss_series({"runs": {"short": short}}, ["short"])
    assert (point.samples, point.loss) == ([4 * 64], [2.3])


def test_throughput_draws_whiskers_only_from_repeats_fit_to_time() -> None:
    pytest.importorskip("matplotlib")
    fig = figures(recorded())[THROUGHPUT_PNG]
    middle = fig.axes[1]  # mid (11 repeats), mid-bf16 (11), mid-dual (1): every one unfit to time
    heights = [round(p.get_height()) for p in middle.patches]
    assert heights == [799, 287, 8942]  # what the unfit repeats measured, drawn hatched
    assert [p.get_gid() for p in middle.patches] == ["mid:unfit", "mid-bf16:unfit", "mid-dual:unfit"]
    assert not [c for c in middle.containers if getattr(c, "has_yerr", False)]  # a range of disturbed repeats: none
    assert [t.get_text() for t in middle.texts] == ["799\nunfit, n=11", "287\nunfit, n=11", "8,942\nunfit, n=1"]
    first = fig.axes[0]  # one, two, bf16, accum4: fit (max_disturbance 1), one repeat each
    assert [p.get_gid() for p in first.patches] == ["one", "two", "bf16", "accum4"]
    assert not [c for c in first.containers if getattr(c, "has_yerr", False)]  # every run there has n = 1


def test_a_summary_without_expectations_or_successful_runs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    summary = recorded()
    only_runs = {**summary, "expectations": []}
    assert write_plots(only_runs, tmp_path)[0] == [LOSS_PNG, THROUGHPUT_PNG]
    nothing = {**summary, "expectations": [], "runs": {"crash": summary["runs"]["crash"]}}
    assert write_plots(nothing, tmp_path / "..") == ([], None)


def test_without_matplotlib_a_hint_and_no_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    written, hint = write_plots(recorded(), tmp_path)
    assert (written, hint) == ([], PLOTS_HINT)
    assert list(tmp_path.iterdir()) == []


def test_the_why_picture_draws_at_most_six_panels_and_says_how_many_more() -> None:
    pytest.importorskip("matplotlib")
    summary = recorded()
    explained = [e for e in summary["expectations"] if e.get("why")]
    summary["expectations"] = explained * 3  # 12 explained expectations
    assert len(why_panels(summary)) == 12
    figure = figures(summary)[WHY_PNG]
    drawn = [ax for ax in figure.axes if ax.patches]
    assert len(drawn) == MAX_WHY_PANELS == 6
    assert any(text.get_text().endswith("(6 more explained in report.md)") for text in figure.texts)
