"""Stage 5, execute: nothing a launch starts is left behind, and its logs stay a readable size. Real launches."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import run_cli
from runner.engines.logcap import _CappedFile

DAEMONS = """\
import os, sys, time
from accelerate import Accelerator
from runner import track

rank = os.environ["RANK"]
if os.fork() == 0:  # at once, before the tree is ever sampled: fork, a new session, fork again
    os.setsid()
    if os.fork() == 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        with open(f"{sys.argv[1]}.{rank}", "w") as pid_file:
            pid_file.write(str(os.getpid()))
        if rank == "0":  # and one that starts itself again without the launch's environment
            os.execve("/bin/sleep", ["sleep", "3600"], {})
        while True:
            time.sleep(1)
    os._exit(0)
os.wait()
accelerator = Accelerator()
track.setup(accelerator)
for _ in range(3):
    track.step(samples=8, loss=1.0)
"""


def run_script(
    tmp_path: Path, script: str, args: list[str], processes: int = 2, launcher: str = "fork"
) -> tuple[int, str, dict[str, Any]]:
    (tmp_path / "script.py").write_text(textwrap.dedent(script))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"name: execute\nscript: {{path: script.py, args: {json.dumps(args)}}}\n"
        f"launch: {{device: cpu, processes: {processes}, launcher: {launcher}}}\n"
        "measure: {repeats: 1, warmup_steps: 0}\n"
    )
    done = run_cli(str(spec), "--output", str(tmp_path / "out"), "--no-progress")
    (folder,) = [p for p in (tmp_path / "out").glob("*/*") if p.is_dir()]
    return done.returncode, done.stderr, json.loads((folder / "summary.json").read_text())


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["fork", "accelerate"])
def test_daemons_a_script_starts_end_with_its_launch_and_are_counted(tmp_path: Path, launcher: str) -> None:
    """The probe: each rank double-forked a setsid daemon at start; the run ended ok, with no note, and the
    daemons ran on. (Forked by the fork server, a daemon also holds torch elastic's pipes: the launch would
    never end while it lived.)"""
    pid_files = tmp_path / "daemon"
    try:
        code, err, summary = run_script(tmp_path, DAEMONS, [str(pid_files)], launcher=launcher)
        pids = [int((tmp_path / f"daemon.{rank}").read_text()) for rank in (0, 1)]
        assert code in (0, 1), err  # 1: an expectation-free run may be inconclusive; never a failed run
        launch = summary["runs"]["main"]["repeats"][0]
        assert launch["status"] == "ok", launch["reason"]
        assert [pid for pid in pids if running(pid)] == []
        assert launch["notes"] == ["2 process(es) outlived the launcher and were stopped"]
    finally:
        for path in tmp_path.glob("daemon.*"):
            try:
                os.kill(int(path.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


LOUD = """\
import os, sys
from accelerate import Accelerator
from runner import track

