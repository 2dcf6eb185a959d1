"""Optional plots (pip install 'accel-run[plots]'): the verdicts, their Why, training and throughput.

Four pictures, each answering one question of "did my expectations hold, and why not":
  verdicts.png     each ratio expectation: measured ratio, its interval, the declared bound, the verdict
  why.png          each explained expectation: the per-step split of the run beside its baseline
  loss_curves.png  loss against samples seen, one panel per model (runs with equal parameter counts)
  throughput.png   samples/s (warm-up excluded, as the verdicts use it), one panel per model

What is drawn is computed first as plain rows (verdict_rows, why_panels, model_groups,
loss_series), so tests check the data without eyes and the drawing code only draws. Figures
are built without pyplot (no global state, faster) and written with the Agg backend.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.jsonio import write_bytes_atomic
from runner.metrics import unit_of
from runner.results.entries import shown, shown_ratio, unfit_repeats
from runner.verdicts.why import step_parts, step_seconds  # the Why's own split, so picture and sentences agree
from runner.vocab import precision_name

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PLOTS_HINT = (
    "plots need matplotlib: pip install 'accel-run[plots]' (or pip install matplotlib), then accel-run --report"
)
VERDICTS_PNG, WHY_PNG, LOSS_PNG, THROUGHPUT_PNG = "verdicts.png", "why.png", "loss_curves.png", "throughput.png"
DPI = 100
# The Why picture shows the first explained expectations; a person reads six panels, not twenty,
# and each costs a tenth of a second to draw. The rest stay in the report's Why section.
MAX_WHY_PANELS = 6
# Colour-blind-safe pairs (Okabe-Ito); every verdict also has its own marker and is written out in text.
VERDICT_STYLE = {
    "pass": ("#009E73", "o"),
    "fail": ("#D55E00", "X"),
    "inconclusive": ("#E69F00", "D"),
}
OTHER_VERDICT = ("#777777", "s")
# Darker shades of the same hues for text, readable on white.
VERDICT_TEXT = {"pass": "#006B4F", "fail": "#A84400", "inconclusive": "#8A5A00"}
# Curves closer than this share of their panel's loss range would hide each other: labelled as twins.
COINCIDE = 0.01
PART_COLORS = {
    "compute": "#0072B2",
    "communication": "#D55E00",
    "data": "#F0E442",
    "optimizer": "#009E73",
    "other": "#BBBBBB",
}
RUN_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999933"]
LINE_STYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


@dataclass(frozen=True)
class VerdictRow:
    """One ratio expectation as the verdict chart draws it."""

    title: str
    verdict: str
    median: float | None
    low: float | None
    high: float | None
    n: int | None
    at_least: float | None
    at_most: float | None
    message: str
    unfit: str = ""  # no measurement to draw: why, in words ("too short to time"), from the verdict's unfit kind
    indication: float | None = None  # then: the ratio the runs table shows all the same (marked unfit there)

    def missing(self) -> str:
        """What the chart writes where a verdict has no measured ratio: the cause and, if any, the unfit ratio."""
        if self.unfit:
            measured = f" (measured {self.indication:.3g}x)" if self.indication is not None else ""
            return f"{self.unfit}{measured}"
        reason = self.message.split(": ", 1)[0] if self.message else "not measured"
        return f"not measured ({reason})"


# A verdict's unfit kind (records.TimingProblem) in the chart's words.
UNFIT_WORDS = {
    "short": "too short to time",
    "spread": "too uneven to time",
    "drift": "its speed drifted while timed",
    "disturbed": "disturbed while timed",
    "step_vs_probe": "disturbed while timed",
    "": "unfit to time",
}


@dataclass(frozen=True)
class ThroughputBar:
    """One run's samples/s as the throughput picture draws it: unfit ones hatched and marked, never plain."""

    run: str
    value: float
    low: float | None  # the fit repeats' range, where n > 1
    high: float | None
    n: int  # repeats behind the value (fit ones; unfit ones when the value is unfit)
    unfit: bool


@dataclass(frozen=True)
class Bar:
    """One run's step, split by phase (milliseconds per optimizer step)."""

    run: str
    label: str
    step_ms: float
    parts_ms: dict[str, float]
    batch: int  # the global batch: one optimizer step's samples


