"""Record this folder's summary.json: a real session of spec.yaml, disturbed in round 2 and interrupted in round 4.

Run from the repository root: `.venv/bin/python tests/cases/summaries/interrupted/record.py OUTPUT`. It starts
`accel-run spec.yaml` and watches summary.json (rewritten after every launch): when round 1's five launches
are in, it starts two CPU-bound processes (a hog) and stops them, by their process ids, once round 2's are in;
when the second launch of round 4 starts, it sends SIGINT, as Ctrl-C does. Then copy the result's
summary.json and report.md here.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = 5  # launches per round
HOG = "while True: pass"


def launches(output: Path) -> int:
    """Launches recorded so far (ok or not) in the result under `output`."""
    for path in output.glob("interrupted/*/summary.json"):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            return -1  # being rewritten: look again
        return sum(len(run.get("repeats", [])) for run in summary["runs"].values())
    return 0


def main(output: Path) -> int:
    session = subprocess.Popen(
        [sys.executable, "-m", "runner", str(HERE / "spec.yaml"), "--output", str(output), "--no-progress"]
    )
    hogs: list[subprocess.Popen[bytes]] = []
    while session.poll() is None:
        done = launches(output)
        if done == RUNS and not hogs:
            hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(2)]
            print(f"record: hog started (pids {[h.pid for h in hogs]})", flush=True)
        if done == 2 * RUNS and hogs and hogs[0].poll() is None:
            for hog in hogs:
                hog.kill()
                hog.wait()
            print("record: hog stopped", flush=True)
        if done == 3 * RUNS + 1:
            time.sleep(1.0)  # the second launch of round 4 under way
            session.send_signal(signal.SIGINT)
            print("record: SIGINT sent", flush=True)
            break
        time.sleep(0.1)
    for hog in hogs:
        if hog.poll() is None:
            hog.kill()
            hog.wait()
    return session.wait()


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
