"""What does going through SLURM cost? The test cluster vs the local engine, launch by launch, in one session.

One spec, four runs of the same tiny training (a 32-wide MLP, 40 optimizer steps, no eval), every
launch a repeat (default 5) interleaved by accel-run itself, so both engines see the same machine:
  local-1p   the local engine, 1 process          slurm-1n   SLURM, 1 node x 1 process
  local-2p   the local engine, 2 processes        slurm-2n   SLURM, 2 nodes x 1 process
For each launch, from summary.json and the run folder:
  submit -> first step     the worker's first training step (metrics.first_step_at) minus the moment
                           accel-run started the launch (local: Popen; SLURM: just before sbatch);
                           for SLURM it includes the queue, the job's start and srun;
  job end -> recorded      accel-run recording the result (recorded_at) minus the last rank's done
                           marker (written as the worker finishes): how soon the end is noticed.
Printed: the median of each per run, and the SLURM / local ratio of the medians for each pair.
Needs the test cluster (scripts/test-cluster.sh start; SLURM_CONF set). About 3 minutes.

Run: python benchmarks/slurm_overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPEC = """\
name: slurm-overhead
model: {{kind: mlp, input_dim: 32, hidden: [32], classes: 4}}
data: {{kind: synthetic-classification, samples: 4096, features: 32, classes: 4}}
train: {{max_steps: 40, batch_size: 16, eval_samples: 0}}
measure: {{repeats: {repeats}, warmup_steps: 2, attribution: false, max_disturbance: 1.0, min_duration_s: 0.01}}
launch: {{device: cpu, cpu_threads_per_process: 1, timeout_s: 300}}
engine: {{kind: slurm, cpus_per_node: 1, time: "00:10:00"}}
runs:
  local-1p: {{engine: {{kind: local}}}}
  slurm-1n: {{}}
  local-2p: {{engine: {{kind: local}}, launch: {{processes: 2}}}}
  slurm-2n: {{engine: {{nodes: 2}}, launch: {{processes: 2}}}}
"""
PAIRS = (("local-1p", "slurm-1n"), ("local-2p", "slurm-2n"))


def launch_times(folder: Path, launch: dict[str, Any]) -> tuple[float, float] | None:
    """(submit -> first step, job end -> recorded) of one launch, or None if it did not finish."""
    if launch["status"] != "ok":
        return None
    first = launch["metrics"].get("first_step_at")
    markers = list((folder / launch["directory"]).glob("done.rank*"))
    if first is None or not markers:
        return None
    ended = max(marker.stat().st_mtime for marker in markers)
    return first - launch["started_at"], launch["recorded_at"] - ended


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(SPEC.format(repeats=args.repeats))
        done = subprocess.run(
            [sys.executable, "-m", "runner", str(spec), "--output", tmp, "--no-progress"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
        )
        summaries = list(Path(tmp).glob("slurm-overhead/*/summary.json"))
        if not summaries:
            print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
            return 1
        folder = summaries[0].parent
        summary = json.loads(summaries[0].read_text())
        medians: dict[str, tuple[float, float, int]] = {}
        for name, run in summary["runs"].items():
            times = [t for t in (launch_times(folder, launch) for launch in run["repeats"]) if t is not None]
            if times:
                medians[name] = (
                    statistics.median(t[0] for t in times),
                    statistics.median(t[1] for t in times),
                    len(times),
                )
    print(f"{args.repeats} launches per run, interleaved; medians in seconds\n")
    print(f"{'run':<10} {'n':>2} {'submit->first step':>19} {'job end->recorded':>18}")
    for name, (start, end, n) in medians.items():
        print(f"{name:<10} {n:>2} {start:>19.2f} {end:>18.2f}")
    print("\nSLURM / local (ratio of the medians)")
    for local, slurm in PAIRS:
        if local in medians and slurm in medians:
            start = medians[slurm][0] / medians[local][0]
            end = medians[slurm][1] / medians[local][1]
            print(f"{slurm} / {local}: submit->first step {start:.2f}x, job end->recorded {end:.2f}x")
    return 0 if len(medians) == 4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