accelerator = Accelerator()
track.setup(accelerator)
rank = accelerator.process_index
out = sys.stdout.buffer
out.write(f"first line of rank {rank}\\n".encode())
line = f"rank {rank} says this again and again {'.' * 80}\\n".encode()
chunk = line * ((1 << 20) // len(line))
for _ in range(int(sys.argv[1])):
    out.write(chunk)
out.write(f"last line of rank {rank}\\n".encode())
out.flush()
track.step(samples=8, loss=1.0)
"""


@pytest.mark.slow
def test_a_launch_that_prints_without_end_keeps_the_head_and_tail_of_its_log_and_says_so(tmp_path: Path) -> None:
    """The probe: 100 MiB per rank gave a 200 MiB stdout.log, with no cap and no note. Here 2 x 12 MiB."""
    code, err, summary = run_script(tmp_path, LOUD, ["12"])
    launch = summary["runs"]["main"]["repeats"][0]
    assert launch["status"] == "ok", launch["reason"]
    log = (tmp_path / "out").glob("*/*/main/stdout.log").__next__().read_bytes()
    assert len(log) <= 16 << 20
    (marker,) = re.findall(rb"\n\[accel-run: .* of output left out here; .*\]\n", log)
    assert re.fullmatch(
        rb"\n\[accel-run: \d+\.\d MiB of output left out here; stdout.log is capped at 16.0 MiB: its first "
        rb"\d\.\d MiB and its last \d+\.\d MiB are kept\]\n",
        marker,
    )
    head, tail = log.split(marker)
    assert b"first line of rank" in head
    assert b"last line of rank 0\n" in tail and b"last line of rank 1\n" in tail
    (note,) = [n for n in launch["notes"] if n.startswith("stdout.log was capped")]
    left_out = float(re.search(rb"(\d+\.\d) MiB of output left out", marker)[1])  # type: ignore[index]
    assert note == (
        f"stdout.log was capped at 16.0 MiB: {left_out:.1f} MiB of output in its middle were left out (its first and "
        "last lines are kept; a line in the file marks the place)"
    )


def test_a_capped_log_keeps_whole_lines_at_both_ends_and_counts_what_it_left_out(tmp_path: Path) -> None:
    path = tmp_path / "stdout.log"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    log = _CappedFile(fd, "stdout.log", cap=4096, head=1024)
    lines = [f"line {i:05d}\n".encode() for i in range(3000)]
    for line in lines:
        log.write(line)
    log.compact()
    os.close(fd)
    text = path.read_bytes()
    head, marker, tail = re.split(rb"(\n\[accel-run: .*\]\n)", text)
    assert len(text) <= 4096
    assert head.endswith(b"\n") and head == b"".join(lines[: head.count(b"\n")])  # whole lines, from the first
    assert tail.endswith(lines[-1]) and tail == b"".join(lines[len(lines) - tail.count(b"\n") :])
    assert log.left_out == len(b"".join(lines)) - len(head) - len(tail)


def detached_sleeper(env: dict[str, str]) -> int:
    """A process that left its parent's tree at once (setsid, double fork), as a daemon does; its PID."""
    read_end, write_end = os.pipe()
    code = textwrap.dedent(
        """\
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.write(int(sys.argv[1]), str(os.getpid()).encode())
                time.sleep(60)
            os._exit(0)
        os.wait()
        """
    )
    subprocess.run([sys.executable, "-c", code, str(write_end)], env=env, pass_fds=(write_end,), check=True)
    os.close(write_end)
    pid = int(os.read(read_end, 32))
    os.close(read_end)
    return pid


def test_the_marker_finds_a_process_that_detached_at_once(tmp_path: Path) -> None:
    from runner.engines.reap import marked

    marker = f"ACCEL_RUN_LAUNCH={tmp_path}"
    pid = detached_sleeper({**os.environ, "ACCEL_RUN_LAUNCH": str(tmp_path)})
    try:
        assert pid in marked(marker.encode())
        assert pid not in marked(f"ACCEL_RUN_LAUNCH={tmp_path}/other".encode())
    finally:
        os.kill(pid, signal.SIGKILL)


def test_a_cgroup_of_its_own_ends_every_member_at_once() -> None:
    from runner.engines.reap import LaunchCgroup

    cgroup = LaunchCgroup.create(f"accel-run-test.{os.getpid()}")
    if cgroup is None:
        pytest.skip("no writable cgroup v2 here (not root, no delegated scope): reap falls back on the marker")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        assert cgroup.adopt(sleeper.pid)
        assert cgroup.pids() == [sleeper.pid]
        assert cgroup.kill()
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
    finally:
        sleeper.kill()
        sleeper.wait()
        for _ in range(100):
            if cgroup.remove():
                break
            time.sleep(0.05)
    assert not cgroup.path.exists()


def test_a_killed_sessions_empty_cgroup_is_removed_by_the_next_launch() -> None:
    from runner.engines.reap import CGROUP_PREFIX, LaunchCgroup

    probe = LaunchCgroup.create(f"accel-run-test.{os.getpid()}")
    if probe is None:
        pytest.skip("no writable cgroup v2 here (not root, no delegated scope)")
    probe.remove()
    dead = subprocess.Popen(["true"])
    dead.wait()  # a PID no process has now: a session that was SIGKILLed
    stale = probe.path.parent / f"{CGROUP_PREFIX}{dead.pid}.1"
    stale.mkdir()
    fresh = LaunchCgroup.create(f"accel-run-test.{os.getpid()}.2")
    assert fresh is not None
    assert not stale.exists()
    fresh.remove()
