"""How does accel-run fare when things go wrong? Real launches, real faults; tried, survived, left.

Faults (injected with ACCEL_RUN_FAILPOINT into a 2-process CPU run, see runner/worker/failpoint.py):
  rank 1 SIGKILLed, rank 1 raises, rank 1 exits with code 3, rank 1 hangs (launch.timeout_s: 10),
rank 1 aborts at exit after finishing (kept, with a note), and from outside: Ctrl-C (SIGINT) to
accel-run, accel-run itself SIGKILLed. For each: the outcome, the seconds from the fault to the end
of the launch (or of accel-run, or of the last orphan), and the processes left. Then the result-folder
faults: a second session on a live folder, the folder deleted mid-run, a truncated summary.json, a
summary.json nested 200,000 deep, a run folder that is a symbolic link (--resume), a disk that fills
during a launch (a 2 MiB tmpfs; needs root to mount); a user script whose ranks start daemons; and on
the 2-node test cluster (scripts/test-cluster.sh start, SLURM_CONF set), a node whose slurmd stops
mid-job.

A fault is survived when accel-run did what the README promises (the outcome, the exit code, the
line the user reads, nothing lost); left counts the processes or SLURM jobs it left behind (the
benchmark stops them afterwards). The last line: tried, survived, left. A fault that cannot be tried
here (no root for the tmpfs, no cluster) is listed with the reason and not counted.

--root measures another checkout (a clone of an older commit, say): accel-run runs as
`python -m runner` with cwd and PYTHONPATH set to ROOT. About 6 minutes on 2 idle cores, 4 more with
the cluster.

Run: python benchmarks/fault_detection.py [--root PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass
class Row:
    """One fault: whether accel-run survived it (None: not tried here), what it left behind, what it said."""

    fault: str
    survived: bool | None
    left: int
    detail: str
    seconds: float | None = None

    def line(self) -> str:
        verdict = {True: "yes", False: "NO", None: "-"}[self.survived]
        taken = f"{self.seconds:6.1f} s" if self.seconds is not None else " " * 8
        return f"{self.fault:<26} {verdict:<9} {self.left:>4}  {taken}  {self.detail[:110]}"


class Runner:
    """`python -m runner` of the checkout under test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "PYTHONPATH": str(root)}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "runner", *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), cwd=self.root, env=self.env, capture_output=True, text=True)

    def start(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), cwd=self.root, env=self.env, text=True, **kwargs)


def plain_spec(steps: int) -> str:
    """The spec without a failpoint."""
    return SPEC.format(failpoint="", timeout=600, steps=steps).replace(', env: {ACCEL_RUN_FAILPOINT: ""}', "")


def leftovers(folder: Path) -> int:
    return sum(1 for p in psutil.process_iter(["cmdline"]) if str(folder) in " ".join(p.info["cmdline"] or []))


def only_result(out: Path) -> Path:
    (folder,) = [p for p in out.glob("*/*") if p.is_dir()]
    return folder


def summary_of(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "summary.json").read_text()))


def wait_for(predicate: Any, timeout_s: float = 180) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def injected(ar: Runner, tmp: Path, label: str, failpoint: str, expected: str, **spec: int) -> Row:
    path = tmp / f"{label.replace(' ', '_')}.yaml"
    path.write_text(SPEC.format(failpoint=failpoint, timeout=spec.get("timeout", 600), steps=spec.get("steps", 100000)))
    out = tmp / path.stem
    ar.run(str(path), "--output", str(out), "--no-progress")
    folder = only_result(out)
    run = summary_of(folder)["runs"]["main"]
    launch = run["repeats"][0]
    # the first launch that fired it (a run with repeats keeps each launch's logs in its own folder)
    stamps = [re.search(r"at t=([0-9.]+)", log.read_text()) for log in sorted((folder / "main").rglob("stderr.log"))]
    fired = next((float(stamp[1]) for stamp in stamps if stamp), None)
    left = leftovers(folder)
    detail = run.get("reason") or "; ".join(launch.get("notes", []))
    if fired is None:  # never seen here: say so rather than crash the table
        return Row(label, None, left, f"the fault did not fire in {len(stamps)} launch log(s): {detail}")
    return Row(
        label, run["status"] == expected and not left, left, detail, launch["started_at"] + launch["wall_s"] - fired
    )


