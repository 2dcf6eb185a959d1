"""How fast is `accel-run --validate`? Whole-process wall time, side by side with a plain script.

Measures, interleaved (A B A B ...) so machine noise hits both alike, the median wall time of:
  - accel-run --validate specs/day6.yaml            vs  plain_validate.py specs/day6.yaml
  - accel-run --validate <100 copies of day6.yaml>  vs  plain_validate.py <the same 100>
  - accel-run --validate <a spec whose matrix has 256 cells, and an expectation over them>
and prints medians and ratios. On a shared machine wall time waits for other processes too, so the
CPU time each process used (user + system) is printed beside it: it is what the targets mean
on an idle machine, less the time spent waiting for the disk. Targets: one file under 0.2 s, 100 files under 0.5 s, the
256-cell matrix under 0.3 s. Run: python benchmarks/validate_speed.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# day6's sections with a 2 x 4 x 4 x 4 x 2 matrix instead of its runs, and one expectation over the cells
# (every bf16 cell against its fp32 twin: 128 pairs, each checked like a written one).
MATRIX_256 = """\
name: matrix256
model: {kind: mlp, input_dim: 128, hidden: [256, 128], classes: 10}
data: {kind: synthetic-classification, samples: 10000, features: 128, classes: 10}
train: {epochs: 10, batch_size: 64, optimizer: {kind: adamw, lr: 0.001}, lr_schedule: cosine}
measure: {repeats: 1, warmup_steps: 5}
matrix:
  launch.mixed_precision: [no, bf16]
  train.batch_size: [8, 16, 32, 64]
  train.gradient_accumulation_steps: [1, 2, 4, 8]
  train.optimizer.lr: [0.001, 0.002, 0.005, 0.01]
  train.seed: [0, 1]
expect:
  - kind: ratio
    title: bf16 peak memory <= 0.7x fp32
    run: {launch.mixed_precision: bf16}
    baseline: {launch.mixed_precision: no}
    metric: peak_memory_mb
    at_most: 0.7
"""


def wall(argv: list[str]) -> float:
    return timed(argv)[0]


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        many = []
        for index in range(100):
            copy = Path(tmp) / f"spec{index:03}.yaml"
            shutil.copy(ROOT / "specs" / "day6.yaml", copy)
            many.append(str(copy))
        one = [str(ROOT / "specs" / "day6.yaml")]
        grid = Path(tmp) / "matrix256.yaml"
        grid.write_text(MATRIX_256)
        ours = [sys.executable, "-m", "runner", "--validate"]
        plain = [sys.executable, str(ROOT / "benchmarks" / "plain_validate.py")]
        cases = {
            "1 file": (ours + one, plain + one),
            "100 files": (ours + many, plain + many),
            "256 cells": (ours + [str(grid)], plain + [str(grid)]),
        }
        print(
            f"{'case':<10} {'accel-run':>12} {'plain script':>13} {'ratio':>7}   {'CPU time: accel-run':>20} "
            f"{'plain':>8}   (medians of {args.rounds} rounds)"
        )
        for name, (a, b) in cases.items():
            wall(a), wall(b)  # warm the file cache
            times_a, times_b = [], []
            for _ in range(args.rounds):
                times_a.append(timed(a))
                times_b.append(timed(b))
            ma, mb = (statistics.median(t[0] for t in times) for times in (times_a, times_b))
            ca, cb = (statistics.median(t[1] for t in times) for times in (times_a, times_b))
            print(
                f"{name:<10} {ma * 1000:>10.0f} ms {mb * 1000:>10.0f} ms {ma / mb:>7.2f}x   "
                f"{ca * 1000:>17.0f} ms {cb * 1000:>5.0f} ms"
            )
        bare = statistics.median(wall([sys.executable, "-c", "pass"]) for _ in range(args.rounds))
        print(f"(python start-up alone: {bare * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
