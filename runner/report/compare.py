"""`accel-run compare OLD NEW`: two results of one spec, run by run and metric by metric.

Each metric becomes a ratio NEW / OLD judged as the expectations judge timings (verdicts.stats):
the order-statistic interval of each side's median over its repeats fit to time (unfit ones left
out, as summary.json lists them), combined into an interval of the ratio, widened by the noise
floor, or by SMALL_SAMPLE_NOISE when a side has fewer than 3 repeats. A change beyond the
threshold over the whole interval is a regression (or an improvement); an interval that holds
the threshold is unclear. Losses, accuracy and step counts are fixed by the seeds: compared
directly. What makes the two results hard to compare (another spec, another machine, a run
declared differently) is stated before any number.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import ExitCode
from runner.metrics import COMPARABLE_METRICS, HIGHER_IS_BETTER, NOISY_METRICS, TIMING_METRICS
from runner.results.summary import load_summary
from runner.verdicts.stats import Interval, check_bounds, median_interval, timing_noise
from runner.vocab import Outcome, Status

DEFAULT_THRESHOLD = 0.10
DEFAULT_NOISE_FLOOR = 0.03  # measure.noise_floor's default, for a result whose plan.json cannot be read
# What compare looks at by default, in this order; which way is better, and what --metrics accepts,
# is runner.metrics' table.
METRICS = ("samples_per_s", "tokens_per_s", "startup_s", "peak_memory_mb", "final_loss", "eval_loss", "accuracy")
COMPARABLE = COMPARABLE_METRICS
# The machine facts that change timings, as summary.json's environment holds them.
MACHINE_FACTS = (
    ("cpu_model", ("cpu_model",)),
    ("cores", ("cpu_count",)),
    ("GPUs", ("cuda_devices",)),
    ("torch", ("versions", "torch")),
    ("accelerate", ("versions", "accelerate")),
    ("python", ("versions", "python")),
    ("accel-run", ("versions", "accel_run")),
    ("host", ("hostname",)),
)

REGRESSION, IMPROVEMENT, SAME, UNCLEAR, MISSING = "regression", "improvement", "same", "unclear", "missing"
_LABEL = {REGRESSION: "REGRESSION", IMPROVEMENT: "better", SAME: "same", UNCLEAR: "UNCLEAR", MISSING: "n/a"}


@dataclass(frozen=True)
class MetricChange:
    """One metric of one run, OLD against NEW, and what the change means."""

    run: str
    metric: str
    verdict: str  # regression, improvement, same, unclear, missing
    old: float | None  # medians over the repeats used
    new: float | None
    ratio: float | None  # new / old
    interval: Interval | None  # of the ratio, noise included (noisy metrics)
    n_old: int = 0
    n_new: int = 0
    note: str = ""

    def line(self) -> str:
        """`REGRESSION  samples_per_s  58,103 -> 29,051  0.50x (0.38–0.63, n=1/1), needs >= 0.90x`"""
        if self.ratio is None:
            return f"{_LABEL[self.verdict]:<11} {self.metric:<15} {self.note}"
        shown = (
            f"{self.ratio:.2f}x ({self.interval.low:.2f}–{self.interval.high:.2f}, n={self.n_old}/{self.n_new})"
            if self.interval is not None
            else f"{self.ratio:.2f}x"
        )
        values = f"{_fmt(self.old)} -> {_fmt(self.new)}"
        return f"{_LABEL[self.verdict]:<11} {self.metric:<15} {values:<22} {shown}" + (
            f"; {self.note}" if self.note else ""
        )


@dataclass(frozen=True)
class Comparison:
    """Two results compared: the differences stated up front, then every run's metric changes."""

    old: str
    new: str
    spec: str
    threshold: float
    differences: list[str]
    changes: list[MetricChange]
    notes: list[str] = field(default_factory=list)  # runs that cannot be compared, and why

    def count(self, verdict: str) -> int:
        """How many metric changes have this verdict."""
        return sum(change.verdict == verdict for change in self.changes)

    def exit_code(self, allow_inconclusive: bool = False) -> ExitCode:
        """1 on a regression, or an unclear change unless allowed (as for inconclusive expectations); else 0."""
        if self.count(REGRESSION) or (self.count(UNCLEAR) and not allow_inconclusive):
            return ExitCode.FAILED
        return ExitCode.OK

    def text(self) -> str:
        """The comparison for a person: differences first, then one block per run, then the counts."""
        lines = [f"compare {self.spec}: {self.old} (OLD) -> {self.new} (NEW)"]
        lines += [f"  {difference}" for difference in self.differences]
        lines.append(
            f"  threshold: {self.threshold:.0%} (a change beyond it over the whole noise interval "
            "is a regression or an improvement)"
        )
        lines += [f"  note: {note}" for note in self.notes]
        run = None
        for change in self.changes:
            if change.run != run:
                run = change.run
                lines.append(f"\nrun '{run}'")
            lines.append(f"  {change.line()}")
        counts = [
            _plural(self.count(REGRESSION), "regression"),
            _plural(self.count(IMPROVEMENT), "improvement"),
            f"{self.count(SAME)} same",
            f"{self.count(UNCLEAR)} unclear",
        ]
        lines.append("\n" + ", ".join(counts))
        return "\n".join(lines) + "\n"

    def as_json(self) -> dict[str, Any]:
        """For --format json: the same facts as data."""
        data = asdict(self)
        data["counts"] = {v: self.count(v) for v in (REGRESSION, IMPROVEMENT, SAME, UNCLEAR, MISSING)}
        return data


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def compare_results(
    old_dir: str | Path,
    new_dir: str | Path,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    metrics: tuple[str, ...] = METRICS,
) -> Comparison:
    """Compare two result folders (read with load_summary: the same errors as --report)."""
    old, new = load_summary(old_dir), load_summary(new_dir)
    old_runs, new_runs = old["runs"], new["runs"]
    differences = _spec_differences(old, new) + _machine_differences(old, new)
    only_old, only_new = [n for n in old_runs if n not in new_runs], [n for n in new_runs if n not in old_runs]
    if only_old:
        differences.append(f"runs only in OLD: {', '.join(only_old)}")
    if only_new:
        differences.append(f"runs only in NEW: {', '.join(only_new)}")
    changes: list[MetricChange] = []
    notes: list[str] = []
    for name in (n for n in old_runs if n in new_runs):
        a, b = old_runs[name], new_runs[name]
        declared = _dict_differences(a.get("declared") or {}, b.get("declared") or {})
        if declared:
            differences.append(f"run '{name}' is declared differently: {declared}")
        if a.get("status") != Status.OK:
            notes.append(f"run '{name}' is {a.get('status')} in OLD: nothing to compare with")
            continue
        if b.get("status") in (Status.FAILED, Status.TIMEOUT):
            reason = f": {b['reason']}" if b.get("reason") else ""
            note = f"ok in OLD, {b.get('status')} in NEW{reason}"
            changes.append(MetricChange(name, "status", REGRESSION, None, None, None, None, note=note))
            continue
        if b.get("status") != Status.OK:  # skipped (--only), interrupted, pending: nothing measured, nothing broke
            notes.append(f"run '{name}' is {b.get('status')} in NEW: nothing to compare")
            continue
        floor = max(_noise_floor(Path(old_dir), a), _noise_floor(Path(new_dir), b))
        for metric in metrics:
            change = _compare_metric(name, metric, a, b, threshold, floor)
            if change is not None:
                changes.append(change)
    return Comparison(
        str(old_dir), str(new_dir), str(new["spec"].get("name", "")), threshold, differences, changes, notes
    )