@dataclass(frozen=True)
class WhyPanel:
    """An explained expectation: its run and its baseline side by side."""

    title: str
    verdict: str
    bars: tuple[Bar, Bar]


@dataclass(frozen=True)
class LossSeries:
    """One run's loss curve against samples seen; `twin` names an earlier run it coincides with."""

    run: str
    samples: list[float]
    loss: list[float]
    twin: str | None = None
    difference: float = 0.0  # the largest difference of the losses from the twin's, in percent (0: identical)

    @property
    def label(self) -> str:
        """The legend entry: the run, and the run it hides behind."""
        if self.twin is None:
            return self.run
        if self.difference == 0:
            return f"{self.run} (identical to {self.twin})"
        return f"{self.run} (within {self.difference:.2g}% of {self.twin})"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _ok_runs(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in summary.get("runs", {}).items() if r.get("metrics")}


def verdict_rows(summary: dict[str, Any]) -> list[VerdictRow]:
    """Every ratio-like expectation (speedup, ratio): what the verdict chart draws, one row each."""
    rows = []
    runs = summary.get("runs", {})
    for e in summary.get("expectations", []):
        if e.get("kind") not in ("speedup", "ratio"):
            continue
        interval = e.get("interval") or {}
        unfit, indication = "", None
        if e.get("cause") == "unfit" and _number(e.get("measured")) is None:
            unfit = UNFIT_WORDS.get(str(e.get("unfit_kind") or ""), UNFIT_WORDS[""])
            names = e.get("runs") or []
            if len(names) == 2 and names[0] in runs and names[1] in runs:
                indication = shown_ratio(runs[names[0]], runs[names[1]], e.get("metric") or "samples_per_s")[0]
        rows.append(
            VerdictRow(
                title=str(e.get("title", "?")),
                verdict=str(e.get("verdict", "?")),
                median=_number(e.get("measured")),
                low=_number(interval.get("low")),
                high=_number(interval.get("high")),
                n=int(interval["n"]) if isinstance(interval.get("n"), int) else None,
                at_least=_number(e.get("at_least")),
                at_most=_number(e.get("at_most")),
                message=str(e.get("message", "")),
                unfit=unfit,
                indication=indication,
            )
        )
    return rows


def throughput_bars(summary: dict[str, Any], names: Iterable[str]) -> list[ThroughputBar]:
    """samples/s of each named run with one: the median of its fit repeats, or marked unfit when none was fit."""
    bars = []
    for name in names:
        run = summary["runs"][name]
        value, unfit = shown(run, "samples_per_s")
        if value is None:
            continue
        spread = {} if unfit else run.get("spread", {}).get("samples_per_s") or {}
        n = unfit_repeats(run) if unfit else int(spread.get("n", 1) or 1)
        low, high = _number(spread.get("min")), _number(spread.get("max"))
        ranged = n > 1 and low is not None and high is not None
        bars.append(ThroughputBar(name, value, low if ranged else None, high if ranged else None, n, unfit))
    return bars


def _run_label(name: str, run: dict[str, Any]) -> str:
    m = run["metrics"]
    precision = precision_name(m.get("mixed_precision", "?"))
    return f"{name}\n{m.get('processes', '?')} proc, {precision}, batch {m.get('global_batch_size', '?')}"


def why_panels(summary: dict[str, Any]) -> list[WhyPanel]:
    """Every expectation with a Why whose run and baseline both have a measured step split."""
    runs = _ok_runs(summary)
    panels = []
    for e in summary.get("expectations", []):
        names = e.get("runs") or []
        if not e.get("why") or len(names) != 2 or e.get("metric") not in (None, "samples_per_s", "step_time_ms"):
            continue
        bars = []
        for name in names:
            run = runs.get(name)
            step = step_seconds(run) if run else None
            if run is None or step is None or not run.get("attribution"):
                break
            parts = {k: v * 1000 for k, v in step_parts(run, step).items()}
            batch = int(run["metrics"].get("global_batch_size") or 0)
            bars.append(Bar(name, _run_label(name, run), step * 1000, parts, batch))
        if len(bars) == 2:
            panels.append(WhyPanel(str(e.get("title", "?")), str(e.get("verdict", "?")), (bars[0], bars[1])))
    return panels


