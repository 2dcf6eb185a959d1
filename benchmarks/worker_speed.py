"""Is accel-run's built-in worker as fast as a hand-written Accelerate script? And what does the runner add?

For each workload (the seed's train_simple, and a train_large-sized MLP of 31.5M parameters),
rounds alternate (A B A B ...) between
  A: `accel-run SPEC` with one run (built-in worker: in-memory batches, fused AdamW), and
  B: `accelerate launch handwritten_train.py` (DataLoader over a TensorDataset, default AdamW),
both 1 process on this machine with the same threads, sizes, steps and warm-up. Prints the
median steady-state samples/s of each and their ratio (>= 1.0: the worker is no slower).

Then the runner's own overhead: one invocation of a spec with 5 small runs, timed from outside,
split into the time between consecutive launches (the per-run overhead: recording one launch,
preparing the next), the start before the first launch (validation, machine probe) and the end
after the last (checks, summary, report, plots).

Run: python benchmarks/worker_speed.py [--rounds 3]
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

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = {
    # name: samples, features, hidden, classes, batch, steps, warmup
    "train_simple": (10000, 128, [256, 128], 10, 64, 600, 20),
    "train_large": (4096, 1024, [4096, 4096, 2560], 10, 128, 14, 2),
}
CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: 'NO'
mixed_precision: 'no'
num_processes: 1
num_machines: 1
machine_rank: 0
use_cpu: true
"""


def spec_text(
    name: str, samples: int, features: int, hidden: list[int], classes: int, batch: int, steps: int, warmup: int
) -> str:
    return (
        f"name: bench-{name.replace('_', '-')}\n"
        f"model: {{kind: mlp, input_dim: {features}, hidden: {hidden}, classes: {classes}}}\n"
        f"data: {{kind: synthetic-classification, samples: {samples}, features: {features}, classes: {classes}}}\n"
        f"train: {{max_steps: {steps}, batch_size: {batch}, lr_schedule: cosine, eval_samples: 0}}\n"
        f"measure: {{warmup_steps: {warmup}, attribution: false}}\n"
    )


def invoke(spec: Path, output: Path) -> tuple[dict, float, float]:  # type: ignore[type-arg]
    """(summary, start time, end time) of one accel-run invocation."""
    before = set(output.glob("*/*")) if output.exists() else set()
    began = time.time()
    subprocess.run(
        [sys.executable, "-m", "runner", str(spec), "--output", str(output), "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    ended = time.time()
    (folder,) = set(output.glob("*/*")) - before
    return json.loads((folder / "summary.json").read_text()), began, ended


def run_accel(spec: Path, output: Path) -> float:
    """samples/s of the one run of an accel-run invocation."""
    summary, _, _ = invoke(spec, output)
    (run,) = summary["runs"].values()
    return float(run["metrics"]["samples_per_s"])


def overhead(folder: Path) -> tuple[float, float, float]:
    """(median seconds between launches, seconds before the first, seconds after the last)."""
    spec = folder / "overhead.yaml"
    spec.write_text(
        spec_text("overhead", 2048, 16, [32], 4, 32, 40, 2) + "runs:\n" + "".join(f"  r{i}: {{}}\n" for i in range(5))
    )
    summary, began, ended = invoke(spec, folder / "overhead")
    launches = sorted((r["repeats"][0] for r in summary["runs"].values()), key=lambda launch: launch["started_at"])
    gaps = [b["started_at"] - (a["started_at"] + a["wall_s"]) for a, b in zip(launches, launches[1:], strict=False)]
    last = launches[-1]
    return statistics.median(gaps), launches[0]["started_at"] - began, ended - (last["started_at"] + last["wall_s"])


def run_handwritten(config: Path, threads: int, args: list[str]) -> float:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(config),
            "--num_cpu_threads_per_process",
            str(threads),
            str(ROOT / "benchmarks" / "handwritten_train.py"),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")} | {"ACCELERATE_USE_CPU": "true"},
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1])["samples_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=list(WORKLOADS), help="one workload")
    args = parser.parse_args()
    threads = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(CONFIG)
        print(f"{'workload':<13} {'accel-run':>14} {'hand-written':>14} {'ratio':>6}")
        for name, (samples, features, hidden, classes, batch, steps, warmup) in WORKLOADS.items():
            if args.only and name != args.only:
                continue
            spec = Path(tmp) / f"{name}.yaml"
            spec.write_text(spec_text(name, samples, features, hidden, classes, batch, steps, warmup))
            hand_args = [str(v) for v in (samples, features, ",".join(map(str, hidden)), classes, batch, steps, warmup)]
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(run_accel(spec, Path(tmp) / "results"))
                theirs.append(run_handwritten(config, threads, hand_args))
            a, b = statistics.median(ours), statistics.median(theirs)
            print(
                f"{name:<13} {a:>10,.0f} s/s {b:>10,.0f} s/s {a / b:>5.2f}x"
                f"   (samples/s, medians of {args.rounds}; "
                f"all: {[round(x) for x in ours]} vs {[round(x) for x in theirs]})"
            )
        between, start, end = overhead(Path(tmp))
        print(
            f"runner overhead: {between:.2f} s per run (between launches); once per invocation: "
            f"{start:.2f} s before the first launch (validation, machine probe), {end:.2f} s after the last "
            "(checks, summary, report, plots)"
        )


if __name__ == "__main__":
    main()
