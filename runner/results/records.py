"""The records of runs and launches: how each launch ended, what it measured, whether it can time.

A RunRecord turns into its part of summary.json (medians over the repeats fit to time, spreads,
every repeat's raw values); results.summary builds the whole file.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from runner.contract import Declared, MetricsRecord, MetricValue, Observed
from runner.errors import ResultError
from runner.metrics import BLOCK_RATES, BLOCK_TIMES, NOISY_METRICS, TIMING_METRICS
from runner.timing import Rules, block_problem, spread
from runner.vocab import Status

if TYPE_CHECKING:
    from runner.spec.models import MeasureSection

# Which metrics are timings, noisy, or timed by blocks of steps: runner.metrics' table. A timing
# timed by blocks carries the interval of its launch's median block rate (rate_ci_low/high, as factors),
# which a time per step inverts.
# A timed step this many times longer than the same step probed after training was not the step alone.
STEP_PROBE_FACTOR = 3.0
# A launch without blocks (a user script, or a result of an older accel-run) is timed as one window,
# which must last this long unless measure.min_duration_s says otherwise.
WINDOW_MIN_S = 1.0


@dataclass(frozen=True)
class TimingProblem:
    """Why one launch's timings cannot decide a verdict; `repeatable`: another launch may do better."""

    kind: str  # "short", "spread", "drift" (runner.timing), "disturbed" or "step_vs_probe"
    sentence: str

    @property
    def repeatable(self) -> bool:
        """A short timed part stays short however often it is launched; the others (load, drift) are chance."""
        return self.kind != "short"


@dataclass
class LaunchRecord:
    """One launch of one run: how it ended and what it measured."""

    repeat: int
    status: Status
    directory: str  # relative to the result folder
    reason: str = ""
    wall_s: float = 0.0
    metrics: dict[str, MetricValue] = field(default_factory=dict)  # metrics.json's, keyed by runner.metrics' names
    observed: Observed = field(default_factory=Observed.nothing)
    attribution: dict[str, Any] = field(default_factory=dict)
    loss_curve: list[list[float]] = field(default_factory=list)
    ranks: list[dict[str, Any]] = field(default_factory=list)
    log_tail: str = ""
    command: str = ""
    port: int | None = None
    started_at: float = 0.0  # wall clock (epoch seconds) when the launch started
    prepare_s: float = 0.0  # the runner's own time before it: compile, write files, pick a port
    notes: list[str] = field(default_factory=list)  # what a reader should know (short timing, leftovers)
    disturbance: dict[str, Any] = field(default_factory=dict)  # what other work took while it was timed
    job_id: str = ""  # the SLURM job that ran it; kept while it runs, so --resume can re-attach to it
    queue_s: float | None = None  # SLURM: submitted to running
    recorded_at: float = 0.0  # wall clock when its result was recorded
    phases: dict[str, Any] = field(default_factory=dict)  # seconds per phase of the launch (metrics.json + teardown)
    launcher: str = ""  # what started it: "fork" or "accelerate" (SLURM jobs: accelerate)

    def take(self, measured: MetricsRecord) -> None:
        """What the launch measured, from its metrics.json: metrics, observed facts, probes, losses, ranks, load."""
        self.metrics, self.observed, self.attribution = measured.metrics, measured.observed, measured.attribution
        self.loss_curve, self.ranks, self.disturbance = measured.loss_curve, measured.ranks, measured.disturbance

    def timing_problem(
        self, min_duration_s: float | None, max_disturbance: float, rules: Rules | None = None
    ) -> TimingProblem | None:
        """Why this launch's timings cannot decide a timing verdict, or None when they can."""
        timed = self.metrics.get("timed_time_s")
        blocks = self.metrics.get("timed_blocks")
        if isinstance(blocks, int) and not isinstance(blocks, bool):
            rules = rules or Rules()
            if max_disturbance >= 1:  # any load accepted: a spread or drift it causes is accepted too
                rules = Rules(rules.min_blocks, float("inf"))
            found = block_problem(
                blocks,
                float(timed) if isinstance(timed, int | float) else 0.0,
                float(self.metrics.get("block_spread") or 0.0),
                float(self.metrics.get("block_drift") or 0.0),
                rules,
            )
            if found is not None:
                return TimingProblem(*found)
        floor = min_duration_s if min_duration_s is not None or isinstance(blocks, int) else WINDOW_MIN_S
        if floor is not None and isinstance(timed, int | float) and timed < floor:
            return TimingProblem(
                "short", f"its timed part took {timed:.2f} s, under measure.min_duration_s ({floor:g} s)"
            )
        share = self.disturbance.get("others_share")
        if isinstance(share, int | float) and share > max_disturbance:
            return TimingProblem(
                "disturbed",
                f"other processes took {share:.0%} of the CPU cores while it was timed "
                f"(measure.max_disturbance: {max_disturbance:.0%})",
            )
        step_ms, probe_s = self.metrics.get("step_time_ms"), self.attribution.get("step_s")
        # the same disturbance seen by its effect; max_disturbance 1 accepts any load, so both checks are off
        if (
            max_disturbance < 1
            and isinstance(step_ms, int | float)
            and isinstance(probe_s, int | float)
            and probe_s > 0
        ):
            factor = step_ms / 1000 / probe_s
            if factor > STEP_PROBE_FACTOR:
                return TimingProblem(
                    "step_vs_probe",
                    f"its timed step took {step_ms:.3g} ms, {factor:.1f}x the {probe_s * 1000:.3g} ms the same step "
                    "took when probed after training",
                )
        return None

    def interval_factors(self, metric: str) -> tuple[float, float]:
        """(low, high) factors around this launch's value of a timing, from its blocks; (1, 1) where none.

        A rate's interval is [value * low, value * high]; a time per step inverts it.
        """
        low, high = self.metrics.get("rate_ci_low"), self.metrics.get("rate_ci_high")
        if not (isinstance(low, int | float) and isinstance(high, int | float) and low > 0 and high > 0):
            return 1.0, 1.0
        if metric in BLOCK_RATES:
            return float(low), float(high)
        if metric in BLOCK_TIMES:
            return 1 / float(high), 1 / float(low)
        return 1.0, 1.0

    def as_json(self) -> dict[str, Any]:
        """As summary.json stores it."""
        data = asdict(self)
        data["status"] = str(self.status)
        data["observed"] = self.observed.as_json()
        return data

    @staticmethod
    def from_json(data: dict[str, Any]) -> LaunchRecord:
        """Back from summary.json (for --resume); unknown keys (a newer accel-run) are ignored."""
        known = {f.name for f in fields(LaunchRecord)}
        try:
            typed = {"status": Status(data["status"]), "observed": Observed.from_json(data.get("observed") or {})}
            return LaunchRecord(**{k: v for k, v in data.items() if k in known} | typed)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ResultError(f"summary.json holds a launch record accel-run cannot read: {exc}") from None