def _params_label(params: Any) -> str:
    value = _number(params)
    if value is None:
        return "parameters unknown"
    for factor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g}{suffix} parameters"
    return f"{int(value)} parameters"


def model_groups(summary: dict[str, Any]) -> dict[str, list[str]]:
    """Runs with metrics grouped by model (its parameter count), in the spec's order; label -> run names."""
    groups: dict[str, list[str]] = {}
    for name, run in _ok_runs(summary).items():
        groups.setdefault(_params_label(run["metrics"].get("params")), []).append(name)
    return groups


def loss_series(summary: dict[str, Any], names: Iterable[str]) -> list[LossSeries]:
    """Loss against samples seen (optimizer step x global batch), each run's twin named when curves coincide."""
    runs = summary.get("runs", {})
    series: list[LossSeries] = []
    for name in names:
        run = runs[name]
        batch = _number(run.get("metrics", {}).get("global_batch_size")) or 1.0
        points = [p for p in run.get("loss_curve") or [] if _number(p[1]) is not None and math.isfinite(p[1])]
        if not points:
            continue
        samples = [float(p[0]) * batch for p in points]
        loss = [float(p[1]) for p in points]
        series.append(LossSeries(name, samples, loss))
    losses = [v for s in series for v in s.loss]
    span = max(losses) - min(losses) if losses else 0.0
    for i, new in enumerate(series):
        series[i] = _with_twin(new, series[:i], span)
    return series


def _with_twin(new: LossSeries, earlier: list[LossSeries], span: float) -> LossSeries:
    """`new`, naming the first earlier curve it would hide behind (same x, losses within COINCIDE of the span)."""
    for old in earlier:
        if old.samples != new.samples:
            continue
        gaps = [abs(a - b) for a, b in zip(new.loss, old.loss, strict=True)]
        if max(gaps) <= COINCIDE * span:
            worst = 100 * max(g / max(abs(b), 1e-12) for g, b in zip(gaps, old.loss, strict=True))
            return LossSeries(new.run, new.samples, new.loss, old.run, worst)
    return new


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False)) or text


