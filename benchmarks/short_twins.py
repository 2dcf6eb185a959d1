"""Short twins: do two identical runs whose declared training lasts about 0.3 s get both verdicts decided?

The situation of the H200 visit, made on a CPU: the seed's runs trained for 0.3-0.9 s, and with one
timed window per launch every speedup was inconclusive. Here two identical runs ("twins", true
speedup 1.0) of a tiny MLP train for about 0.3 s each, with the two expectations
`speedup >= 1.5` (must fail) and `speedup >= 0.67` (must pass), under the default
`measure.repeats: auto`. Each invocation prints its verdicts, the launches each run took and the
wall time; the summary says how many invocations decided both rightly within 2 launches per run.

Run it on an idle machine: python benchmarks/short_twins.py [--invocations 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
name: short-twins
model: {kind: mlp, input_dim: 32, hidden: [64], classes: 4}
data: {kind: synthetic-classification, samples: 4096, features: 32, classes: 4}
train: {epochs: 5, batch_size: 64, eval_samples: 512}
launch: {processes: 1, device: cpu, cpu_threads_per_process: 1}
runs:
  twin-a: {}
  twin-b: {}
expect:
  - {kind: speedup, title: must fail, run: twin-b, baseline: twin-a, at_least: 1.5}
  - {kind: speedup, title: must pass, run: twin-b, baseline: twin-a, at_least: 0.67}
"""
RIGHT = {"must fail": "fail", "must pass": "pass"}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invocations", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "short-twins.yaml"
        spec.write_text(SPEC)
        rows, walls, good = [], [], 0
        print("invocation  must fail     must pass     launches a/b  declared train s  timed s/launch  wall s")
        for index in range(1, args.invocations + 1):
            summary, wall = invoke(spec, Path(tmp) / "out")
            verdicts = {e["title"]: e["verdict"] for e in summary["expectations"]}
            runs = summary["runs"]
            launches = [len(runs[n]["repeats"]) for n in ("twin-a", "twin-b")]
            train = statistics.median(r["metrics"]["train_time_s"] for r in runs.values())
            timed = statistics.median(r["metrics"]["timed_time_s"] for r in runs.values())
            right = verdicts == RIGHT and max(launches) <= 2
            good += right
            walls.append(wall)
            rows.append(right)
            print(
                f"{index:>10}  {verdicts['must fail']:<12}  {verdicts['must pass']:<12}  "
                f"{launches[0]}/{launches[1]:<12}  {train:>16.2f}  {timed:>14.2f}  {wall:>6.1f}"
            )
            for name in ("twin-a", "twin-b"):  # why a run took more launches: the ones left out, and why
                for repeat, reason in (runs[name]["disturbance"].get("unfit_repeats") or {}).items():
                    print(f"{'':>10}  {name} repeat {repeat} unfit: {reason}")
        print(
            f"\n{good}/{args.invocations} invocations decided both verdicts rightly in at most 2 launches per run; "
            f"wall per invocation: median {statistics.median(walls):.1f} s (min {min(walls):.1f}, max {max(walls):.1f})"
        )
    return 0 if good == args.invocations else 1


if __name__ == "__main__":
    sys.exit(main())
