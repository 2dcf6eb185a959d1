"""The SLURM engine end to end, through a real 2-node cluster (scripts/test-cluster.sh start).

`make test-slurm` runs them (`make test` leaves them to it: a cluster is not every machine's).
Skipped, with the reason, where no cluster answers; CI sets ACCEL_RUN_REQUIRE_SLURM=1 so a cluster
that failed to start fails these tests instead. They never pass without one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

SPEC = """\
name: on-slurm
model: {kind: mlp, input_dim: 32, hidden: [64], classes: 4}
data: {kind: synthetic-classification, samples: 2048, features: 32, classes: 4}
train: {epochs: 1, batch_size: 32, max_steps: null}
measure: {repeats: 1, warmup_steps: 2, min_duration_s: 0.05, max_disturbance: 1.0}
engine: {kind: slurm, nodes: 2, cpus_per_node: 1, time: "00:10:00"}
runs:
  two-nodes:
    launch: {processes: 2}
    train: {batch_size: 16}
  one-node:
    engine: {nodes: 1}
expect:
  - {kind: close, run: two-nodes, baseline: one-node, metric: optimizer_steps, abs_tol: 0}
  - {kind: bound, run: two-nodes, metric: accuracy, at_least: 0.3}
"""


def _cluster_problem() -> str | None:
    """Why no test cluster can be used here, or None."""
    if shutil.which("sbatch") is None:
        return "SLURM clients are not installed (scripts/test-cluster.sh install)"
    try:
        done = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 20 s"
    nodes = {line.split()[0] for line in done.stdout.splitlines() if line.split()[1:] in (["idle"], ["mix"], ["alloc"])}
    if done.returncode != 0 or len(nodes) < 2:
        answer = (done.stderr or done.stdout).strip() or "no nodes"
        return f"no 2-node SLURM cluster answers (scripts/test-cluster.sh start; sinfo: {answer})"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    problem = _cluster_problem()
    if problem is not None:
        if os.environ.get("ACCEL_RUN_REQUIRE_SLURM") == "1":
            pytest.fail(f"ACCEL_RUN_REQUIRE_SLURM=1 but {problem}")
        pytest.skip(problem)


def _accel_run(*args: str, cwd: Path = ROOT) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args, "--no-progress"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _summary(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "summary.json").read_text())


def _result(output: Path) -> Path:
    (folder,) = (output / "on-slurm").iterdir()
    return folder


def _wait_for_job(output: Path, run: str, *, state: str | None = None, timeout: float = 120) -> str:
    """The job id of `run`'s first launch once summary.json records it (and squeue shows `state`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            launches = _summary(_result(output))["runs"][run]["repeats"]
        except (OSError, ValueError, KeyError):
            launches = []
        job = next((launch["job_id"] for launch in launches if launch.get("job_id")), "")
        if job and (state is None or _squeue(job) == state):
            return str(job)
        time.sleep(0.2)
    raise AssertionError(f"no job of run {run!r} reached {state or 'submission'} in {timeout} s")


def _squeue(job: str) -> str:
    done = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True)
    return done.stdout.strip()


def _our_jobs() -> list[str]:
    done = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True)
    return [line for line in done.stdout.splitlines() if "accel-run.on-slurm" in line]


def _write(tmp_path: Path, text: str = SPEC) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    return spec


def test_a_two_node_run_forms_one_group_across_two_nodes(cluster: None, tmp_path: Path) -> None:
    # a relative --output (as the default results/ is): the jobs, which start in their run folders, still find it
    proc = _accel_run("spec.yaml", "--output", "out", cwd=_write(tmp_path).parent)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    summary = _summary(_result(tmp_path / "out"))
    two = summary["runs"]["two-nodes"]["repeats"][0]
    assert two["status"] == "ok"
    assert two["observed"]["world_size"] == 2
    assert sorted(two["observed"]["machine_ranks"]) == [0, 1]
    assert sorted(set(two["observed"]["nodes"])) == ["n1", "n2"]
    assert summary["runs"]["two-nodes"]["declared"]["machines"] == 2
    one = summary["runs"]["one-node"]["repeats"][0]
    assert one["observed"]["world_size"] == 1 and one["observed"]["nodes"] == ["n1"]
    assert two["job_id"] and one["job_id"] and two["job_id"] != one["job_id"]
    assert [v["verdict"] for v in summary["expectations"]] == ["pass", "pass"]
    assert summary["environment"]["engine"] == "slurm"
    # the terminal showed the queue states
    assert f"SLURM job {two['job_id']}: submitted" in output
    assert f"SLURM job {two['job_id']}: running on n[1-2]" in output
    assert (_result(tmp_path / "out") / "two-nodes" / "job.sbatch").is_file()


