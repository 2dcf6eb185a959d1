"""The report never shows a number stronger than its data, on recorded summaries of real sessions.

tests/cases/summaries holds them (each folder's README says how it was made): a day6-quick session whose
every timing was disturbed (written before summary.json kept unfit timings apart), the README's day6-quick
session on a busy machine, and a session interrupted by Ctrl-C in its fourth round, with a CPU hog in its
second. Each is rendered as it is, and
recomputed with today's code from its repeats as a session does: records, verdicts, summary.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT
from runner.contract import Declared
from runner.report.plots import THROUGHPUT_PNG, VERDICTS_PNG, figures, model_groups, throughput_bars, verdict_rows
from runner.report.text import RUN_HEADER, render, repeats_line, run_rows
from runner.results.records import RunRecord
from runner.session.summary import build_summary, keep_finished
from runner.spec.validate import validate_file
from runner.verdicts.check import check_expectations
from runner.verdicts.rounds import stopped
from runner.verdicts.why import explain

CASES = ROOT / "tests" / "cases"
DISTURBED = CASES / "summaries" / "day6-quick-disturbed"
INTERRUPTED = CASES / "summaries" / "interrupted"
BUSY = CASES / "summaries" / "day6-quick-busy"
HOGGED = CASES / "summaries" / "day6-quick-hog"  # the README's excerpt
RECORDED = [
    DISTURBED / "summary.json",
    BUSY / "summary.json",
    HOGGED / "summary.json",
    INTERRUPTED / "summary.json",
    CASES / "summaries" / "three-models" / "summary.json",
    CASES / "gpu-h200" / "summary.json",
    CASES / "gpu-h200-fork" / "summary.json",
]


def recorded(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "summary.json").read_text())
    return data


def with_declared_today(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with each run's declared part as today's accel-run writes it: a field added since the
    session was recorded takes its default (what that accel-run ran), so --resume would keep its launches."""
    for run in summary["runs"].values():
        if run["declared"]:
            run["declared"] = Declared.from_json(run["declared"]).as_json()
    return summary


def recomputed(folder: Path) -> dict[str, Any]:
    """The recorded session's summary as today's code builds it from the same finished repeats.

    As a session does: a record per run (its repeats fixed by --repeats or the spec), the finished
    launches kept as --resume keeps them, the records cut short when the session was interrupted,
    the verdicts checked and told why they stopped.
    """
    old = with_declared_today(recorded(folder))
    validated = validate_file(str(folder / "spec.yaml")).spec
    assert validated is not None
    interrupted = old["status"] == "interrupted"
    records = {}
    for name, run in validated.runs.items():
        fixed = old["options"].get("repeats") or run.config.measure.repeats
        records[name] = RunRecord.measured_by(
            run.config.measure,
            name=name,
            description=run.description,
            repeats=1 if fixed == "auto" else int(fixed),
            declared=Declared.from_json(old["runs"][name]["declared"]) if old["runs"][name]["declared"] else None,
            selected=old["runs"][name]["status"] != "skipped",
            auto=fixed == "auto",
        )
    keep_finished(old, records)
    for record in records.values():
        record.cut_short = "interrupted" if interrupted else ""
    verdicts = [stopped(v, records, interrupted) for v in check_expectations(validated.spec, records)]
    return build_summary(
        status=old["status"],
        spec=old["spec"],
        options=old["options"],
        environment=old["environment"],
        records=records,
        verdicts=verdicts,
    )


