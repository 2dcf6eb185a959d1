"""How fast does accel-run notice a fault and stop every process? Real launches, real faults.

Faults (injected with ACCEL_RUN_FAILPOINT into a 2-process CPU run, see runner/worker/failpoint.py):
  rank 1 SIGKILLed, rank 1 raises, rank 1 exits with code 3, rank 1 hangs (launch.timeout_s: 10),
and from outside: Ctrl-C (SIGINT) to accel-run, and accel-run itself SIGKILLed. For each it
prints the outcome, the seconds from the fault to the end of the launch (or of accel-run, or of
the last orphan), and whether any process was left.

Run: python benchmarks/fault_detection.py
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
SPEC = """\
name: faults
model: {{kind: mlp, input_dim: 16, hidden: [64], classes: 4}}
data: {{kind: synthetic-classification, samples: 4096, features: 16, classes: 4}}
train: {{max_steps: 100000, batch_size: 16, eval_samples: 0}}
measure: {{warmup_steps: 2, attribution: false}}
launch: {{processes: 2, timeout_s: {timeout}, env: {{ACCEL_RUN_FAILPOINT: "{failpoint}"}}}}
"""


def leftovers(folder: Path) -> int:
    return sum(1 for p in psutil.process_iter(["cmdline"]) if str(folder) in " ".join(p.info["cmdline"] or []))


def injected(tmp: Path, label: str, failpoint: str, timeout: int = 600) -> None:
    spec = tmp / f"{label}.yaml"
    spec.write_text(SPEC.format(failpoint=failpoint, timeout=timeout))
    out = tmp / label
    subprocess.run(
        [sys.executable, "-m", "runner", str(spec), "--output", str(out), "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    (folder,) = list(out.glob("*/*"))
    run = json.loads((folder / "summary.json").read_text())["runs"]["main"]
    launch = run["repeats"][0]
    fired = float(re.search(r"at t=([0-9.]+)", (folder / "main" / "stderr.log").read_text())[1])
    ended = launch["started_at"] + launch["wall_s"]
    print(f"{label:<22} {run['status']:<12} {ended - fired:>6.1f} s   left: {leftovers(folder)}   {run['reason'][:70]}")


def external(tmp: Path, label: str, sig: signal.Signals) -> None:
    spec = tmp / f"{label}.yaml"
    spec.write_text(SPEC.format(failpoint="", timeout=600).replace(', env: {ACCEL_RUN_FAILPOINT: ""}', ""))
    out = tmp / label
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", str(spec), "--output", str(out), "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not list(out.glob("*/*/main/heartbeat.rank1")):
        time.sleep(0.2)
    time.sleep(2)
    family = psutil.Process(proc.pid).children(recursive=True)
    sent = time.time()
    proc.send_signal(sig)
    proc.wait()
    psutil.wait_procs(family, timeout=60)
    gone = time.time() - sent
    alive = sum(1 for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    (folder,) = list(out.glob("*/*"))
    status = json.loads((folder / "summary.json").read_text())["runs"]["main"]["status"]
    print(f"{label:<22} {status:<12} {gone:>6.1f} s   left: {alive}   exit code {proc.returncode}")


def main() -> None:
    print(f"{'fault':<22} {'outcome':<12} {'to end':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        injected(folder, "rank 1 SIGKILLed", "kill:20:1")
        injected(folder, "rank 1 raises", "raise:20:1")
        injected(folder, "rank 1 exits 3", "exit:20:1")
        injected(folder, "rank 1 hangs (10 s)", "hang:20:1", timeout=10)
        external(folder, "Ctrl-C to accel-run", signal.SIGINT)
        external(folder, "accel-run SIGKILLed", signal.SIGKILL)


if __name__ == "__main__":
    main()
