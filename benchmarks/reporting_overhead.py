"""What runner.track costs a training loop: the same train_simple step with and without reporting, side by side.

One process, one Accelerator, two copies of the model: blocks of steps alternate between the bare
loop on one copy and, on the copy given to track.setup (its forward hook counts micro-batches), the
loop that also calls `track.step(samples=..., loss=loss)` (the order flips every round, so drift
and warm-up hit both arms alike). The optimizer step hook that counts optimizer steps is
process-wide, so both arms pay it: it is timed alone, on a tiny optimizer before and after
track.setup. Reported: the median step time of each arm, their ratio, the hook's cost, the cost
of one track.step call alone (no training around it), and the import cost of runner.track
(`python -X importtime`). The API is active (ACCEL_RUN_PLAN points at a plan in a temporary folder).
The calls alone report steps no optimizer took, so at the end track.contradicted() says so (and
finish() writes no metrics.json), as it would under accel-run.

usage: python benchmarks/reporting_overhead.py [--rounds 15] [--steps 40] [--threads 1]
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


def plan_in(folder: Path) -> Path:
    """A plan.json with just what runner.track reads."""
    plan = {
        "run": "bench",
        "repeat": 1,
        "config": {"measure": {"warmup_steps": 3}},
        "outputs": {"metrics": str(folder / "metrics.json"), "progress": str(folder / "progress.json")},
    }
    path = folder / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def import_cost_us() -> int:
    """Cumulative microseconds `import runner.track` takes in a fresh interpreter (its own line of -X importtime)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import runner.track"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for line in done.stderr.splitlines():
        fields = [f.strip() for f in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] == "runner.track":
            return int(fields[1])
    raise RuntimeError("runner.track not found in -X importtime output")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=40, help="steps per block")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="reporting-overhead-"))
    os.environ["ACCEL_RUN_PLAN"] = str(plan_in(folder))
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from torch import nn

    from runner import track

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True)
    tiny = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)

    def optimizer_step_us() -> float:
        steps = 20_000
        start = time.perf_counter()
        for _ in range(steps):
            tiny.step()
        return (time.perf_counter() - start) / steps * 1e6

    unhooked_us = optimizer_step_us()
    # train_simple: the seed's MLP 128 -> 256 -> 128 -> 10, batch 64, AdamW; one copy per arm
    pairs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
        pairs.append(accelerator.prepare(model, torch.optim.AdamW(model.parameters(), lr=1e-3)))
    inputs, labels = torch.randn(64, 128), torch.randint(0, 10, (64,))
    track.setup(accelerator, pairs[1][0])
    hooked_us = optimizer_step_us()

    def block(report: bool) -> float:
        model, optimizer = pairs[report]
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = F.cross_entropy(model(inputs), labels)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            if report:
                track.step(samples=64, loss=loss)
        return (time.perf_counter() - start) / args.steps

    block(False), block(True)  # warm-up of both arms
    bare, reported = [], []
    for round_ in range(args.rounds):
        for report in (False, True) if round_ % 2 == 0 else (True, False):
            (reported if report else bare).append(block(report))

    calls = 20_000  # the call alone, no training around it: with a float loss, and with a loss tensor
    start = time.perf_counter()
    for _ in range(calls):
        track.step(samples=64, loss=0.5)
    call_us = (time.perf_counter() - start) / calls * 1e6
    tensor_loss = F.cross_entropy(model(inputs), labels).detach()
    start = time.perf_counter()
    for _ in range(calls):
        track.step(samples=64, loss=tensor_loss)
    tensor_call_us = (time.perf_counter() - start) / calls * 1e6
    track.finish()
    checked = track.contradicted()

    bare_ms, reported_ms = statistics.median(bare) * 1e3, statistics.median(reported) * 1e3
    result = {
        "rounds": args.rounds,
        "steps_per_block": args.steps,
        "threads": args.threads,
        "bare_step_ms_median": round(bare_ms, 4),
        "reported_step_ms_median": round(reported_ms, 4),
        "ratio_reported_to_bare": round(reported_ms / bare_ms, 4),
        "overhead_us_per_step": round((reported_ms - bare_ms) * 1e3, 2),
        "optimizer_step_hook_us": round(hooked_us - unhooked_us, 3),
        "track_step_call_us_float_loss": round(call_us, 3),
        "track_step_call_us_tensor_loss": round(tensor_call_us, 3),
        "import_runner_track_us": import_cost_us(),
        "calls_alone_contradicted": checked.split(": ", 1)[1][:90] if checked else "",
        "metrics_json_written": (folder / "metrics.json").exists(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
