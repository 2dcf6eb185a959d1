"""Session time: where a session's wall time goes, with each launcher, measured side by side in one run.

Three comparisons, each interleaved (A B A B ...) so the machine's drift hits both alike:
1. `specs/day6-quick.yaml` with `launch.launcher: fork` (the default) and `accelerate` (the
   `accelerate launch` command): the session's wall, its training seconds and timed share, and the
   seconds per launch by phase (medians over the session's launches).
2. A one-run invocation (day6-quick's `single`, repeats 1) against the same training written by
   hand (benchmarks/handwritten_train.py) under `accelerate launch`: whole-command wall times.
3. The launcher's own cost per launch: the time from the launch to the worker's process
   (phase "launcher") plus the time from its results being written to the launch's end
   ("teardown"), which is what the launcher adds to the bare worker process.

Run it on an idle machine: python benchmarks/session_time.py [--rounds 1] [--one-run-rounds 3]
(day6-quick takes about a minute a session, so the default of one round each is about 3 minutes.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DAY6_QUICK = ROOT / "specs" / "day6-quick.yaml"
PHASES = (
    "launcher_s",
    "imports_s",
    "device_init_s",
    "setup_s",
    "warmup_s",
    "timed_s",
    "eval_s",
    "extra_timing_s",
    "probes_s",
    "teardown_s",
)
CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: 'NO'
mixed_precision: 'no'
num_processes: 1
num_machines: 1
machine_rank: 0
use_cpu: true
"""


def session(spec: Path, output: Path, *extra: str) -> tuple[dict[str, Any], float]:
    """(summary.json, wall seconds of the whole command) of one accel-run invocation."""
    before = set(output.glob("*/*")) if output.exists() else set()
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "runner", str(spec), "--output", str(output), "--no-progress", *extra],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    wall = time.perf_counter() - started
    (folder,) = set(output.glob("*/*")) - before
    return json.loads((folder / "summary.json").read_text()), wall


def launches(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [launch for run in summary["runs"].values() for launch in run["repeats"] if launch["status"] == "ok"]


def describe(name: str, summary: dict[str, Any], wall: float) -> dict[str, float]:
    done = launches(summary)
    train = sum(launch["metrics"].get("train_time_s") or 0.0 for launch in done)
    timed = sum(launch["metrics"].get("timed_time_s") or 0.0 for launch in done)
    phases = {p: statistics.median(launch["phases"].get(p) or 0.0 for launch in done) for p in PHASES}
    print(
        f"{name:<11} wall {wall:6.1f} s  launches {len(done):>2}  training {train:5.1f} s  timed {timed:5.1f} s  "
        f"timed share {timed / wall:4.0%}"
    )
    print(
        "            per launch (median s): " + "  ".join(f"{p.removesuffix('_s')} {v:.2f}" for p, v in phases.items())
    )
    return {"wall": wall, "cost": phases["launcher_s"] + phases["teardown_s"]}


def handwritten(config: Path) -> float:
    """Wall seconds of `accelerate launch handwritten_train.py` on day6-quick's `single` workload."""
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(config),
            "--num_cpu_threads_per_process",
            str(len(os.sched_getaffinity(0))),
            str(ROOT / "benchmarks" / "handwritten_train.py"),
            *("10000", "128", "256,128", "10", "64", str(20 * 156), "5"),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")} | {"ACCELERATE_USE_CPU": "true"},
    )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1, help="day6-quick sessions per launcher")
    parser.add_argument("--one-run-rounds", type=int, default=3, help="one-run invocations and hand-written launches")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        print(f"1. {DAY6_QUICK.relative_to(ROOT)}, both launchers ({args.rounds} session(s) each, interleaved)")
        walls: dict[str, list[float]] = {"fork": [], "accelerate": []}
        costs: dict[str, list[float]] = {"fork": [], "accelerate": []}
        for _ in range(args.rounds):
            for launcher in ("fork", "accelerate"):
                summary, wall = session(DAY6_QUICK, out / launcher, "--set", f"launch.launcher={launcher}")
                figures = describe(launcher, summary, wall)
                walls[launcher].append(figures["wall"])
                costs[launcher].append(figures["cost"])
        fork, accelerate = statistics.median(walls["fork"]), statistics.median(walls["accelerate"])
        print(f"   day6-quick wall: fork {fork:.1f} s, accelerate {accelerate:.1f} s ({accelerate / fork:.2f}x)")

        print("\n2. one run (day6-quick's 'single', 1 launch) against the hand-written accelerate launch")
        config = out / "config.yaml"
        config.write_text(CONFIG)
        ours, theirs = [], []
        for _ in range(args.one_run_rounds):
            _, wall = session(DAY6_QUICK, out / "one", "--only", "single", "--repeats", "1")
            ours.append(wall)
            theirs.append(handwritten(config))
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"   accel-run {a:.1f} s, hand-written accelerate launch {b:.1f} s: {a / b:.2f}x (medians)")
        print(f"   all: {[round(x, 1) for x in ours]} vs {[round(x, 1) for x in theirs]}")

        print("\n3. the launcher's own cost per launch (launcher + teardown phases, median over sessions)")
        for launcher, values in costs.items():
            print(f"   {launcher:<11} {statistics.median(values):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