def _spec_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = old["spec"], new["spec"]
    lines = []
    if a.get("name") != b.get("name"):
        lines.append(f"spec: different specs: '{a.get('name')}' (OLD) and '{b.get('name')}' (NEW)")
    if a["sha256"] != b["sha256"]:
        lines.append(
            f"spec: the spec changed between the two results (sha256 {a['sha256'][:12]} -> {b['sha256'][:12]}): "
            "a run of the same name may not do the same work"
        )
    elif not lines:
        lines.append(f"spec: the same (sha256 {a['sha256'][:12]})")
    return lines


def _dig(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = data
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _machine_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = old.get("environment") or {}, new.get("environment") or {}
    changed = []
    for label, keys in MACHINE_FACTS:
        x, y = _dig(a, keys), _dig(b, keys)
        if x != y:
            changed.append(f"{label} {_show(x)} -> {_show(y)}")
    if not changed:
        return ["machine: the same (" + ", ".join(label for label, _ in MACHINE_FACTS) + ")"]
    return ["machine: differs: " + "; ".join(changed) + " (timings may differ for that alone)"]


def _show(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, list):
        return "[" + ", ".join(str(v.get("name", v)) if isinstance(v, dict) else str(v) for v in value) + "]"
    return str(value)


def _dict_differences(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]
    return ", ".join(f"{k} {_show(a.get(k))} -> {_show(b.get(k))}" for k in keys)


def _noise_floor(folder: Path, run: dict[str, Any]) -> float:
    """measure.noise_floor of a run, from its first launch's plan.json (the resolved run as it ran)."""
    for launch in run.get("repeats", []):
        try:
            plan = json.loads((folder / str(launch.get("directory", "")) / "plan.json").read_text(encoding="utf-8"))
            value = plan["config"]["measure"]["noise_floor"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(value, int | float):
            return float(value)
    return DEFAULT_NOISE_FLOOR


def _values(run: dict[str, Any], metric: str) -> tuple[list[float], str]:
    """The metric over the ok repeats (for a timing, those fit to time), and why there are none.

    A summary whose repeats carry no metrics (trimmed by hand) gives the run's spread, else its median.
    """
    if not any(isinstance(launch.get("metrics"), dict) for launch in run.get("repeats", [])):
        recorded = (run.get("spread", {}).get(metric) or {}).get("values") or [run.get("metrics", {}).get(metric)]
        return [float(v) for v in recorded if isinstance(v, int | float) and not isinstance(v, bool)], ""
    unfit = run.get("disturbance", {}).get("unfit_repeats") or {}
    values, left_out = [], []
    for launch in run.get("repeats", []):
        value = (launch.get("metrics") or {}).get(metric)
        if launch.get("status") != Status.OK or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if metric in TIMING_METRICS and str(launch.get("repeat")) in unfit:
            left_out.append(f"repeat {launch.get('repeat')}: {unfit[str(launch.get('repeat'))]}")
            continue
        values.append(float(value))
    return values, ("no repeat fit to time (" + "; ".join(left_out) + ")") if left_out and not values else ""


def _compare_metric(
    name: str, metric: str, old: dict[str, Any], new: dict[str, Any], threshold: float, floor: float
) -> MetricChange | None:
    old_values, old_why = _values(old, metric)
    new_values, new_why = _values(new, metric)
    if not old_values and not new_values and not (old_why or new_why):
        return None  # a metric neither result has (tokens_per_s of an MLP): nothing to say
    if not old_values or not new_values:
        why = f"OLD: {old_why}" if old_why else f"NEW: {new_why}" if new_why else ""
        side = "OLD" if not old_values else "NEW"
        verdict = UNCLEAR if why else MISSING
        return MetricChange(name, metric, verdict, None, None, None, None, note=why or f"not measured in {side}")
    a, b = statistics.median(old_values), statistics.median(new_values)
    if a == 0:
        verdict = SAME if b == 0 else MISSING
        return MetricChange(name, metric, verdict, a, b, None, None, note="" if b == 0 else "OLD is 0: no ratio")
    ratio = b / a
    interval: Interval | None = None
    if metric in NOISY_METRICS:
        n = min(len(old_values), len(new_values))
        noise = timing_noise(n, floor) if metric in TIMING_METRICS else floor
        low_old, high_old = _envelope(old_values)
        low_new, high_new = _envelope(new_values)
        low, high = low_new / high_old if high_old else 0.0, high_new / low_old if low_old else float("inf")
        interval = Interval(ratio, low - abs(low) * noise, high + abs(high) * noise, n, 0.0)
    judged = interval or Interval(ratio, ratio, ratio, 1, 1.0)
    higher_better = metric in HIGHER_IS_BETTER
    bound = (1 - threshold, None) if higher_better else (None, 1 + threshold)
    outcome = check_bounds(judged, *bound)
    note = ""
    if outcome is Outcome.FAIL:
        verdict = REGRESSION
    elif outcome is Outcome.INCONCLUSIVE:
        verdict = UNCLEAR
        n = judged.n
        note = (
            f"{n} repeat(s): no spread measured, 3 or more in both may settle it"
            if n < 3
            else "the threshold lies inside the spread: more repeats may settle it"
        )
    else:
        better = judged.low > 1 + threshold if higher_better else judged.high < 1 - threshold
        verdict = IMPROVEMENT if better else SAME
    return MetricChange(name, metric, verdict, a, b, ratio, interval, len(old_values), len(new_values), note)


def _envelope(values: list[float]) -> tuple[float, float]:
    """The order-statistic interval of the median, before noise (the whole range for n <= 4)."""
    interval = median_interval(values, 0.0)
    return interval.low, interval.high