HANGING = SPEC.replace(
    "  one-node:\n    engine: {nodes: 1}\n",
    "  one-node:\n    engine: {nodes: 1}\n  hangs:\n    engine: {nodes: 1}\n"
    "    launch: {env: {ACCEL_RUN_FAILPOINT: 'hang:3'}}\n"
    "  raises:\n    engine: {nodes: 1}\n    launch: {env: {ACCEL_RUN_FAILPOINT: 'raise:3'}}\n",
).replace("expect:\n", "baseline: one-node\nexpect:\n")


def test_a_job_cancelled_or_failed_fails_its_run_with_slurms_state_and_reason(cluster: None, tmp_path: Path) -> None:
    spec = _write(tmp_path, HANGING)
    proc = _accel_run(str(spec), "--output", str(tmp_path / "out"), "--only", "one-node,hangs,raises")
    job = _wait_for_job(tmp_path / "out", "hangs", state="RUNNING")
    time.sleep(3)  # well into the hang
    subprocess.run(["scancel", job], check=True)
    output, _ = proc.communicate(timeout=120)
    summary = _summary(_result(tmp_path / "out"))
    hangs = summary["runs"]["hangs"]["repeats"][0]
    assert hangs["status"] == "failed"
    assert hangs["reason"].startswith(f"SLURM job {job} ended CANCELLED"), hangs["reason"]
    assert "CANCELLED" in hangs["log_tail"]  # slurmstepd's own line, from the job's output
    assert summary["runs"]["one-node"]["repeats"][0]["status"] == "ok"
    raises = summary["runs"]["raises"]["repeats"][0]
    assert raises["status"] == "failed"
    assert raises["reason"].startswith(f"SLURM job {raises['job_id']} ended FAILED"), raises["reason"]
    assert raises["reason"].endswith("RuntimeError: injected failure at step 3 (ACCEL_RUN_FAILPOINT)")
    assert proc.returncode == 3, output


SLOW = SPEC.replace('time: "00:10:00"}', 'time: "00:10:00", setup: ["sleep 4"]}')


# --begin holds a job in the queue (pending, reason BeginTime) for a few seconds
QUEUED = SPEC.replace('time: "00:10:00"}', 'time: "00:10:00", sbatch_args: ["--begin=now+5"]}')


# queued: the killed session had one run; running: it had another still to submit
@pytest.mark.parametrize(
    ("text", "state", "runs"),
    [(QUEUED, "PENDING", "two-nodes"), (SLOW, "RUNNING", "two-nodes,one-node")],
    ids=["queued", "running"],
)
def test_a_killed_session_resumes_by_reattaching_to_its_jobs(
    cluster: None, tmp_path: Path, text: str, state: str, runs: str
) -> None:
    spec = _write(tmp_path, text)
    proc = _accel_run(str(spec), "--output", str(tmp_path / "out"), "--only", runs)
    job = _wait_for_job(tmp_path / "out", "two-nodes", state=state)
    os.killpg(proc.pid, signal.SIGKILL)  # accel-run dies; its job does not depend on it
    output, _ = proc.communicate()
    assert _squeue(job) == state
    if state == "PENDING":
        assert f"SLURM job {job}: pending (BeginTime)" in output
    folder = _result(tmp_path / "out")
    resumed = _accel_run("--resume", str(folder))
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert "re-attaching to 1 SLURM job(s) submitted before" in output
    assert f"SLURM job {job}: attached" in output
    summary = _summary(folder)
    assert summary["runs"]["two-nodes"]["repeats"][0]["job_id"] == job  # not resubmitted
    attached = summary["runs"]["two-nodes"]["repeats"][0]
    assert attached["wall_s"] >= 4 and attached["queue_s"] is not None  # the whole job, by SLURM's account
    assert summary["runs"]["two-nodes"]["repeats"][0]["status"] == "ok"
    if "one-node" in runs:  # not submitted before the kill: submitted now, and only it
        assert summary["runs"]["one-node"]["repeats"][0]["status"] == "ok"
        assert output.count(": submitted") == 1
    else:
        assert ": submitted" not in output


