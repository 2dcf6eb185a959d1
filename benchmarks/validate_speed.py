"""How fast is `accel-run --validate`? Whole-process wall time, side by side with a plain script.

Measures, interleaved (A B A B ...) so machine noise hits both alike, the median wall time of:
  - accel-run --validate specs/day6.yaml            vs  plain_validate.py specs/day6.yaml
  - accel-run --validate <100 copies of day6.yaml>  vs  plain_validate.py <the same 100>
and prints medians and ratios. Run: python benchmarks/validate_speed.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


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
        ours = [sys.executable, "-m", "runner", "--validate"]
        plain = [sys.executable, str(ROOT / "benchmarks" / "plain_validate.py")]
        cases = {
            "1 file": (ours + one, plain + one),
            "100 files": (ours + many, plain + many),
        }
        print(f"{'case':<10} {'accel-run':>12} {'plain script':>13} {'ratio':>7}   (median of {args.rounds} rounds)")
        for name, (a, b) in cases.items():
            wall(a), wall(b)  # warm the file cache
            times_a, times_b = [], []
            for _ in range(args.rounds):
                times_a.append(wall(a))
                times_b.append(wall(b))
            ma, mb = statistics.median(times_a), statistics.median(times_b)
            print(f"{name:<10} {ma * 1000:>10.0f} ms {mb * 1000:>10.0f} ms {ma / mb:>7.2f}x")
        bare = statistics.median(wall([sys.executable, "-c", "pass"]) for _ in range(args.rounds))
        print(f"(python start-up alone: {bare * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
