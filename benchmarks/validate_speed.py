"""How fast is `accel-run --validate`? Whole-process wall time, side by side with a plain script.

Measures, interleaved (A B A B ...) so machine noise hits both alike, the median wall time of:
  - accel-run --validate specs/day6.yaml            vs  plain_validate.py specs/day6.yaml
  - accel-run --validate <100 copies of day6.yaml>  vs  plain_validate.py <the same 100>
  - accel-run --validate <a spec whose matrix has 256 cells, and an expectation over them>
and prints medians and ratios. On a shared machine wall time waits for other processes too, so the
CPU time each process used (user + system) is printed beside it: it is what the targets mean
on an idle machine, less the time spent waiting for the disk. Targets: one file under 0.2 s, 100 files under 0.5 s, the
256-cell matrix under 0.3 s, and at most 1.3x the plain script for one file and for 256 cells.

--against REV adds accel-run as it was at a git revision (its runner/ exported to a temporary folder), interleaved
with today's, so a before/after comparison is one run on one machine. runner/'s bytecode is compiled first, as an
install does: under PYTHONDONTWRITEBYTECODE every run would otherwise compile runner/ from source, which the
20-line plain script does not. The floors printed last are what a validator costs before any of its own code
runs: with Pydantic's models at run time (no such validator starts faster), and with pydantic-core alone. The
load average (every process on the machine) is printed before and after.
Run: python benchmarks/validate_speed.py [--rounds 15] [--against main]
"""

from __future__ import annotations

import argparse
import compileall
import os
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


# What a validator costs before one line of it runs, each with the YAML library that gives locations
# (the plain script imports it too): Pydantic's models at run time, as --validate has today; and
# pydantic-core alone, as a validator generated from the models (their core schema, committed like the
# JSON Schema) would run. The second is the import floor of the design part 6 of the seams issue needs.
FLOORS = {
    "python start-up alone": "pass",
    "python + ruamel.yaml + pydantic + one model": (
        "import ruamel.yaml\nfrom pydantic import BaseModel\nclass M(BaseModel):\n    x: int\nM(x=1)\n"
    ),
    "python + ruamel.yaml + pydantic-core + one validator": (
        "import ruamel.yaml\nfrom pydantic_core import SchemaValidator\n"
        "SchemaValidator({'type': 'int'}).validate_python(1)\n"
    ),
}


def wall(argv: list[str], env: dict[str, str] | None = None) -> float:
    return timed(argv, env)[0]


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--against", metavar="REV", help="also time accel-run as it was at this git revision")
    args = parser.parse_args()
    compileall.compile_dir(ROOT / "runner", quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        then: dict[str, str] | None = None
        if args.against:
            old = Path(tmp) / "then"
            old.mkdir()
            archive = subprocess.run(
                ["git", "archive", args.against, "runner"], cwd=ROOT, capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            compileall.compile_dir(old / "runner", quiet=1)
            then = {**os.environ, "PYTHONPATH": str(old)}
        many = []
        for index in range(100):
            copy = Path(tmp) / f"spec{index:03}.yaml"
            shutil.copy(ROOT / "specs" / "day6.yaml", copy)
            many.append(str(copy))
        one = [str(ROOT / "specs" / "day6.yaml")]
        grid = Path(tmp) / "matrix256.yaml"
        grid.write_text(MATRIX_256)
        # -P: the current folder is not put on sys.path, so PYTHONPATH decides which runner/ is imported
        ours = [sys.executable, "-P", "-m", "runner", "--validate"]
        plain = [sys.executable, str(ROOT / "benchmarks" / "plain_validate.py")]
        cases = {
            "1 file": (ours + one, plain + one),
            "100 files": (ours + many, plain + many),
            "256 cells": (ours + [str(grid)], plain + [str(grid)]),
        }
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
        header = f"{'case':<10} {'accel-run':>12} {'plain script':>13} {'ratio':>7}"
        if then is not None:
            header += f"   {'at ' + args.against:>12} {'ratio':>7}"
        print(f"{header}   {'CPU time: accel-run':>20} {'plain':>8}   (medians of {args.rounds} rounds)")
        for name, (a, b) in cases.items():
            wall(a), wall(b)  # warm the file cache
            times_a, times_b, times_then = [], [], []
            for _ in range(args.rounds):
                times_a.append(timed(a))
                times_b.append(timed(b))
                if then is not None:
                    times_then.append(timed(a, then))
            ma, mb = (statistics.median(t[0] for t in times) for times in (times_a, times_b))
            ca, cb = (statistics.median(t[1] for t in times) for times in (times_a, times_b))
            line = f"{name:<10} {ma * 1000:>10.0f} ms {mb * 1000:>10.0f} ms {ma / mb:>7.2f}x"
            if then is not None:
                mt = statistics.median(t[0] for t in times_then)
                line += f"   {mt * 1000:>9.0f} ms {mt / mb:>7.2f}x"
            print(f"{line}   {ca * 1000:>17.0f} ms {cb * 1000:>5.0f} ms")
        floors: dict[str, list[float]] = {name: [] for name in FLOORS}
        reference = []
        for _ in range(args.rounds):  # interleaved too: each floor is a ratio to the plain script
            for name, code in FLOORS.items():
                floors[name].append(wall([sys.executable, "-c", code]))
            reference.append(wall(plain + one))
        mr = statistics.median(reference)
        print(f"floors, against the plain script on 1 file ({mr * 1000:.0f} ms):")
        for name, times in floors.items():
            mf = statistics.median(times)
            print(f"  {name:<54} {mf * 1000:>5.0f} ms {mf / mr:>6.2f}x")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