def _ratio_axis(ax: Axes) -> None:
    """Log-scale ticks written as ratios: 0.5x, 1x, 2x, 10x."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}x"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _thousands(ax: Axes) -> None:
    """Axis numbers with thousands separators: 12,500."""
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))


def _grid(count: int, columns: int = 3) -> tuple[int, int]:
    cols = max(1, min(columns, count))
    return math.ceil(count / cols), cols


def _margins(
    fig: Figure,
    grid: tuple[int, int],
    *,
    left: float,
    right: float,
    top: float,
    bottom: float,
    gap: float,
    row_gap: float,
) -> None:
    """Place the axes with margins in inches: fixed room for labels, no layout engine (it doubles the render time)."""
    width, height = fig.get_size_inches()
    rows, cols = grid
    axes_w = (width - left - right - (cols - 1) * gap) / cols
    axes_h = (height - top - bottom - (rows - 1) * row_gap) / rows
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        top=1 - top / height,
        bottom=bottom / height,
        wspace=gap / axes_w,
        hspace=row_gap / axes_h,
    )


def _panels(fig: Figure, count: int) -> list[Axes]:
    rows, cols = _grid(count)
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[count:]:
        ax.set_visible(False)
    return axes[:count]


def _bound_text(row: VerdictRow) -> str:
    parts = ([f">= {row.at_least:g}x"] if row.at_least is not None else []) + (
        [f"<= {row.at_most:g}x"] if row.at_most is not None else []
    )
    return ", ".join(parts)


def draw_verdicts(summary: dict[str, Any], rows: list[VerdictRow]) -> Figure:
    """Measured ratio (dot), its interval (bar) and the declared bound (black line; green: where it holds)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    values = [v for r in rows for v in (r.median, r.low, r.high, r.at_least, r.at_most) if v and v > 0]
    lo, hi = (min(values) / 1.8, max(values) * 1.8) if values else (0.1, 10.0)
    fig = Figure(figsize=(10, 1.5 + 0.75 * len(rows)))
    ax = fig.subplots()
    _margins(fig, (1, 1), left=2.5, right=1.25, top=0.45, bottom=0.95, gap=0, row_gap=0)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    side = blended_transform_factory(ax.transAxes, ax.transData)
    for i, row in enumerate(rows):
        color, marker = VERDICT_STYLE.get(row.verdict, OTHER_VERDICT)
        low_ok = row.at_least if row.at_least is not None else lo
        high_ok = row.at_most if row.at_most is not None else hi
        if row.at_least is not None or row.at_most is not None:
            ax.barh(i, high_ok - low_ok, left=low_ok, height=0.8, color="#009E73", alpha=0.13, gid="holds")
        for bound in (row.at_least, row.at_most):
            if bound is not None:
                ax.plot([bound, bound], [i - 0.4, i + 0.4], color="black", lw=2, gid="bound")
                ax.text(bound, i + 0.38, f" bound {_bound_text(row)}", fontsize=8, va="bottom", ha="left")
        if row.median is None:
            ax.text(
                math.sqrt(lo * hi),
                i + 0.1,
                _wrap(row.missing(), 70),
                ha="center",
                va="center",
                fontsize=8,
                color="#555555",
                style="italic",
            )
        else:
            if row.low is not None and row.high is not None:
                ax.plot([row.low, row.high], [i, i], color=color, lw=4, solid_capstyle="butt", gid="interval")
            ax.plot(
                [row.median], [i], marker=marker, color=color, markersize=10, markeredgecolor="black", gid="measured"
            )
        measured = f"{row.median:.3g}x" if row.median is not None else ("unfit" if row.unfit else "not measured")
        n = f" (n={row.n})" if row.n else ""
        ax.text(
            1.01,
            i,
            f"{row.verdict.upper()}\n{measured}{n}",
            transform=side,
            va="center",
            fontsize=9,
            color=VERDICT_TEXT.get(row.verdict, OTHER_VERDICT[0]),
            fontweight="bold",
        )
    ax.set_yticks(range(len(rows)), [_wrap(r.title, 34) for r in rows], fontsize=9)
    ax.grid(axis="x", which="both", color="#dddddd", lw=0.6)
    ax.set_axisbelow(True)
    _ratio_axis(ax)
    ax.set_xlabel("measured ratio, run / baseline (log scale); dot: the median, bar: the interval the verdict used")
    ax.set_title(f"{summary.get('spec', {}).get('name', '?')}: did the expectations hold?", loc="left")
    handles: list[Artist] = [
        Line2D([], [], color=c, marker=m, lw=4, markeredgecolor="black", label=v) for v, (c, m) in VERDICT_STYLE.items()
    ]
    handles += [
        Line2D([], [], color="black", lw=2, label="declared bound"),
        Patch(color="#009E73", alpha=0.13, label="where the bound holds"),
    ]
    fig.legend(handles=handles, loc="lower center", ncols=5, fontsize=8, frameon=False)
    others = [e for e in summary.get("expectations", []) if e.get("kind") not in ("speedup", "ratio")]
    if others:
        counts: dict[str, int] = {}
        for e in others:
            counts[e.get("verdict", "?")] = counts.get(e.get("verdict", "?"), 0) + 1
        tally = ", ".join(f"{k} {v}" for k, v in counts.items())
        fig.text(
            0.995,
            0.995,
            f"not drawn: {len(others)} bound/close expectation(s) ({tally}); see the report",
            fontsize=7,
            color="#555555",
            ha="right",
            va="top",
        )
    return fig


