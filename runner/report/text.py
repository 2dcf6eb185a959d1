"""Stage 7, report: the seed's tables, the expectations and their Why, rendered from summary.json.

One renderer serves the terminal (aligned text) and report.md (Markdown), live and for
`accel-run --report`, so the two can never disagree.
"""

from __future__ import annotations

import statistics
from typing import Any

from runner.engines.kinds import job_word
from runner.results.entries import shown, shown_ratio, unfit_repeats
from runner.results.summary import engine_kinds
from runner.verdicts.check import verdict_line
from runner.vocab import precision_name

STATUS_MARK = {
    "ok": "ok",
    "failed": "FAILED",
    "timeout": "TIMEOUT",
    "interrupted": "INTERRUPTED",
    "skipped": "skipped",
    "pending": "pending",
    "incomplete": "incomplete",
}
UNFIT_MARK = "unfit"  # beside a timing that rests on repeats unfit to time only


def _num(value: Any, digits: int = 3) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 100:
        return f"{int(value):,}"
    return f"{value:.{digits}g}"


def number(value: float, digits: int = 3) -> str:
    """3 significant digits, thousands separated above 1000: 0.162, 8.25, 28,277."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:#.{digits}g}".rstrip(".")


def _with_spread(run: dict[str, Any], key: str, unit: str, digits: int = 3) -> str:
    value, unfit = shown(run, key)
    if value is None:
        return "-"
    if unfit:  # no range: the spread of unfit repeats measures the disturbance, not the run
        count = unfit_repeats(run)
        return f"{number(value, digits)}{unit} ({UNFIT_MARK}" + (f", n={count})" if count > 1 else ")")
    spread = run.get("spread", {}).get(key)
    if spread and spread.get("n", 1) > 1:
        low, high = number(spread["min"], digits), number(spread["max"], digits)
        return f"{number(value, digits)}{unit} ({low}–{high}, n={spread['n']})"
    return f"{number(value, digits)}{unit}"


def run_rows(summary: dict[str, Any]) -> list[list[str]]:
    """One row per run: the seed's comparison table, generated."""
    runs = summary["runs"]
    baseline = summary["spec"].get("baseline")
    base = runs.get(baseline, {}) if baseline else {}
    rows = []
    for name, run in runs.items():
        metrics = run.get("metrics", {})
        declared = run.get("declared", {})
        speedup = _speedup(name, run, baseline, base)
        accuracy = metrics.get("accuracy")
        rows.append(
            [
                name,
                STATUS_MARK.get(run.get("status", ""), run.get("status", "")),
                str(metrics.get("processes", declared.get("processes", "-"))),
                precision_name(metrics.get("mixed_precision", declared.get("mixed_precision", "-"))),
                _num(metrics.get("global_batch_size")),
                _num(metrics.get("optimizer_steps")),
                _with_spread(run, "train_time_s", " s"),
                speedup,
                _with_spread(run, "samples_per_s", "", 4),
                _num(metrics.get("final_loss"), 4),
                f"{accuracy:.1%}" if isinstance(accuracy, int | float) else "-",
                _with_spread(run, "peak_memory_mb", " MB", 4),
                _disturbance(run),
            ]
        )
    return rows


def _speedup(name: str, run: dict[str, Any], baseline: str | None, base: dict[str, Any]) -> str:
    """The run's Samples/s over the baseline's, both as the table shows them; marked when either is unfit."""
    if shown(run, "samples_per_s")[0] is None:
        return "-"
    if name == baseline:
        return "1.00x (baseline)"
    if run.get("metrics", {}).get("params") != base.get("metrics", {}).get("params"):
        return "other model"  # samples/s of different models are not a speedup
    ratio, unfit = shown_ratio(run, base, "samples_per_s")
    if ratio is None:
        return "-"
    return f"{ratio:.2f}x" + (f" ({UNFIT_MARK})" if unfit else "")


def _disturbance(run: dict[str, Any]) -> str:
    """The most CPU other processes took while a repeat was timed, and how many repeats were unfit."""
    figures = run.get("disturbance") or {}
    share = figures.get("max_others_share")
    if not isinstance(share, int | float):
        return "-"
    unfit = len(figures.get("unfit_repeats") or {})
    launches = sum(1 for r in run.get("repeats", []) if r.get("status") == "ok")
    return f"{share:.0%}" + (f" ({unfit}/{launches} unfit)" if unfit else "")