def test_a_job_that_ended_while_accel_run_was_away_is_collected_not_resubmitted(cluster: None, tmp_path: Path) -> None:
    spec = _write(tmp_path, SLOW)
    proc = _accel_run(str(spec), "--output", str(tmp_path / "out"), "--only", "one-node")
    job = _wait_for_job(tmp_path / "out", "one-node", state="RUNNING")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 120
    while _squeue(job) and time.monotonic() < deadline:
        time.sleep(0.5)
    folder = _result(tmp_path / "out")
    resumed = _accel_run("--resume", str(folder))
    output, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, output
    launch = _summary(folder)["runs"]["one-node"]["repeats"][0]
    assert (launch["status"], launch["job_id"]) == ("ok", job)
    assert ": submitted" not in output
    assert launch["wall_s"] >= 4 and launch["queue_s"] is not None  # SLURM's own account (setup sleeps 4 s)


def test_ctrl_c_cancels_the_job_and_exits_130(cluster: None, tmp_path: Path) -> None:
    spec = _write(tmp_path, SLOW)
    proc = _accel_run(str(spec), "--output", str(tmp_path / "out"))
    job = _wait_for_job(tmp_path / "out", "two-nodes", state="RUNNING")
    os.kill(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=150)
    assert proc.returncode == 130, output
    assert _squeue(job) == ""
    assert _our_jobs() == []
    launch = _summary(_result(tmp_path / "out"))["runs"]["two-nodes"]["repeats"][0]
    assert launch["status"] == "interrupted"
    assert launch["reason"] == f"interrupted by Ctrl-C; job {job} was cancelled"


REFUSED = SPEC.replace(
    "  one-node:\n    engine: {nodes: 1}\n",
    "  one-node:\n    engine: {nodes: 1}\n"
    "  no-partition:\n    engine: {nodes: 1, partition: nosuchpartition}\n"
    "  no-log:\n    engine: {nodes: 1, sbatch_args: ['--error=/nonexistent/folder/stderr.log']}\n",
).replace("expect:\n", "baseline: one-node\nexpect:\n")


def test_a_refused_job_and_a_job_whose_log_is_never_written_say_why(cluster: None, tmp_path: Path) -> None:
    spec = _write(tmp_path, REFUSED)
    proc = _accel_run(str(spec), "--output", str(tmp_path / "out"), "--only", "no-partition,no-log")
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, output
    runs = _summary(_result(tmp_path / "out"))["runs"]
    refused = runs["no-partition"]["repeats"][0]
    assert (refused["status"], refused["job_id"]) == ("failed", "")
    assert refused["reason"] == (
        "sbatch refused the job: sbatch: error: Batch job submission failed: Invalid partition name specified"
    )
    no_log = runs["no-log"]["repeats"][0]
    folder = _result(tmp_path / "out") / "no-log"
    assert no_log["status"] == "failed"
    assert no_log["reason"].startswith(f"SLURM job {no_log['job_id']} ended FAILED")
    assert no_log["reason"].endswith(
        f"and its log {folder}/stderr.log was never written: is the result folder on a file system the nodes "
        "share? (see scontrol show job / the slurmd log)"
    )


# --- a node that stops answering, a controller that is down: every wait bounded, told, and Ctrl-C ends it ------

LONG = SPEC.replace("train: {epochs: 1, batch_size: 32, max_steps: null}", "train: {max_steps: 600, batch_size: 16}")


def _cluster_dir() -> Path:
    """The test cluster's folder (scripts/test-cluster.sh): where SLURM_CONF is, with the daemons' PID files."""
    return Path(os.environ.get("SLURM_CONF", "/tmp/accel-run-cluster/slurm.conf")).parent


def _stop_daemon(name: str) -> None:
    """SIGTERM one daemon of the test cluster (n1, n2 or ctld), by the PID its start recorded."""
    os.kill(int((_cluster_dir() / f"{name}.started.pid").read_text()), signal.SIGTERM)


def _restart_cluster(proc: subprocess.Popen[str] | None = None, *, jobs_gone: bool = True) -> None:
    """Start what was stopped (the script starts only daemons that are not running; it waits until both nodes
    respond) and let the jobs it held go. A session still running (a failed test) is killed first."""
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    env = {**os.environ, "ACCEL_RUN_CLUSTER_DIR": str(_cluster_dir())}
    subprocess.run([str(ROOT / "scripts" / "test-cluster.sh"), "start"], env=env, check=True, capture_output=True)
    deadline = time.monotonic() + 90
    while jobs_gone and _our_jobs() and time.monotonic() < deadline:
        time.sleep(1)


def _lose_n2_once_both_ranks_run(output: Path) -> str:
    """Stop n2's slurmd once rank 1 (on n2) runs: the job's work goes on, but SLURM cannot release it."""
    job = _wait_for_job(output, "two-nodes", state="RUNNING")
    deadline = time.monotonic() + 120
    while not list(output.glob("on-slurm/*/two-nodes/heartbeat.rank1")) and time.monotonic() < deadline:
        time.sleep(0.2)
    _stop_daemon("n2")
    return job