def table(summary: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The runs table as cells by run and column."""
    return {row[0]: dict(zip(RUN_HEADER, row, strict=True)) for row in run_rows(summary)}


def unfit(cell: str) -> bool:
    """Whether a cell is marked as resting on unfit repeats only: '1,397 (unfit)', '31,113 (unfit, n=3)'."""
    return re.search(r"\(unfit(, n=\d+)?\)$", cell) is not None


def figure(cell: str) -> float:
    """The leading number of a cell: '14,601 (unfit)' -> 14601.0."""
    match = re.match(r"[\d,.]+", cell)
    assert match, cell
    return float(match.group().replace(",", ""))


# --- timings made only of unfit repeats ----------------------------------------------------------------


@pytest.mark.parametrize("summary", [recorded(DISTURBED), recomputed(DISTURBED)], ids=["as recorded", "recomputed"])
def test_timings_of_unfit_repeats_only_are_marked_in_the_runs_table(summary: dict[str, Any]) -> None:
    cells = table(summary)
    assert cells["single"]["Samples/s"] == "1,397 (unfit)"
    assert cells["single"]["Train time"] == "144 s (unfit)"
    assert cells["single"]["Speedup"] == "1.00x (baseline)"
    assert cells["dual"]["Speedup"] == "16.99x (unfit)"  # 23,727 / 1,397: never a plain 17x on 2 shared cores
    assert cells["single-bf16"]["Speedup"] == "1.56x (unfit)"
    assert cells["large"]["Speedup"] == "other model"
    for name, row in cells.items():
        assert unfit(row["Samples/s"]), name
        assert row["Others' CPU"].endswith("(1/1 unfit)"), name
    text = render(summary, markdown=False)
    assert (
        "(unfit): no repeat of that run was fit to time, so the figure is only what its unfit repeats measured: it "
        "decides no expectation and is not a measurement to quote." in text
    )


def test_summary_json_keeps_timings_of_unfit_repeats_out_of_metrics() -> None:
    single = recomputed(DISTURBED)["runs"]["single"]
    assert "samples_per_s" not in single["metrics"] and "samples_per_s" not in single["spread"]
    (repeat,) = single["repeats"]
    assert single["unfit_metrics"]["samples_per_s"] == repeat["metrics"]["samples_per_s"] == 1396.634
    assert single["metrics"]["accuracy"] == repeat["metrics"]["accuracy"]  # what needs no timing stays
    # a run with some repeats fit: its timings are theirs alone, and none is set apart
    one = recorded(INTERRUPTED)["runs"]["one"]
    unfit = set(one["disturbance"]["unfit_repeats"])
    fit = [r["metrics"]["samples_per_s"] for r in one["repeats"] if str(r["repeat"]) not in unfit]
    assert (len(fit), len(unfit)) == (2, 2)
    assert one["spread"]["samples_per_s"]["values"] == fit
    assert one["metrics"]["samples_per_s"] == sum(fit) / 2
    assert one["unfit_metrics"] == {}


def test_the_throughput_plot_draws_unfit_runs_hatched_and_labelled() -> None:
    pytest.importorskip("matplotlib")
    summary = recorded(INTERRUPTED)
    (names,) = model_groups(summary).values()
    bars = {bar.run: bar for bar in throughput_bars(summary, names)}
    assert [name for name, bar in bars.items() if bar.unfit] == ["short-one"]
    assert (bars["short-one"].value, bars["short-one"].n, bars["short-one"].low) == (31113.191, 3, None)
    one = summary["runs"]["one"]
    fit = [
        r["metrics"]["samples_per_s"]
        for r in one["repeats"]
        if str(r["repeat"]) not in one["disturbance"]["unfit_repeats"]
    ]
    assert (bars["one"].n, bars["one"].low, bars["one"].high) == (2, min(fit), max(fit))  # the fit ones only
    (ax,) = [ax for ax in figures(summary)[THROUGHPUT_PNG].axes if ax.get_visible()]
    assert {patch.get_gid() for patch in ax.patches} == {"one", "two", "short-one:unfit", "short-two", "accum-2"}
    assert "31,113\nunfit, n=3" in [text.get_text() for text in ax.texts]


# --- the Speedup column --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", RECORDED, ids=[p.parent.name for p in RECORDED])
def test_the_speedup_column_is_the_samples_per_s_beside_it_over_the_baselines(path: Path) -> None:
    summary = json.loads(path.read_text())
    cells = table(summary)
    base = cells[summary["spec"]["baseline"]]
    checked = 0
    for name, row in cells.items():
        if not re.match(r"[\d.]+x", row["Speedup"]) or row["Speedup"].endswith("(baseline)"):
            continue
        shown = figure(row["Samples/s"]) / figure(base["Samples/s"])
        assert figure(row["Speedup"]) == pytest.approx(shown, rel=0.002, abs=0.006), name  # the cells' rounding
        assert unfit(row["Speedup"]) == (unfit(row["Samples/s"]) or unfit(base["Samples/s"])), name
        checked += 1
    assert checked


def test_the_speedup_column_and_the_verdict_each_say_what_they_are() -> None:
    summary = recorded(INTERRUPTED)
    cells = table(summary)
    assert (cells["one"]["Samples/s"], cells["two"]["Samples/s"], cells["two"]["Speedup"]) == (
        "33,037 (28,175–37,899, n=2)",
        "6,998",
        "0.21x",  # 6,998 / 33,037
    )
    speedup = summary["expectations"][0]
    assert speedup["message"].startswith("measured 0.25x")  # its one fit pair, repeat 3: a ratio of that pair
    text = render(summary, markdown=False)
    assert (
        "Speedup: this Samples/s divided by that of the baseline run 'one', as shown. The speedup expectations judge "
        "the median of the ratios of repeats launched side by side instead, which can differ a little." in text
    )


# --- an interrupted session ----------------------------------------------------------------------------


def test_an_interrupted_session_decides_what_its_finished_repeats_can_and_calls_its_runs_incomplete() -> None:
    summary = recomputed(INTERRUPTED)
    assert {name: run["status"] for name, run in summary["runs"].items()} == {
        "one": "ok",  # its 4 repeats finished before Ctrl-C
        "two": "incomplete",
        "short-one": "incomplete",
        "short-two": "incomplete",
        "accum-2": "incomplete",
    }
    assert summary["runs"]["two"]["reason"] == "3 of 4 repeat(s) finished before the session was interrupted"
    verdicts = [(e["title"], e["verdict"]) for e in summary["expectations"]]
    assert verdicts == [
        ("2 processes >= 1.5x faster than 1", "fail"),
        ("short 2 processes >= 1.5x faster than 1", "inconclusive"),
        ("one learns (accuracy >= 0.4; chance is 0.25)", "pass"),
        ("accumulation 2 x 16 reaches the loss of batch 32 (within 5%)", "pass"),
    ]
    # what the session itself wrote is what today's code computes from its repeats
    written = recorded(INTERRUPTED)
    for mine, theirs in zip(json.loads(json.dumps(summary["expectations"])), written["expectations"], strict=True):
        assert {k: v for k, v in mine.items() if k != "why"} == {k: v for k, v in theirs.items() if k != "why"}
    text = render(written, markdown=False)
    assert "one        ok" in text and "two        incomplete" in text
    assert "run 'accum-2' incomplete: 3 of 4 repeat(s) finished before the session was interrupted" in text
    assert "ERROR" not in text and "pending" not in text


def test_without_the_interruption_the_same_repeats_would_be_pending() -> None:
    """What the session's Ctrl-C changes: runs short of their planned repeats are not done, unless it ended."""
    validated = validate_file(str(INTERRUPTED / "spec.yaml")).spec
    assert validated is not None
    summary = with_declared_today(recorded(INTERRUPTED))
    records = {
        name: RunRecord.measured_by(
            run.config.measure,
            name=name,
            description="",
            repeats=4,
            declared=Declared.from_json(summary["runs"][name]["declared"]),
            selected=True,
            auto=False,
        )
        for name, run in validated.runs.items()
    }
    keep_finished(summary, records)
    assert records["two"].status == "pending"  # still to launch, in a session that goes on
    records["two"].cut_short = "interrupted"
    assert records["two"].status == "incomplete"


# --- the verdict chart ---------------------------------------------------------------------------------


def test_a_measured_but_unfit_ratio_is_drawn_as_too_short_with_its_figure() -> None:
    pytest.importorskip("matplotlib")
    summary = recorded(INTERRUPTED)
    rows = {row.title: row for row in verdict_rows(summary)}
    short = rows["short 2 processes >= 1.5x faster than 1"]
    assert (short.median, short.unfit) == (None, "too short to time")
    cells = table(summary)
    assert (cells["short-two"]["Samples/s"], cells["short-one"]["Samples/s"]) == ("6,484", "31,113 (unfit, n=3)")
    assert short.missing() == "too short to time (measured 0.208x)"  # the table's figures: 6,484 / 31,113
    (ax,) = figures(summary)[VERDICTS_PNG].axes
    assert "too short to time (measured 0.208x)" in [text.get_text() for text in ax.texts]
    # a summary written before verdicts kept the unfit kind still says what it can
    old = {**summary, "expectations": [{**e, "unfit_kind": None} for e in summary["expectations"]]}
    (row,) = [r for r in verdict_rows(old) if r.title == short.title]
    assert row.missing() == "unfit to time (measured 0.208x)"


# --- repeat counts -------------------------------------------------------------------------------------


def test_repeat_counts_are_per_run() -> None:
    disturbed = {e["title"]: e for e in recomputed(DISTURBED)["expectations"]}
    assert repeats_line(disturbed["2 processes >= 1.8x faster than 1 (train_simple)"]) == (
        "no pair fit to time: 'dual' 1 repeat (1 unfit left out); 'single' 1 repeat (1 unfit left out); "
        "stopped: measure.repeats fixed at 1"
    )  # it said "1 repeat(s) (2 unfit left out)": two runs' unfit repeats summed
    assert repeats_line(disturbed["train_simple learns (accuracy >= 0.5; chance is 0.1)"]) == (
        "1 repeat; stopped: measure.repeats fixed at 1"
    )
    interrupted = [repeats_line(e) for e in recorded(INTERRUPTED)["expectations"]]
    assert interrupted == [
        "1 pair used: 'two' 3 of 4 repeats (2 unfit left out); 'one' 4 repeats (2 unfit left out); stopped: "
        "interrupted",
        "no pair fit to time: 'short-two' 3 of 4 repeats (2 unfit left out); 'short-one' 3 of 4 repeats (3 unfit "
        "left out); stopped: interrupted",
        "4 repeats; stopped: interrupted",
        "'accum-2' 3 of 4 repeats; 'one' 4 repeats; stopped: interrupted",
    ]


# --- the README's excerpt ------------------------------------------------------------------------------


def test_the_readmes_report_excerpt_is_what_the_report_says_of_its_recorded_session() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Reading a report") :]
    fence = section.index("```\n") + 4
    excerpt = section[fence : section.index("```", fence)]
    summary = recorded(HOGGED)
    text = render(summary, markdown=False)
    assert excerpt == text[text.index("Runs\n----") : text.index("\nTime\n----")].rstrip() + "\n"
    cells = table(summary)
    assert all(unfit(row["Samples/s"]) for row in cells.values())  # a busy machine: nothing to quote
    why = explain(summary["expectations"][3], summary["runs"], summary["environment"])
    assert why is not None
    memory = section[section.index("> bf16 peak memory") :]
    for sentence in (why["sentences"][1], why["sentences"][2], why["sentences"][4]):  # parts, data, floor
        assert f"  - {sentence}\n" in memory


def test_the_why_excerpt_of_docs_verdicts_is_what_the_why_says_of_the_same_session() -> None:
    page = (ROOT / "docs" / "verdicts.md").read_text(encoding="utf-8")
    summary = recorded(BUSY)
    expectation = summary["expectations"][0]
    why = explain(expectation, summary["runs"], summary["environment"])
    assert why is not None
    block = "\n".join(f"  - {sentence}" for sentence in why["sentences"])
    assert f"> {expectation['title']} (inconclusive)\n{block}\n```" in page


def test_a_phase_below_zero_by_the_start_times_resolution_is_shown_as_zero() -> None:
    # a forked launch starts within the 10 ms its start time is known to: this recorded session holds -0.001 s
    summary = json.loads((HOGGED / "summary.json").read_text())
    negative = [n for n, run in summary["runs"].items() if (run.get("phases") or {}).get("launcher_s", 0) < 0]
    assert negative, "the recorded session holds a launcher phase below zero"
    time_table = render(summary, markdown=False).split("\nTime\n----", 1)[1]
    assert "-0.00" not in time_table
    rows = {line.split()[0]: line.split() for line in time_table.splitlines() if line.split()[:1] == [negative[0]]}
    assert rows[negative[0]][3] == "0.00"  # run, started by, launches, launcher


THREADS = CASES / "summaries" / "threads-busy"  # one process of 1 thread and of 2, one core taken by a hog


def _notes(summary: dict[str, Any]) -> list[str]:
    """The notes under the runs table."""
    text = render(summary, markdown=False)
    return [line for line in text.split("\nRuns\n----", 1)[1].split("\n\n")[1].splitlines() if line.startswith("* ")]


def test_a_run_whose_threads_outnumbered_the_free_cores_is_named_under_the_runs_table() -> None:
    summary = json.loads((THREADS / "summary.json").read_text())
    crowded = [note for note in _notes(summary) if "threads on" in note]
    assert len(crowded) == 1 and crowded[0].startswith("* 'two-threads' ran 1 process(es) x 2 threads on 2 cores")
    assert "leaving about 1.0 free" in crowded[0] and "launch.cpu_threads_per_process: 1" in crowded[0]


def test_on_an_idle_machine_the_same_runs_get_no_such_note() -> None:
    summary = json.loads((THREADS / "summary.json").read_text())
    for run in summary["runs"].values():
        for launch in run["repeats"]:
            launch["disturbance"]["others_share"] = 0.01
    assert not [note for note in _notes(summary) if "threads on" in note]


def test_processes_of_one_thread_each_get_no_such_note_on_a_busy_machine() -> None:
    # the README's busy session: dual and large-dual, 2 processes x 1 thread, with one of 2 cores taken
    summary = json.loads((HOGGED / "summary.json").read_text())
    assert {run["declared"]["local_processes"] for run in summary["runs"].values()} == {1, 2}
    assert not [note for note in _notes(summary) if "threads on" in note]


def test_the_note_suggests_one_thread_per_process_only_where_the_processes_fit_the_free_cores() -> None:
    from runner.report.text import crowded_note

    assert "cpu_threads_per_process: 1" in crowded_note("a", 1, 2, 2, 0.5)
    assert "cpu_threads_per_process: 1" not in crowded_note("a", 4, 2, 4, 0.75)  # 4 processes, 1 core free