def draw_why(summary: dict[str, Any], panels: list[WhyPanel], left_out: int = 0) -> Figure:
    """Stacked bars per explained expectation: milliseconds per optimizer step by phase, run beside baseline."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows, cols = _grid(len(panels))
    fig = Figure(figsize=(4.4 * cols, 4.1 * rows + 1.0))
    _margins(fig, (rows, cols), left=0.7, right=0.15, top=0.95, bottom=1.6, gap=0.75, row_gap=1.5)
    for ax, panel in zip(_panels(fig, len(panels)), panels, strict=True):
        top = max(b.step_ms for b in panel.bars)
        for x, bar in enumerate(panel.bars):
            bottom = 0.0
            for part, ms in bar.parts_ms.items():
                ax.bar(
                    x,
                    ms,
                    bottom=bottom,
                    width=0.6,
                    color=PART_COLORS[part],
                    edgecolor="white",
                    lw=0.5,
                    gid=f"{bar.run}:{part}",
                )
                if ms >= 0.08 * top:  # name the phases tall enough to carry a label
                    ax.text(
                        x,
                        bottom + ms / 2,
                        f"{part} {ms / bar.step_ms:.0%}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if part in ("compute", "communication") else "black",
                    )
                bottom += ms
            per_sample = f"\n{bar.step_ms / bar.batch:.3g} ms/sample" if bar.batch else ""
            ax.text(x, bar.step_ms, f"{bar.step_ms:.3g} ms{per_sample}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(
            [0, 1], [f"{b.label}\n({'baseline' if i else 'run'})" for i, b in enumerate(panel.bars)], fontsize=8
        )
        ax.set_xlim(-0.6, 1.6)
        ax.set_ylim(0, top * 1.22)
        ax.set_ylabel(f"{unit_of('step_time_ms')} per optimizer step")
        color = VERDICT_TEXT.get(panel.verdict, OTHER_VERDICT[0])
        ax.set_title(_wrap(f"{panel.verdict.upper()}: {panel.title}", 44), fontsize=9, color=color)
    handles = [Patch(color=c, label=p) for p, c in PART_COLORS.items()]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncols=5,
        fontsize=8,
        frameon=False,
        title="other = what the probes do not see (waiting for the slower rank, Python, bookkeeping)",
        title_fontsize=8,
    )
    more = f" ({left_out} more explained in report.md)" if left_out > 0 else ""
    fig.suptitle(f"{summary.get('spec', {}).get('name', '?')}: where each step's time went{more}", x=0.01, ha="left")
    return fig


def _run_colors(summary: dict[str, Any]) -> dict[str, str]:
    """One colour per run, the same in every picture."""
    return {n: RUN_COLORS[i % len(RUN_COLORS)] for i, n in enumerate(summary.get("runs", {}))}


def draw_loss(summary: dict[str, Any], groups: dict[str, list[str]]) -> Figure:
    """Loss against samples seen, one panel per model; a run that coincides with another says so."""
    from matplotlib.figure import Figure

    colors = _run_colors(summary)
    rows, cols = _grid(len(groups))
    fig = Figure(figsize=(4.8 * cols, 3.6 * rows + 0.7))
    _margins(fig, (rows, cols), left=0.65, right=0.15, top=0.65, bottom=0.55, gap=0.7, row_gap=0.85)
    for ax, (label, names) in zip(_panels(fig, len(groups)), groups.items(), strict=True):
        for k, s in enumerate(loss_series(summary, names)):
            count = len(s.samples)
            every = list(range(0, count, max(1, count // 10))) + [count - 1]
            twin = s.twin is not None
            ax.plot(
                s.samples,
                s.loss,
                label=s.label,
                color=colors[s.run],
                ls=LINE_STYLES[k % len(LINE_STYLES)],
                lw=1.2 if twin else 1.6,
                marker=MARKERS[k % len(MARKERS)],
                markevery=sorted(set(every)),
                markersize=9 if twin else 5,
                markerfacecolor="none" if twin else colors[s.run],
                gid=s.run,
                zorder=3 if twin else 2,
            )
        ax.set_xlim(left=0)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("samples seen (optimizer step x global batch)")
        ax.set_ylabel("training loss")
        ax.grid(color="#eeeeee")
        ax.legend(fontsize=8)
    missing = [n for n, r in summary.get("runs", {}).items() if not r.get("loss_curve")]
    if missing:
        fig.text(
            0.995,
            0.995,
            _wrap(f"no loss curve (not run or failed): {', '.join(missing)}", 140),
            fontsize=7,
            color="#555555",
            ha="right",
            va="top",
        )
    fig.suptitle(
        f"{summary.get('spec', {}).get('name', '?')}: training loss (mean over each logging interval, all processes)",
        x=0.01,
        ha="left",
        fontsize=11,
    )
    return fig


def draw_throughput(summary: dict[str, Any], groups: dict[str, list[str]]) -> Figure:
    """samples/s per run (timed steps, warm-up excluded), one panel per model; whiskers only where n > 1.

    A run with no repeat fit to time is drawn hollow and hatched, labelled unfit: what it measured, not a
    measurement.
    """
    from matplotlib.figure import Figure

    colors = _run_colors(summary)
    rows, cols = _grid(len(groups))
    panels = {label: throughput_bars(summary, names) for label, names in groups.items()}
    any_unfit = any(bar.unfit for bars in panels.values() for bar in bars)
    width = 4.6 * cols
    title = _wrap(
        f"{summary.get('spec', {}).get('name', '?')}: throughput, timed steps (warm-up excluded), median over "
        "repeats fit to time; whiskers min-max where n > 1",
        int(width * 9),
    )
    top = 0.45 + 0.2 * (title.count("\n") + 1)  # room for the title's lines above the panels' own
    bottom = 0.7 + (0.3 if any_unfit else 0.0)  # and for the note on unfit bars below them
    fig = Figure(figsize=(width, 3.6 * rows + top + bottom - 0.75))
    _margins(fig, (rows, cols), left=0.8, right=0.15, top=top, bottom=bottom, gap=0.85, row_gap=1.0)
    for ax, (label, bars) in zip(_panels(fig, len(groups)), panels.items(), strict=True):
        tops = []
        for x, bar in enumerate(bars):
            err = None
            if bar.low is not None and bar.high is not None:
                err = [[bar.value - bar.low], [bar.high - bar.value]]
            color = colors[bar.run]
            if bar.unfit:
                ax.bar(x, bar.value, width=0.65, facecolor="none", edgecolor=color, hatch="//", gid=f"{bar.run}:unfit")
            else:
                ax.bar(x, bar.value, yerr=err, capsize=4, width=0.65, color=color, gid=bar.run)
            top = max(bar.value, bar.high or bar.value)
            tops.append(top)
            n = f"unfit, n={bar.n}" if bar.unfit else f"n={bar.n}"
            ax.text(x, top, f"{bar.value:,.0f}\n{n}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(
            range(len(bars)),
            [bar.run for bar in bars],
            rotation=30 if len(bars) > 3 else 0,
            ha="right" if len(bars) > 3 else "center",
            fontsize=9,
        )
        ax.set_ylim(0, max(tops or [1.0]) * 1.25 or 1.0)
        ax.set_title(label, fontsize=10)
        ax.set_ylabel(unit_of("samples_per_s"))
        _thousands(ax)
        ax.grid(axis="y", color="#eeeeee")
        ax.set_axisbelow(True)
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    if any_unfit:
        fig.text(
            0.01,
            0.01,
            _wrap(
                "hatched, unfit: no repeat of the run was fit to time (disturbed, too short, too uneven): what its "
                "unfit repeats measured, not a measurement",
                int(width * 15),
            ),
            fontsize=7,
            color="#555555",
            ha="left",
            va="bottom",
        )
    return fig


def figures(summary: dict[str, Any]) -> dict[str, Figure]:
    """Every picture this summary has data for, by file name, in the report's reading order."""
    out: dict[str, Figure] = {}
    rows = verdict_rows(summary)
    if rows:
        out[VERDICTS_PNG] = draw_verdicts(summary, rows)
    panels = why_panels(summary)
    if panels:
        out[WHY_PNG] = draw_why(summary, panels[:MAX_WHY_PANELS], left_out=len(panels) - MAX_WHY_PANELS)
    groups = model_groups(summary)
    if any(summary["runs"][n].get("loss_curve") for names in groups.values() for n in names):
        out[LOSS_PNG] = draw_loss(summary, groups)
    if groups:
        out[THROUGHPUT_PNG] = draw_throughput(summary, groups)
    return out


def write_plots(summary: dict[str, Any], result_dir: Path) -> tuple[list[str], str | None]:
    """(written file names, a hint when matplotlib is missing); never raises for a missing extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.figure  # the import that fails without the extra
    except ImportError:
        return [], PLOTS_HINT
    written = []
    for name, fig in figures(summary).items():
        image = io.BytesIO()  # saved by rename, never written through a link at its name
        fig.savefig(image, format="png", dpi=DPI)
        write_bytes_atomic(result_dir / name, image.getvalue())
        written.append(name)
    return written, None