def test_a_lost_node_does_not_hang_the_session_nor_lose_the_finished_result(cluster: None, tmp_path: Path) -> None:
    """The probe: n2's slurmd stopped mid-job; the work finished, but the job stayed COMPLETING and accel-run
    waited without bound or word. Now it says what it waits for, naming the node, and collects."""
    proc = _accel_run(str(_write(tmp_path, LONG)), "--output", str(tmp_path / "out"), "--only", "two-nodes")
    try:
        job = _lose_n2_once_both_ranks_run(tmp_path / "out")
        output, _ = proc.communicate(timeout=240)
    finally:
        _restart_cluster(proc)
    assert proc.returncode == 0, output
    assert "every rank finished, but SLURM has not released the job after 1" in output
    assert "held by n2: " in output and "s more (collected then, released or not)" in output
    launch = _summary(_result(tmp_path / "out"))["runs"]["two-nodes"]["repeats"][0]
    assert (launch["status"], launch["job_id"]) == ("ok", job)
    (note,) = launch["notes"]
    assert note.startswith(f"SLURM had not released job {job} 3")
    assert "(COMPLETING, held by n2: " in note
    assert note.endswith("; its metrics.json was collected and the measurements are kept")


def test_one_ctrl_c_ends_a_session_a_lost_node_holds_and_resume_collects_the_metrics(
    cluster: None, tmp_path: Path
) -> None:
    """The probe: the first Ctrl-C had no visible effect, the second recorded the run interrupted, and --resume,
    with the node back, resubmitted the job instead of collecting the metrics on disk."""
    proc = _accel_run(str(_write(tmp_path, LONG)), "--output", str(tmp_path / "out"), "--only", "two-nodes")
    try:
        job = _lose_n2_once_both_ranks_run(tmp_path / "out")
        # COMPLETING comes once the job's 600 steps are done: on 2 loaded cores that took over the default
        # 120 s once (a helper's run), so this wait is bounded by the work, not by a guess at its speed
        _wait_for_job(tmp_path / "out", "two-nodes", state="COMPLETING", timeout=400)
        pressed = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
        ended = time.monotonic() - pressed
    finally:
        _restart_cluster(proc)
    assert proc.returncode == 130, output
    assert ended < 45, f"one Ctrl-C took {ended:.0f} s to end the session"
    assert f"SLURM job {job}: Ctrl-C: scancel sent; waiting up to 30 s for the job to leave the queue" in output
    folder = _result(tmp_path / "out")
    launch = _summary(folder)["runs"]["two-nodes"]["repeats"][0]
    assert launch["status"] == "interrupted"
    assert launch["reason"].startswith(
        f"interrupted by Ctrl-C; job {job} was cancelled (it is still COMPLETING after 30 s, held by n2: "
    )
    resumed = _accel_run("--resume", str(folder))
    output, _ = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, output
    assert "re-attaching to 1 SLURM job(s) submitted before" in output and ": submitted" not in output
    collected = _summary(folder)["runs"]["two-nodes"]["repeats"][0]
    assert (collected["status"], collected["job_id"]) == ("ok", job)


def test_a_controller_that_does_not_answer_is_said_and_waited_for(cluster: None, tmp_path: Path) -> None:
    """The probe: with slurmctld down, accel-run waited 25 s without saying that squeue did not answer."""
    proc = _accel_run(str(_write(tmp_path, LONG)), "--output", str(tmp_path / "out"), "--only", "one-node")
    try:
        job = _wait_for_job(tmp_path / "out", "one-node", state="RUNNING")
        deadline = time.monotonic() + 120
        while not list((tmp_path / "out").glob("on-slurm/*/one-node/heartbeat.rank0")) and time.monotonic() < deadline:
            time.sleep(0.2)  # the job's step runs: a step started while the controller is down would wait for it
        _stop_daemon("ctld")
        stopped = time.monotonic()
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "does not answer" in line:
                break
        told = time.monotonic() - stopped
    finally:
        _restart_cluster(jobs_gone=False)  # the session goes on: its job ran on without the controller
    try:
        output = "".join(lines) + proc.communicate(timeout=180)[0]
    finally:
        _restart_cluster(proc)
    assert told < 15, f"told after {told:.0f} s"
    assert f"SLURM job {job}: squeue does not answer (" in output
    assert "the job runs on: retrying for up to 120 s" in output
    assert f"SLURM job {job}: squeue answers again" in output
    assert proc.returncode == 0, output
    assert _summary(_result(tmp_path / "out"))["runs"]["one-node"]["repeats"][0]["status"] == "ok"