RUN_HEADER = [
    "Run",
    "Status",
    "Procs",
    "Precision",
    "Global batch",
    "Opt steps",
    "Train time",
    "Speedup",
    "Samples/s",
    "Final loss",
    "Accuracy",
    "Peak memory",
    "Others' CPU",
]


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        return lines
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def fmt(row: list[str]) -> str:  # names left-aligned, figures right-aligned
        return "  ".join(
            cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()

    return [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def _repeats(count: int) -> str:
    return f"{count} repeat" if count == 1 else f"{count} repeats"


def _run_repeats(entry: dict[str, Any]) -> str:
    """'3 of 4 repeats (1 unfit left out)' for one run under a verdict."""
    finished, planned, unfit = entry.get("finished", 0), entry.get("planned", 0), entry.get("unfit", 0)
    count = f"{finished} of {_repeats(planned)}" if finished < planned else _repeats(finished)
    return count + (f" ({unfit} unfit left out)" if unfit else "")


def repeats_line(verdict: dict[str, Any]) -> str:
    """How many repeats of each run a verdict rests on, and why no more were launched.

    '3 repeats (1 unfit left out); stopped: decided' for one run; for two, each run's own counts and
    the pairs used: "2 pairs used: 'dual' 3 repeats (1 unfit left out); 'single' 3 repeats; stopped: ...".
    """
    used = verdict.get("repeats_used")
    per_run = verdict.get("repeats_by_run") or []
    if len(per_run) == 1:
        return f"{_run_repeats(per_run[0])}; stopped: {verdict['stopped']}"
    if per_run:
        runs = "; ".join(f"'{entry['run']}' {_run_repeats(entry)}" for entry in per_run)
        interval = verdict.get("interval")
        pairs = ""
        if isinstance(interval, dict) and isinstance(used, int):
            pairs = f"{used} pair{'' if used == 1 else 's'} used: "
        elif verdict.get("cause") == "unfit":
            pairs = "no pair fit to time: "
        return f"{pairs}{runs}; stopped: {verdict['stopped']}"
    # a summary written before per-run counts: its total, as it was
    unfit = verdict.get("repeats_unfit") or 0
    count = f"{used} repeat(s)" if used is not None else "no repeat"
    left_out = f" ({unfit} unfit left out)" if unfit else ""
    return f"{count}{left_out}; stopped: {verdict['stopped']}"


def environment_line(summary: dict[str, Any]) -> str:
    """Where it ran, in one line; what no file recorded says "unknown" (a rebuilt summary of old run folders)."""
    env = summary.get("environment", {})
    versions = env.get("versions") or {}
    if not (env.get("hostname") or env.get("cpu_count") or versions):
        rebuilt = " (the run folders this summary was rebuilt from do not record it)" if env.get("rebuilt_from") else ""
        return "unknown" + rebuilt
    gpus = env.get("cuda_devices")
    if gpus is None:
        device = "GPUs unknown"
    else:
        device = f"{len(gpus)} GPU(s): {', '.join(sorted(set(gpus)))}" if gpus else "no GPU"
    cores = f"{env['cpu_count']} CPU cores" if env.get("cpu_count") else "CPU cores unknown"
    tools = ", ".join(f"{name} {versions.get(key) or 'unknown'}" for name, key in _TOOLS)
    return f"{env.get('hostname') or 'unknown host'}: {cores}, {device}; {tools}"


_TOOLS = (("torch", "torch"), ("accelerate", "accelerate"), ("Python", "python"))


def cluster_lines(summary: dict[str, Any]) -> list[str]:
    """Where an engine that submits jobs ran each run: its jobs and the nodes its ranks saw (the Machine line
    is the submitting host)."""
    word = job_word(engine_kinds(summary))
    lines = []
    for name, run in summary.get("runs", {}).items():
        launches = [launch for launch in run.get("repeats", []) if launch.get("job_id")]
        if not launches:
            continue
        jobs = ", ".join(str(launch["job_id"]) for launch in launches)
        nodes = sorted({node for launch in launches for node in launch.get("observed", {}).get("nodes", [])})
        on = f" on {', '.join(nodes)}" if nodes else ""
        lines.append(f"{name}: {word}(s) {jobs}{on}.")
    if lines:
        lines.insert(0, f"The Machine line is the host that submitted the {word}s; the runs ran on these nodes:")
    return lines


def honesty_notes(summary: dict[str, Any]) -> list[str]:
    """What a reader must know to read the numbers right."""
    notes = []
    env = summary.get("environment", {})
    runs = summary.get("runs", {})
    cpu_multi = [
        n
        for n, r in runs.items()
        if r.get("status") == "ok"
        and r.get("declared", {}).get("device") == "cpu"
        and _local_processes(r.get("declared") or {}) > 1
    ]
    if cpu_multi:
        notes.append(
            f"These runs used the CPU: {', '.join(cpu_multi)} ran several processes on the same "
            f"{env.get('cpu_count', '?')} cores, so their speedups say nothing about GPUs."
        )
    notes += [crowded_note(name, *found) for name, found in crowded_runs(runs).items()]
    if any(r.get("metrics", {}).get("peak_memory_source") == "peak_rss" for r in runs.values()):
        notes.append(
            "Peak memory on CPU is the largest process's peak RSS, which includes the Python and torch "
            "runtime (a few hundred MB), not just tensors."
        )
    return notes


# How many cores beyond those others left free a launch's threads may want before they wait on each other:
# a core others take a quarter of still runs a thread most of the time.
CROWDING_MARGIN = 0.5


def crowded_runs(runs: dict[str, Any]) -> dict[str, tuple[int, int, int, float]]:
    """Runs on the CPU with several threads per process, whose threads outnumbered the cores other processes left
    free while a launch was timed: name -> (processes here, threads per process, cores, the largest share others
    took). Processes of one thread each are not listed: measured on a busy machine, they lost no more than the
    cores the others took, where a process of two threads trained 3-90x slower (docs/timing.md)."""
    found = {}
    for name, run in runs.items():
        declared = run.get("declared") or {}
        local = _local_processes(declared)
        threads = int(declared.get("threads_per_process") or 1)
        if declared.get("device") != "cpu" or threads < 2:
            continue
        seen = [
            (int(d["cpus"]), float(d["others_share"]))
            for launch in run.get("repeats", [])
            if launch.get("status") == "ok"
            for d in [launch.get("disturbance") or {}]
            if isinstance(d.get("others_share"), int | float) and isinstance(d.get("cpus"), int) and d["cpus"] > 0
        ]
        if not seen:
            continue
        cores, share = max(seen, key=lambda pair: pair[0] * pair[1])
        if local * threads > cores * (1 - share) + CROWDING_MARGIN:
            found[name] = (local, threads, cores, share)
    return found


def _local_processes(declared: dict[str, Any]) -> int:
    """The processes a run put on each machine (an older summary names only the total)."""
    return int(declared.get("local_processes", declared.get("processes", 1)) or 1)


def crowded_note(name: str, local: int, threads: int, cores: int, share: float) -> str:
    """Why a run's timings on a busy machine say more about the load than about the run, and what to change."""
    free = cores * (1 - share)
    note = (
        f"'{name}' ran {local} process(es) x {threads} threads on {cores} cores while other processes took up to "
        f"{share:.0%} of them, leaving about {free:.1f} free: a process's threads wait for each other at every "
        "parallel op, so each delay the others cause to one thread stalls them all, and its timings measure the "
        "load more than the run"
    )
    if local <= free + CROWDING_MARGIN:
        note += " (one thread per process is often many times less affected: launch.cpu_threads_per_process: 1)"
    return note + "; see docs/timing.md, Threads on a busy machine."


def _setting_values(run: dict[str, Any]) -> dict[str, str]:
    """How a run computes, as the settings table shows it: compile backend, optimizer kernels, TF32."""
    declared, observed = run.get("declared") or {}, run.get("observed") or {}
    tf32 = declared.get("tf32")
    return {
        "Compile": str(declared.get("compile_backend") or "no"),
        "Optimizer": str(observed.get("optimizer_implementation") or declared.get("optimizer_implementation") or "-"),
        "TF32": "-" if tf32 is None else ("on" if tf32 else "off"),
    }


def settings_table(summary: dict[str, Any], markdown: bool) -> list[str]:
    """The compute settings that differ between the runs that ran (none: no table)."""
    runs = {n: _setting_values(r) for n, r in summary.get("runs", {}).items() if r.get("status") != "skipped"}
    if len(runs) < 2:
        return []
    columns = [c for c in next(iter(runs.values())) if len({values[c] for values in runs.values()}) > 1]
    if not columns:
        return []
    rows = [[name, *(values[c] for c in columns)] for name, values in runs.items()]
    note = (
        "Settings that differ between runs. Compile: launch.compile's backend (no: eager). Optimizer: the "
        "implementation the optimizer really ran. TF32: launch.tf32 (-: PyTorch's and Accelerate's own choice)."
    )
    return [*_table(["Run", *columns], rows, markdown), "", note]


def table_note(summary: dict[str, Any]) -> str:
    """What the runs table's timing columns are, said under it; the unfit mark explained where it appears."""
    baseline = summary.get("spec", {}).get("baseline")
    note = (
        "Samples/s: the median over the repeats fit to time of each launch's speed (its timed blocks of steps, "
        "warm-up excluded); a range and n where several. "
        f"Speedup: this Samples/s divided by that of the baseline run '{baseline}', as shown. The speedup expectations "
        "judge the median of the ratios of repeats launched side by side instead, which can differ a little. "
        "Train time: the whole training loop. Others' CPU: the largest share of the CPU cores other processes took "
        "while a repeat was timed; an unfit repeat (disturbed, too short, too uneven) is left out of every timing "
        "and repeated."
    )
    runs = summary.get("runs", {}).values()
    if any(shown(run, key)[1] for run in runs for key in ("samples_per_s", "train_time_s")):
        note += (
            f" ({UNFIT_MARK}): no repeat of that run was fit to time, so the figure is only what its unfit repeats "
            "measured: it decides no expectation and is not a measurement to quote."
        )
    if any(run.get("status") == "incomplete" for run in runs):
        note += (
            " incomplete: the session was interrupted before the run's planned repeats finished; its figures and "
            "the expectations rest on the repeats that did."
        )
    return note


# The phases of a launch, in order, as metrics.json and summary.json name them, with their column titles.
PHASES = (
    ("launcher_s", "Launcher"),
    ("imports_s", "Imports"),
    ("device_init_s", "Device init"),
    ("setup_s", "Setup"),
    ("first_step_s", "First step"),
    ("warmup_s", "Warm-up"),
    ("timed_s", "Timed"),
    ("eval_s", "Eval"),
    ("extra_timing_s", "Timing-only"),
    ("probes_s", "Probes"),
    ("teardown_s", "Teardown"),
)


def session_time(summary: dict[str, Any]) -> tuple[float, float, int] | None:
    """(wall seconds of the session, timed seconds of all its launches, launches), where the session said."""
    wall = summary.get("environment", {}).get("session_wall_s")
    if not isinstance(wall, int | float) or wall <= 0:
        return None
    timed, launches = 0.0, 0
    for run in summary.get("runs", {}).values():
        for launch in run.get("repeats", []):
            if launch.get("status") == "ok":
                launches += 1
                value = launch.get("metrics", {}).get("timed_time_s")
                timed += float(value) if isinstance(value, int | float) else 0.0
    return float(wall), timed, launches


def phase_rows(summary: dict[str, Any]) -> list[list[str]]:
    """One row per run that ran: the median seconds of each phase of its launches, and its launches' wall."""
    rows = []
    for name, run in summary.get("runs", {}).items():
        phases = run.get("phases") or {}
        launches = [r for r in run.get("repeats", []) if r.get("status") == "ok"]
        if not phases or not launches:
            continue
        walls = [float(r["wall_s"]) for r in launches if isinstance(r.get("wall_s"), int | float)]
        how = ", ".join(sorted({str(r.get("launcher") or "accelerate") for r in launches}))
        row = [name, how, str(len(launches))]
        # max: a result written before the worker held its launcher phase at 0 may hold -0.001 (10 ms resolution)
        values = [phases.get(key) for key, _ in PHASES]
        row += [f"{max(0.0, value):.2f}" if isinstance(value, int | float) else "-" for value in values]
        row.append(f"{statistics.median(walls):.2f}" if walls else "-")
        rows.append(row)
    return rows


def time_lines(summary: dict[str, Any], markdown: bool) -> list[str]:
    """Where the session's time went: its timed share, each run's launch by phase, the timing-only steps."""
    lines: list[str] = []
    totals = session_time(summary)
    if totals is not None:
        wall, timed, launches = totals
        lines.append(
            f"{launches} launch(es) in {wall:.1f} s of wall; their timed parts took {timed:.1f} s "
            f"({timed / wall:.0%} of the session)."
        )
    rows = phase_rows(summary)
    if rows:
        header = ["Run", "Started by", "Launches", *(title for _, title in PHASES), "Wall"]
        lines += ["", *_table(header, rows, markdown), ""]
        lines.append(
            "Seconds per launch (median over a run's launches). Started by: fork, accel-run's warm launcher "
            "(launch.launcher), or accelerate, the `accelerate launch` command. Launcher: from the launch to its "
            "process; Imports: torch and accelerate (about 0 when forked from the warm launcher); Device init: the "
            "Accelerator and the device; Setup: data, model, optimizer; First step: the first optimizer step "
            "(compiling falls here); Warm-up: the other warm-up steps and blocks not yet steady; Timed: the blocks "
            "that give the speed; Timing-only: steps added after training to time it better; Probes: attribution "
            "and memory; Teardown: after the results were written."
        )
    extra = []
    for name, run in summary.get("runs", {}).items():
        steps = run.get("metrics", {}).get("extra_steps")
        if isinstance(steps, int | float) and steps > 0:
            extra.append(f"{name}: {int(steps):,} step(s)")
    if extra:
        lines.append(
            "Timing-only steps after training (same data order and settings; never counted in the loss, the loss "
            f"curve or the accuracy): {', '.join(extra)} (median per launch)."
        )
    return lines


# The report's sections in reading order; one renderer for text and Markdown keeps them identical.
def render(summary: dict[str, Any], *, markdown: bool, plots: list[str] | None = None) -> str:
    """The report, as Markdown or terminal text."""
    lines = [*_heading(f"accel-run report: {summary['spec'].get('name', '?')}", markdown, level=1)]
    lines += [*header_lines(summary, markdown), ""]
    lines += _heading("Runs", markdown)
    lines += [*_table(RUN_HEADER, run_rows(summary), markdown), "", table_note(summary)]
    lines += [("- " if markdown else "* ") + note for note in honesty_notes(summary)]
    lines.append("")
    settings = settings_table(summary, markdown)
    if settings:
        lines += [*settings, ""]
    expectations = summary.get("expectations", [])
    if expectations:
        lines += _heading("Expectations", markdown)
        for verdict in expectations:
            text = verdict_line(verdict["verdict"], verdict["title"], verdict["message"])
            lines.append(f"- `{text}`" if markdown else text)
            if verdict.get("stopped"):
                lines.append(("  - " if markdown else "      ") + repeats_line(verdict))
        lines.append("")
    timing = time_lines(summary, markdown)
    if timing:
        lines += [*_heading("Time", markdown), *timing, ""]
    whys = [v for v in expectations if v.get("why")]
    if whys:
        lines += _heading("Why", markdown)
        for verdict in whys:
            lines.append(("### " if markdown else "> ") + f"{verdict['title']} ({verdict['verdict']})")
            if markdown:
                lines.append("")
            lines += [("- " if markdown else "  - ") + sentence for sentence in verdict["why"].get("sentences", [])]
            lines.append("")
    lines += problem_lines(summary, markdown)
    if plots:
        lines += [*_heading("Plots", markdown), *(f"![{p}]({p})" if markdown else p for p in plots), ""]
    return "\n".join(lines).rstrip() + "\n"


def _heading(text: str, markdown: bool, level: int = 2) -> list[str]:
    """A heading and what follows it: '## text' and a blank line, or the text underlined."""
    if markdown:
        return [("#" * level) + " " + text, ""]
    return [text, ("=" if level == 1 else "-") * len(text)]


def header_lines(summary: dict[str, Any], markdown: bool) -> list[str]:
    """What ran, where and how it ended: the lines between the title and the runs table."""
    spec = summary["spec"]
    lines = [spec["description"], ""] if spec.get("description") else []
    status = summary.get("status", "?")
    lines.append(f"Status: {status}. Spec: {spec.get('path', '?')} (sha256 {spec.get('sha256', '?')[:12]}).")
    engine = summary.get("options", {}).get("engine")
    if engine:
        lines.append(f"Every run on the {engine} engine (--engine {engine}, applied as the --set options below).")
    sets = summary.get("options", {}).get("sets") or []
    if sets:  # the spec as run is the file plus these: say so next to the file's checksum
        shown = " ".join(f"`--set {o}`" if markdown else f"--set {o}" for o in sets)
        lines.append(f"Overridden on the command line: {shown}.")
    lines.append("Machine: " + environment_line(summary) + ".")
    lines += cluster_lines(summary)
    if summary.get("fault"):
        lines.append(f"Stopped early: {summary['fault']}.")
    if status == "abandoned":
        lines.append(
            "The session that wrote this result ended without finishing (killed, or stopped by a machine fault); "
            "--resume reruns the rest."
        )
    return lines


def problem_lines(summary: dict[str, Any], markdown: bool) -> list[str]:
    """The Problems section: each run that failed, timed out or was cut short, with its stderr's last lines."""
    problems = [
        (n, r)
        for n, r in summary["runs"].items()
        if r.get("status") in ("failed", "timeout", "interrupted", "incomplete")
    ]
    if not problems:
        return []
    lines = _heading("Problems", markdown)
    for name, run in problems:
        lines.append(f"{'- ' if markdown else ''}run '{name}' {run['status']}: {run.get('reason', '')}")
        tail = next((r.get("log_tail") for r in run.get("repeats", []) if r.get("log_tail")), "")
        if tail:
            lines.append("```" if markdown else "  last lines of its stderr.log:")
            lines += [("" if markdown else "  | ") + line for line in tail.splitlines()[-12:]]
            lines.append("```" if markdown else "")
    return [*lines, ""]
