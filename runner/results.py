"""The results folder: its layout, the records of runs and launches, and summary.json built from them.

Layout (a contract; see the README):
    OUTPUT/<spec name>/<UTC timestamp>/spec.yaml, summary.json, report.md
    OUTPUT/<spec name>/<UTC timestamp>/<run>/accelerate_config.yaml, command.txt, plan.json,
                                            metrics.json, stdout.log, stderr.log
    with measure.repeats > 1, repeat k >= 2 of a run lives in <run>/repeat-<k>/ (same files).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import statistics
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from runner.errors import ResultError
from runner.execute import Status
from runner.jsonio import read_json, write_json_atomic
from runner.stats import spread

SUMMARY_FILE = "summary.json"
SPEC_COPY = "spec.yaml"
REPORT_FILE = "report.md"
SUMMARY_FORMAT = 1
# Measured quantities that vary from launch to launch; the rest are fixed by seeds and sizes.
NOISY_METRICS = frozenset(
    {"train_time_s", "timed_time_s", "startup_s", "samples_per_s", "step_time_ms", "peak_memory_mb"}
)


def utc_stamp(now: dt.datetime | None = None) -> str:
    """20261128T101500Z"""
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")


def new_result_dir(output: str | Path, spec_name: str) -> Path:
    """Create OUTPUT/<spec>/<timestamp>/, with a -2, -3 ... suffix when a concurrent run took the name."""
    parent = Path(output) / spec_name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultError(
            f"cannot create the results folder {parent}: {exc.strerror or exc} (choose another with --output)"
        ) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ResultError(f"the results folder {parent} is not writable (choose another with --output)")
    stamp = utc_stamp()
    for attempt in range(1, 1000):
        candidate = parent / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise ResultError(
                f"cannot create {candidate}: {exc.strerror or exc} (choose another with --output)"
            ) from None
        return candidate
    raise ResultError(f"too many results named {stamp} in {parent}")


def launch_dir(result_dir: Path, run: str, repeat: int) -> Path:
    """Where launch `repeat` of `run` writes its files."""
    return result_dir / run if repeat == 1 else result_dir / run / f"repeat-{repeat}"


def sha256_text(text: str) -> str:
    """Content hash of a spec, to notice when it changed before --resume."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class LaunchRecord:
    """One launch of one run: how it ended and what it measured."""

    repeat: int
    status: Status
    directory: str  # relative to the result folder
    reason: str = ""
    wall_s: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)
    attribution: dict[str, Any] = field(default_factory=dict)
    loss_curve: list[list[float]] = field(default_factory=list)
    ranks: list[dict[str, Any]] = field(default_factory=list)
    log_tail: str = ""
    command: str = ""
    port: int | None = None
    started_at: float = 0.0  # wall clock (epoch seconds) when the launch started
    prepare_s: float = 0.0  # the runner's own time before it: compile, write files, pick a port
    notes: list[str] = field(default_factory=list)  # what a reader should know (short timing, leftovers)

    def as_json(self) -> dict[str, Any]:
        """As summary.json stores it."""
        data = asdict(self)
        data["status"] = str(self.status)
        return data

    @staticmethod
    def from_json(data: dict[str, Any]) -> LaunchRecord:
        """Back from summary.json (for --resume); unknown keys (a newer accel-run) are ignored."""
        known = {f.name for f in fields(LaunchRecord)}
        try:
            return LaunchRecord(**{k: v for k, v in data.items() if k in known} | {"status": Status(data["status"])})
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultError(f"summary.json holds a launch record accel-run cannot read: {exc}") from None


@dataclass
class RunRecord:
    """A run of the spec across its repeats."""

    name: str
    description: str
    repeats: int
    declared: dict[str, Any]
    noise_floor: float
    selected: bool = True
    launches: dict[int, LaunchRecord] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        """skipped (not selected), the first bad launch's status, ok when every repeat is ok, else pending."""
        if not self.selected:
            return Status.SKIPPED
        for repeat in sorted(self.launches):
            if self.launches[repeat].status is not Status.OK:
                return self.launches[repeat].status
        return Status.OK if len(self.launches) >= self.repeats else Status.PENDING

    @property
    def reason(self) -> str:
        """Why the run is not ok (its first bad launch's reason)."""
        for repeat in sorted(self.launches):
            if self.launches[repeat].status is not Status.OK:
                return (
                    f"repeat {repeat}: {self.launches[repeat].reason}"
                    if self.repeats > 1
                    else self.launches[repeat].reason
                )
        return ""

    def ok_launches(self) -> list[LaunchRecord]:
        """The launches that finished and passed their checks, in repeat order."""
        return [self.launches[r] for r in sorted(self.launches) if self.launches[r].status is Status.OK]

    def values(self, metric: str) -> list[float]:
        """The metric from each ok repeat, in repeat order."""
        out = []
        for launch in self.ok_launches():
            value = launch.metrics.get(metric)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out.append(float(value))
        return out

    def summary(self) -> dict[str, Any]:
        """The run as summary.json stores it: medians, spreads and every repeat's raw values."""
        launches = self.ok_launches()
        metrics: dict[str, Any] = {}
        spreads: dict[str, Any] = {}
        if launches:
            for key, first in launches[0].metrics.items():
                values = self.values(key)
                if values and len(values) == len(launches):
                    median = statistics.median(values)
                    whole = all(isinstance(launch.metrics.get(key), int) for launch in launches)
                    metrics[key] = int(median) if whole and float(median).is_integer() else median
                    if key in NOISY_METRICS:
                        spreads[key] = {**spread(values), "values": values}
                else:
                    metrics[key] = first
        first = launches[0] if launches else None
        return {
            "status": str(self.status),
            "reason": self.reason,
            "description": self.description,
            "directory": self.name,
            "declared": self.declared,
            "observed": first.observed if first else {},
            "metrics": metrics,
            "spread": spreads,
            "attribution": _median_attribution([launch.attribution for launch in launches]),
            "loss_curve": first.loss_curve if first else [],
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


def load_summary(result_dir: str | Path) -> dict[str, Any]:
    """Read a result's summary.json, with one clear error when it is missing or damaged."""
    path = Path(result_dir) / SUMMARY_FILE
    if not Path(result_dir).is_dir():
        raise ResultError(f"{result_dir} is not a result folder (expected OUTPUT/<spec>/<timestamp>/)")
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise ResultError(f"{path} does not exist; is {result_dir} a result folder?") from None
    except (OSError, ValueError) as exc:
        raise ResultError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != SUMMARY_FORMAT:
        raise ResultError(f"{path} is not an accel-run summary (format {SUMMARY_FORMAT})")
    return data


def save_summary(result_dir: Path, summary: dict[str, Any]) -> None:
    """Rewrite summary.json atomically (after every launch: a crash loses at most the launch in flight)."""
    write_json_atomic(result_dir / SUMMARY_FILE, summary)
