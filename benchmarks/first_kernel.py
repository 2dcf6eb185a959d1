"""Time to the first kernel: from a launch's start to its first device operation done, with each launcher.

A one-process script run whose first act is one operation on its device (a CUDA kernel on a GPU,
synchronised; a tensor operation on a CPU), timed from accel-run's launch time
(ACCEL_RUN_LAUNCH_T0), with `launch.launcher: fork` and `accelerate`, interleaved in one session
(fork, accelerate, fork, accelerate ...). The session's first launch starts the fork server and is
reported on its own ("server-start"): it pays the server's imports once per session. Prints each
launcher's median and range and their ratio.

Run: python benchmarks/first_kernel.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """\
import json, os, time
import torch
device = "cuda" if torch.cuda.is_available() else "cpu"
torch.ones(1, device=device).add_(1)
if device == "cuda":
    torch.cuda.synchronize()
first = time.time()
from accelerate import Accelerator
from runner import track
accelerator = Accelerator()
model = accelerator.prepare(torch.nn.Linear(4, 2))
track.setup(accelerator, model)
track.step(samples=1)
folder = os.path.dirname(os.environ["ACCEL_RUN_PLAN"])
with open(os.path.join(folder, "first.json"), "w") as out:
    json.dump({"seconds": first - float(os.environ["ACCEL_RUN_LAUNCH_T0"]), "device": device}, out)
"""


def spec_text(repeats: int) -> str:
    return f"""\
name: first-kernel
script: {{path: first.py}}
measure: {{repeats: {repeats}, warmup_steps: 0, attribution: false, max_disturbance: 1.0}}
runs:
  server-start: {{launch: {{launcher: fork}}, measure: {{repeats: 1}}}}
  fork: {{launch: {{launcher: fork}}}}
  accelerate: {{launch: {{launcher: accelerate}}}}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "first.py").write_text(SCRIPT)
        (folder / "first-kernel.yaml").write_text(spec_text(args.repeats))
        subprocess.run(
            [sys.executable, "-m", "runner", str(folder / "first-kernel.yaml"), "--output", str(folder / "out")],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        (result,) = (folder / "out" / "first-kernel").iterdir()
        medians = {}
        for launcher in ("server-start", "fork", "accelerate"):
            found = [json.loads(p.read_text()) for p in sorted((result / launcher).rglob("first.json"))]
            if not found:
                print(f"{launcher}: no launch finished (see {result / launcher})")
                return 1
            seconds = [f["seconds"] for f in found]
            medians[launcher] = statistics.median(seconds)
            print(
                f"{launcher:<12} launch to first {found[0]['device']} operation: median {medians[launcher]:.2f} s "
                f"(min {min(seconds):.2f}, max {max(seconds):.2f}, n={len(seconds)})"
            )
        print(f"accelerate / fork: {medians['accelerate'] / medians['fork']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
