"""How long do the plots take? Every picture for a 20-run result, target under 2 s.

Builds a 20-run summary from the recorded tests/cases/summaries/three-models/summary.json (its
runs copied under new names and spread over four models, its expectations repeated for them),
then times write_plots into a fresh folder, in process after one warm-up (matplotlib imported),
and as a whole fresh `python -c` process (import included). Prints medians.
Run: python benchmarks/plots_speed.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.report.plots import write_plots  # noqa: E402

RECORDED = ROOT / "tests" / "cases" / "summaries" / "three-models" / "summary.json"


def twenty_runs() -> dict[str, Any]:
    """20 runs over 4 models, with 4 timing expectations per model (16) beside the recorded others."""
    base = json.loads(RECORDED.read_text())
    ok = [n for n, r in base["runs"].items() if r.get("metrics")]
    runs: dict[str, Any] = {}
    expectations = [e for e in base["expectations"] if e["kind"] not in ("speedup", "ratio")]
    timing = [e for e in base["expectations"] if e["kind"] in ("speedup", "ratio")]
    for model in range(4):
        names = {}
        for k in range(5):
            source = ok[(model * 5 + k) % len(ok)]
            run = copy.deepcopy(base["runs"][source])
            run["metrics"]["params"] = 10_000 * (model + 1)
            name = f"m{model}-{source}"
            runs[name] = run
            names[source] = name
        for e in timing[:4]:
            e = copy.deepcopy(e)
            e["title"] = f"m{model}: {e['title']}"
            e["runs"] = [names.get(r, next(iter(names.values()))) for r in e["runs"]]
            expectations.append(e)
    return {**base, "runs": runs, "expectations": expectations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    summary = twenty_runs()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "summary.json"
        path.write_text(json.dumps(summary))
        written, _ = write_plots(summary, Path(tmp))  # warm-up: imports, font cache
        warm, cpu = [], []
        for index in range(args.rounds):
            folder = Path(tmp) / f"warm{index}"
            folder.mkdir()
            start, start_cpu = time.perf_counter(), time.process_time()
            write_plots(summary, folder)
            warm.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        code = (
            "import json, sys, pathlib; from runner.report.plots import write_plots; "
            "write_plots(json.loads(pathlib.Path(sys.argv[1]).read_text()), pathlib.Path(sys.argv[2]))"
        )
        cold = []
        for index in range(args.rounds):
            folder = Path(tmp) / f"cold{index}"
            folder.mkdir()
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code, str(path), str(folder)], cwd=ROOT, check=True)
            cold.append(time.perf_counter() - start)
        bare = statistics.median(
            _wall([sys.executable, "-c", "import matplotlib.figure"]) for _ in range(max(3, args.rounds // 2))
        )
    runs, expectations = len(summary["runs"]), len(summary["expectations"])
    print(f"{runs} runs, {expectations} expectations -> {', '.join(written)}")
    print(
        f"in process (matplotlib imported): median {statistics.median(warm):.2f} s wall, "
        f"{statistics.median(cpu):.2f} s CPU, of {args.rounds} rounds (wall includes other load on the machine)"
    )
    print(f"fresh process (python + imports + plots): median {statistics.median(cold):.2f} s")
    print(f"(python + import matplotlib.figure alone: {bare:.2f} s)")


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
