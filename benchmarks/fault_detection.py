"""How fast does accel-run notice a fault and stop every process? Real launches, real faults.

Faults (injected with ACCEL_RUN_FAILPOINT into a 2-process CPU run, see runner/worker/failpoint.py):
  rank 1 SIGKILLed, rank 1 raises, rank 1 exits with code 3, rank 1 hangs (launch.timeout_s: 10),
rank 1 aborts at exit after finishing (kept, with a note), and from outside: Ctrl-C (SIGINT) to
accel-run, accel-run itself SIGKILLed. For each it prints the outcome, the seconds from the fault
to the end of the launch (or of accel-run, or of the last orphan), and whether any process was
left. Then the result-folder faults: a second session on a live folder, the folder deleted
mid-run, a truncated summary.json: the exit code and the one line the user reads.

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
train: {{max_steps: {steps}, batch_size: 16, eval_samples: 0}}
measure: {{warmup_steps: 2, attribution: false}}
launch: {{processes: 2, timeout_s: {timeout}, env: {{ACCEL_RUN_FAILPOINT: "{failpoint}"}}}}
"""


def plain_spec(steps: int) -> str:
    """The spec without a failpoint."""
    return SPEC.format(failpoint="", timeout=600, steps=steps).replace(', env: {ACCEL_RUN_FAILPOINT: ""}', "")


def leftovers(folder: Path) -> int:
    return sum(1 for p in psutil.process_iter(["cmdline"]) if str(folder) in " ".join(p.info["cmdline"] or []))


def injected(tmp: Path, label: str, failpoint: str, timeout: int = 600, steps: int = 100000) -> None:
    spec = tmp / f"{label}.yaml"
    spec.write_text(SPEC.format(failpoint=failpoint, timeout=timeout, steps=steps))
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
    spec.write_text(plain_spec(100000))
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


def folder_faults(tmp: Path) -> None:
    spec = tmp / "folder.yaml"
    spec.write_text(plain_spec(100000))
    out = tmp / "folder"
    command = [sys.executable, "-m", "runner", str(spec), "--output", str(out), "--no-progress"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not list(out.glob("*/*/main/heartbeat.rank1")):
        time.sleep(0.2)
    (folder,) = list(out.glob("*/*"))
    second = subprocess.run(
        [sys.executable, "-m", "runner", "--resume", str(folder)], cwd=ROOT, capture_output=True, text=True
    )
    print(f"{'second session':<22} exit {second.returncode:<7} {second.stderr.strip().splitlines()[-1][:100]}")
    sent = time.time()
    for path in sorted(folder.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    folder.rmdir()
    _, err = proc.communicate()
    line = err.strip().splitlines()[-1][:90]
    print(f"{'folder deleted':<22} exit {proc.returncode:<7} {time.time() - sent:>5.1f} s   {line}")
    small = tmp / "small.yaml"
    small.write_text(plain_spec(20))
    subprocess.run(
        command[:3] + [str(small), "--output", str(tmp / "trunc"), "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    (done,) = list((tmp / "trunc").glob("*/*"))
    text = (done / "summary.json").read_text()
    (done / "summary.json").write_text(text[: len(text) // 2])
    report = subprocess.run(
        [sys.executable, "-m", "runner", "--report", str(done)], cwd=ROOT, capture_output=True, text=True
    )
    rebuilt = "rebuilt it from the run folders" in report.stdout
    print(f"{'summary.json truncated':<22} exit {report.returncode:<7} rebuilt: {rebuilt}")


def main() -> None:
    print(f"{'fault':<22} {'outcome':<12} {'to end':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        injected(folder, "rank 1 SIGKILLed", "kill:20:1")
        injected(folder, "rank 1 raises", "raise:20:1")
        injected(folder, "rank 1 exits 3", "exit:20:1")
        injected(folder, "rank 1 hangs (10 s)", "hang:20:1", timeout=10)
        injected(folder, "rank 1 aborts at exit", "abort:end:1", timeout=60, steps=50)
        external(folder, "Ctrl-C to accel-run", signal.SIGINT)
        external(folder, "accel-run SIGKILLed", signal.SIGKILL)
        folder_faults(folder)


if __name__ == "__main__":
    main()
