"""Twins under load: can a busy machine make accel-run pass or fail a speedup that is not there?

Two identical runs ("twins": the same model, data, batch and process count), so their true
speedup is 1.0, with two expectations that must never be decided wrongly:
  - `speedup >= 1.5`: a pass is a false pass;
  - `speedup >= 0.67`: a fail is a false fail.
The spec uses the default `measure.repeats: auto`, one thread per twin (with two threads and a
hog, torch's OpenMP workers wait on each other and a step takes 65x longer: a loaded round then
costs minutes, though accel-run flags it all the same). It is run N times (default 10) on an idle
machine, then N times while a CPU hog that this benchmark starts (one busy Python process, which
takes a core) runs; the hog is stopped by its PID at the end, whatever happens. For each
condition it prints the verdict counts, the launches `auto` made per run (median and maximum) and
the wall time per invocation. Inconclusive is an honest answer; a false pass or fail is a bug.

Run: python benchmarks/twins_under_load.py [--invocations 10] [--max-repeats 4]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TITLES = ("false pass", "false fail")


def spec_text(max_repeats: int) -> str:
    return f"""\
name: twins
model: {{kind: mlp, input_dim: 64, hidden: [256, 256], classes: 4}}
data: {{kind: synthetic-classification, samples: 16384, features: 64, classes: 4}}
train: {{epochs: 6, batch_size: 64, eval_samples: 0}}
launch: {{processes: 1, device: cpu, cpu_threads_per_process: 1}}
measure: {{max_repeats: {max_repeats}}}
runs:
  twin-a: {{}}
  twin-b: {{}}
expect:
  - {{kind: speedup, title: false pass, run: twin-b, baseline: twin-a, at_least: 1.5}}
  - {{kind: speedup, title: false fail, run: twin-b, baseline: twin-a, at_least: 0.67}}
"""


def invoke(spec: Path, output: Path) -> tuple[dict[str, Any], float]:
    before = set(output.glob("*/*")) if output.exists() else set()
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "runner", str(spec), "--output", str(output), "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    wall = time.perf_counter() - started
    (result,) = set(output.glob("*/*")) - before
    return json.loads((result / "summary.json").read_text()), wall


def condition(name: str, spec: Path, output: Path, invocations: int) -> dict[str, Any]:
    verdicts: dict[str, collections.Counter[str]] = {
        "false pass": collections.Counter(),
        "false fail": collections.Counter(),
    }
    launches, walls, shares = [], [], []
    for index in range(1, invocations + 1):
        summary, wall = invoke(spec, output)
        walls.append(wall)
        for expectation in summary["expectations"]:
            verdicts[expectation["title"]][expectation["verdict"]] += 1
        for run in summary["runs"].values():
            launches.append(len(run["repeats"]))
            shares += [r.get("disturbance", {}).get("others_share") or 0.0 for r in run["repeats"]]
        line = ", ".join(f"{e['title']}: {e['verdict']}" for e in summary["expectations"])
        print(
            f"{name} {index:>2}: {line}; launches {[len(r['repeats']) for r in summary['runs'].values()]}", flush=True
        )
    return {"verdicts": verdicts, "launches": launches, "walls": walls, "shares": shares}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invocations", type=int, default=10, help="invocations per condition (default 10)")
    parser.add_argument("--max-repeats", type=int, default=4, help="measure.max_repeats of the twins (default 4)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "twins.yaml"
        spec.write_text(spec_text(args.max_repeats))
        results["idle"] = condition("idle", spec, Path(tmp) / "idle", args.invocations)
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            results["loaded"] = condition("loaded", spec, Path(tmp) / "loaded", args.invocations)
        finally:
            hog.kill()
            hog.wait()
    print(f"\ntwins (true speedup 1.0), {args.invocations} invocations per condition, measure.repeats: auto")
    header = f"{'condition':<9} {'false passes':>12} {'false fails':>11} {'inconclusive':>12}"
    print(header + f" {'launches/run (median, max)':>27} {'others CPU (median)':>19} {'wall/invocation':>15}")
    for name, data in results.items():
        passes, fails = data["verdicts"]["false pass"], data["verdicts"]["false fail"]
        inconclusive = passes["inconclusive"] + fails["inconclusive"]
        print(
            f"{name:<9} {passes['pass']:>12} {fails['fail']:>11} {inconclusive:>12} "
            f"{statistics.median(data['launches']):>20g}, {max(data['launches'])} "
            f"{statistics.median(data['shares']):>19.0%} {statistics.median(data['walls']):>13.1f} s"
        )


if __name__ == "__main__":
    main()