@dataclass
class RunRecord:
    """A run of the spec across its repeats."""

    name: str
    description: str
    repeats: int  # launches planned so far (with measure.repeats: auto, rounds add to it)
    declared: Declared | None  # None: not known (a rebuilt run without a launch folder)
    noise_floor: float
    selected: bool = True
    skip_reason: str = ""  # why a run was left out by this machine (too few GPUs), where it was
    launches: dict[int, LaunchRecord] = field(default_factory=dict)
    auto: bool = False  # measure.repeats: auto
    max_repeats: int = 10
    max_time_s: float = 600.0
    min_duration_s: float | None = None
    max_disturbance: float = 0.10
    rules: Rules = field(default_factory=Rules)  # what makes a launch's blocks fit to time
    workload: str = "builtin"  # or "script": the user's own script (no attribution probe, its own sizes)
    cut_short: str = ""  # why the session ended before this run's planned repeats did ("interrupted"), if it did

    @property
    def status(self) -> Status:
        """skipped (not selected); failed or timeout (its first such launch); ok when every planned repeat is ok;
        incomplete when the session ended (cut_short) after some repeats were ok; else the first open launch's
        status (interrupted, pending), or pending."""
        if not self.selected:
            return Status.SKIPPED
        launches = [self.launches[r] for r in sorted(self.launches)]
        failed = next((launch for launch in launches if launch.status in (Status.FAILED, Status.TIMEOUT)), None)
        if failed is not None:
            return failed.status
        ok = len(self.ok_launches())
        if ok == len(launches) and ok >= self.repeats:
            return Status.OK
        if self.cut_short and ok:
            return Status.INCOMPLETE  # the finished repeats still decide what they can
        return next((launch.status for launch in launches if launch.status is not Status.OK), Status.PENDING)

    @property
    def reason(self) -> str:
        """Why the run is not ok: why it was skipped, its first failed launch's reason, or how far it got."""
        if not self.selected:
            return self.skip_reason
        status = self.status
        if status is Status.INCOMPLETE:
            finished = len(self.ok_launches())
            return f"{finished} of {self.repeats} repeat(s) finished before the session was {self.cut_short}"
        if status is Status.PENDING and self.cut_short and not self.launches:
            return f"not run: the session was {self.cut_short} first"
        for repeat in sorted(self.launches):
            launch = self.launches[repeat]
            if launch.status is status and status is not Status.OK:
                return f"repeat {repeat}: {launch.reason}" if self.repeats > 1 else launch.reason
        return ""

    def ok_launches(self) -> list[LaunchRecord]:
        """The launches that finished and passed their checks, in repeat order."""
        return [self.launches[r] for r in sorted(self.launches) if self.launches[r].status is Status.OK]

    @staticmethod
    def measured_by(
        measure: MeasureSection,
        *,
        name: str,
        description: str,
        repeats: int,
        declared: Declared | None,
        selected: bool,
        auto: bool,
        skip_reason: str = "",
        workload: str = "builtin",
    ) -> RunRecord:
        """A record that judges its launches by the run's measure section (noise floor, fitness, budget)."""
        return RunRecord(
            name=name,
            description=description,
            repeats=repeats,
            declared=declared,
            noise_floor=measure.noise_floor,
            selected=selected and not skip_reason,
            skip_reason=skip_reason,
            auto=auto,
            max_repeats=measure.max_repeats,
            max_time_s=measure.max_time_s,
            min_duration_s=measure.min_duration_s,
            max_disturbance=measure.max_disturbance,
            rules=Rules(measure.min_blocks, measure.max_spread),
            workload=workload,
        )

    def timing_problem(self, launch: LaunchRecord) -> TimingProblem | None:
        """Why `launch` cannot time this run, by this run's measure settings."""
        return launch.timing_problem(self.min_duration_s, self.max_disturbance, self.rules)

    def by_repeat(self, metric: str, fit_only: bool = True) -> dict[int, float]:
        """The metric of each ok repeat; for a timing, only repeats fit to time unless `fit_only` is false."""
        out = {}
        unfit_excluded = fit_only and metric in TIMING_METRICS
        for launch in self.ok_launches():
            value = launch.metrics.get(metric)
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if unfit_excluded and self.timing_problem(launch) is not None:
                continue  # disturbed or too short: repeated, never averaged in
            out[launch.repeat] = float(value)
        return out

    def values(self, metric: str, fit_only: bool = True) -> list[float]:
        """The metric from each ok repeat (fit to time, for a timing), in repeat order."""
        return list(self.by_repeat(metric, fit_only).values())

    def timing_problems(self) -> list[tuple[int, TimingProblem]]:
        """(repeat, problem) for every ok launch unfit to time."""
        found = []
        for launch in self.ok_launches():
            problem = self.timing_problem(launch)
            if problem is not None:
                found.append((launch.repeat, problem))
        return found

    def launch_time_s(self) -> float:
        """Seconds its launches took so far (the budget measure.max_time_s counts)."""
        return sum(launch.wall_s for launch in self.launches.values())

    def summary(self) -> dict[str, Any]:
        """The run as summary.json stores it: medians, spreads and every repeat's raw values."""
        launches = self.ok_launches()
        metrics: dict[str, Any] = {}
        spreads: dict[str, Any] = {}
        unfit: dict[str, float] = {}
        if launches:
            for key, value in launches[0].metrics.items():
                values = self.values(key)  # timings: the repeats fit to time only
                if values:
                    median = statistics.median(values)
                    whole = all(isinstance(launch.metrics.get(key), int) for launch in launches)
                    metrics[key] = int(median) if whole and float(median).is_integer() else median
                    if key in NOISY_METRICS:
                        spreads[key] = {**spread(values), "values": values}
                elif key in TIMING_METRICS and self.values(key, fit_only=False):
                    # no repeat fit to time: kept apart, never where a measurement is read (the verdicts say why)
                    unfit[key] = statistics.median(self.values(key, fit_only=False))
                else:
                    metrics[key] = value
        first = launches[0] if launches else None
        shares = [launch.disturbance.get("others_share") for launch in launches]
        measured = [share for share in shares if isinstance(share, int | float)]
        return {
            "status": str(self.status),
            "reason": self.reason,
            "description": self.description,
            "workload": self.workload,
            "directory": self.name,
            "declared": self.declared.as_json() if self.declared else {},
            "observed": first.observed.as_json() if first else {},
            "metrics": metrics,
            "unfit_metrics": unfit,
            "spread": spreads,
            "attribution": _median_attribution([launch.attribution for launch in launches]),
            "phases": _median_attribution([launch.phases for launch in launches]),
            "loss_curve": first.loss_curve if first else [],
            "disturbance": {
                "max_others_share": max(measured) if measured else None,
                "median_others_share": statistics.median(measured) if measured else None,
                "limit": self.max_disturbance,
                "unfit_repeats": {str(repeat): problem.sentence for repeat, problem in self.timing_problems()},
            },
            "repeats": [self.launches[r].as_json() for r in sorted(self.launches)],
        }


def _median_attribution(probes: list[dict[str, Any]]) -> dict[str, Any]:
    probes = [p for p in probes if p]
    if not probes:
        return {}
    out: dict[str, Any] = {}
    for key, value in probes[0].items():
        values = [p[key] for p in probes if isinstance(p.get(key), int | float)]
        out[key] = statistics.median(values) if isinstance(value, int | float) and values else value
    return out