def external(ar: Runner, tmp: Path, label: str, sig: signal.Signals) -> Row:
    spec = tmp / f"{sig.name}.yaml"
    spec.write_text(plain_spec(100000))
    out = tmp / sig.name
    proc = ar.start(
        str(spec), "--output", str(out), "--no-progress", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(lambda: bool(list(out.glob("*/*/main/heartbeat.rank1"))))
    time.sleep(2)
    family = psutil.Process(proc.pid).children(recursive=True)
    sent = time.time()
    proc.send_signal(sig)
    proc.wait()
    psutil.wait_procs(family, timeout=60)
    alive = sum(1 for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    status = summary_of(only_result(out))["runs"]["main"]["status"]
    expected = proc.returncode == 130 if sig == signal.SIGINT else status == "pending"
    return Row(label, expected and not alive, alive, f"{status}, exit code {proc.returncode}", time.time() - sent)


def folder_faults(ar: Runner, tmp: Path) -> list[Row]:
    rows = []
    spec = tmp / "folder.yaml"
    spec.write_text(plain_spec(100000))
    out = tmp / "folder"
    proc = ar.start(str(spec), "--output", str(out), "--no-progress", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: bool(list(out.glob("*/*/main/heartbeat.rank1"))))
    folder = only_result(out)
    second = ar.run("--resume", str(folder))
    line = second.stderr.strip().splitlines()[-1]
    rows.append(Row("second session", second.returncode == 2 and "is in use" in line, 0, line))
    sent = time.time()
    shutil.rmtree(folder)
    _, err = proc.communicate()
    line = err.strip().splitlines()[-1]
    rows.append(Row("folder deleted", proc.returncode == 3, leftovers(folder), line, time.time() - sent))
    small = tmp / "small.yaml"
    small.write_text(plain_spec(20))
    for label, damage in (
        ("summary.json truncated", lambda text: text[: len(text) // 2]),
        ("summary.json 200,000 deep", lambda text: "[" * 200_000 + "]" * 200_000),
    ):
        done = tmp / label.split()[1]
        session = ar.run(str(small), "--output", str(done), "--no-progress")
        result = only_result(done)
        (result / "summary.json").write_text(damage((result / "summary.json").read_text()))
        report = ar.run("--report", str(result))
        rebuilt = "rebuilt it from the run folders" in report.stdout
        said = f"rebuilt: {rebuilt}, exit {report.returncode} (the session's: {session.returncode})"
        said += f"; {report.stderr.strip().splitlines()[-1]}" if report.stderr.strip() else ""
        rows.append(Row(label, rebuilt and report.returncode == session.returncode, 0, said))
    return rows


def linked_run_folder(ar: Runner, tmp: Path) -> Row:
    """--resume of a result whose run folder is a symbolic link to precious files elsewhere."""
    import hashlib

    spec = tmp / "linked.yaml"
    spec.write_text(plain_spec(20))
    folder = tmp / "linked" / "faults" / "20260101T000000Z"
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(spec.read_text())
    recorded = {"sha256": hashlib.sha256(spec.read_bytes()).hexdigest(), "path": str(spec)}
    (folder / "summary.json").write_text(
        json.dumps({"format": 1, "status": "interrupted", "spec": recorded, "runs": {}})
    )
    target = tmp / "precious"
    target.mkdir()
    (target / "metrics.json").write_text("precious")
    (target / "stdout.log").write_text("precious")
    (folder / "main").symlink_to(target)
    done = ar.run("--resume", str(folder), "--no-progress")
    intact = sorted(p.name for p in target.iterdir()) == ["metrics.json", "stdout.log"] and all(
        (target / name).read_text() == "precious" for name in ("metrics.json", "stdout.log")
    )
    line = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
    return Row("symlinked run folder", done.returncode == 2 and intact, leftovers(target), f"intact: {intact}; {line}")


DAEMONS = """\
import os, sys, time
from accelerate import Accelerator
from runner import track

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        with open(f"{sys.argv[1]}.{os.environ['RANK']}", "w") as pid_file:
            pid_file.write(str(os.getpid()))
        while True:
            time.sleep(1)
    os._exit(0)
os.wait()
accelerator = Accelerator()
track.setup(accelerator)
track.step(samples=8, loss=1.0)
"""


def daemon_script(ar: Runner, tmp: Path) -> Row:
    """Each rank of a script run double-forks a setsid daemon at start."""
    work = tmp / "daemons"
    work.mkdir()
    (work / "script.py").write_text(DAEMONS)
    prefix = work / "daemon"
    (work / "spec.yaml").write_text(
        f"name: daemons\nscript: {{path: script.py, args: ['{prefix}']}}\nlaunch: {{device: cpu, processes: 2}}\n"
        "measure: {repeats: 1, warmup_steps: 0}\n"
    )
    ar.run(str(work / "spec.yaml"), "--output", str(work / "out"), "--no-progress")
    pids = [int(p.read_text()) for p in work.glob("daemon.*")]
    alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    launch = summary_of(only_result(work / "out"))["runs"]["main"]["repeats"][0]
    notes = "; ".join(launch.get("notes", [])) or "no note"
    return Row("daemon script", launch["status"] == "ok" and not alive, len(alive), f"{launch['status']}: {notes}")


def full_disk(ar: Runner, tmp: Path) -> Row:
    """A 2 MiB tmpfs filled by another program while a launch runs."""
    mount = tmp / "tmpfs"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        return Row("full disk", None, 0, f"not tried: cannot mount a tmpfs here ({mounted.stderr.strip()})")
    try:
        spec = tmp / "disk.yaml"
        spec.write_text(plain_spec(100000))
        proc = ar.start(
            str(spec), "--output", str(mount), "--no-progress", stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        wait_for(lambda: bool(list(mount.glob("*/*/main/heartbeat.rank1"))))
        with open(mount / "filler", "wb") as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass
        filled = time.time()
        proc.communicate()
        seconds = time.time() - filled
        folder = only_result(mount)
        summary = summary_of(folder)
        launch = summary["runs"]["main"]
        report = ar.run("--report", str(folder))
        told = "no space left on device" in launch.get("reason", "")
        survived = told and bool(summary.get("fault")) and report.returncode == proc.returncode == 3
        said = f"{launch['status']}: {launch.get('reason') or '(no reason)'}; --report exit {report.returncode}"
        return Row("full disk", survived, leftovers(folder), said, seconds)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


LOST = """\
name: lost
model: {kind: mlp, input_dim: 32, hidden: [64], classes: 4}
data: {kind: synthetic-classification, samples: 2048, features: 32, classes: 4}
train: {max_steps: 600, batch_size: 16, eval_samples: 0}
measure: {repeats: 1, warmup_steps: 2, min_duration_s: 0.05, max_disturbance: 1.0, attribution: false}
engine: {kind: slurm, nodes: 2, cpus_per_node: 1, time: "00:10:00"}
launch: {processes: 2}
"""


def lost_node(ar: Runner, tmp: Path) -> Row:
    """n2's slurmd stopped while a 2-node job runs (the test cluster of scripts/test-cluster.sh)."""
    conf = os.environ.get("SLURM_CONF", "")
    cluster = Path(conf).parent
    answer = subprocess.run(["sinfo", "-h", "-N", "-r", "-o", "%N"], capture_output=True, text=True) if conf else None
    if answer is None or answer.returncode != 0 or len(set(answer.stdout.split())) < 2:
        return Row("lost node (SLURM)", None, 0, "not tried: no 2-node test cluster (scripts/test-cluster.sh start)")
    spec = tmp / "lost.yaml"
    spec.write_text(LOST)
    out = tmp / "lost"
    proc = ar.start(str(spec), "--output", str(out), "--no-progress", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: bool(list(out.glob("*/*/main/heartbeat.rank1"))))
        os.kill(int((cluster / "n2.started.pid").read_text()), signal.SIGTERM)
        stopped = time.time()
        try:
            proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        seconds = time.time() - stopped
    finally:
        env = {**os.environ, "ACCEL_RUN_CLUSTER_DIR": str(cluster)}
        subprocess.run([str(ar.root / "scripts" / "test-cluster.sh"), "start"], env=env, capture_output=True)
    launch = summary_of(only_result(out))["runs"]["main"]["repeats"][0]
    wait_for(lambda: not _jobs("accel-run.lost"), 90)
    left = len(_jobs("accel-run.lost"))
    said = f"{launch['status']}: {'; '.join(launch.get('notes', [])) or launch.get('reason') or 'no note'}"
    return Row("lost node (SLURM)", launch["status"] == "ok" and proc.returncode == 0, left, said, seconds)


def _jobs(name: str) -> list[str]:
    done = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True)
    return [line for line in done.stdout.splitlines() if name in line]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    args = parser.parse_args(argv)
    ar = Runner(args.root.resolve())
    print(f"{'fault':<26} {'survived':<9} {'left':>4}  {'to end':>8}  what accel-run said")
    rows: list[Row] = []

    def show(found: Row | list[Row]) -> None:
        for row in found if isinstance(found, list) else [found]:
            rows.append(row)
            print(row.line(), flush=True)

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        show(injected(ar, tmp, "rank 1 SIGKILLed", "kill:20:1", "failed"))
        show(injected(ar, tmp, "rank 1 raises", "raise:20:1", "failed"))
        show(injected(ar, tmp, "rank 1 exits 3", "exit:20:1", "failed"))
        show(injected(ar, tmp, "rank 1 hangs (10 s)", "hang:20:1", "timeout", timeout=10))
        show(injected(ar, tmp, "rank 1 aborts at exit", "abort:end:1", "ok", timeout=60, steps=50))
        show(external(ar, tmp, "Ctrl-C to accel-run", signal.SIGINT))
        show(external(ar, tmp, "accel-run SIGKILLed", signal.SIGKILL))
        show(folder_faults(ar, tmp))
        show(linked_run_folder(ar, tmp))
        show(daemon_script(ar, tmp))
        show(full_disk(ar, tmp))
        show(lost_node(ar, tmp))
    tried = [row for row in rows if row.survived is not None]
    survived = sum(1 for row in tried if row.survived)
    left = sum(row.left for row in tried)
    print(
        f"\ntried {len(tried)}, survived {survived}, left {left} process(es) or job(s) behind"
        + (
            f"; not tried here: {', '.join(row.fault for row in rows if row.survived is None)}"
            if len(tried) < len(rows)
            else ""
        )
    )


if __name__ == "__main__":
    main()
