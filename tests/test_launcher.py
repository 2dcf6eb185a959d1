"""The fork server launcher (launch.launcher: fork) against `accelerate launch`: the same ranks, cheaper.

Real launches of a user script that writes down, on every rank, what its process sees: the
environment, threads, argv, the Accelerator's state. The two launchers must give the same, but for
what differs from launch to launch whoever starts it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, run_cli
from runner.engines.warm import ForkServer, startup_differences
from runner.plan.compile import server_env

FACTS = """\
import json, os, sys
import torch
from accelerate import Accelerator
from runner import track

accelerator = Accelerator()
model = accelerator.prepare(torch.nn.Linear(4, 2))
track.setup(accelerator, model)
for _ in range(3):
    track.step(samples=4)
facts = {
    "env": dict(os.environ),
    "threads": torch.get_num_threads(),
    "argv": sys.argv,
    "path0": sys.path[0],
    "cwd": os.getcwd(),
    "state": [str(accelerator.distributed_type), accelerator.num_processes, accelerator.mixed_precision],
    "device": str(accelerator.device),
    "cuda_initialized": torch.cuda.is_initialized(),
    "seed": torch.initial_seed(),
}
folder = os.path.dirname(os.environ["ACCEL_RUN_PLAN"])
with open(os.path.join(folder, f"facts-{os.environ.get('RANK', '0')}.json"), "w") as out:
    json.dump(facts, out)
"""

SPEC = """\
name: launchers
script: {path: facts.py, args: [--flag, x]}
launch: {device: cpu}
measure: {repeats: 1, warmup_steps: 1, max_disturbance: 1.0}
runs:
  fork-1: {launch: {launcher: fork}}
  accelerate-1: {launch: {launcher: accelerate}}
  fork-2: {launch: {launcher: fork, processes: 2}}
  accelerate-2: {launch: {launcher: accelerate, processes: 2}}
"""

# What differs between any two launches, whoever starts them: when it started, its own folder, the
# free port picked for it, torch elastic's error file (a fresh temporary path per launch), and the marker every
# process of a launch inherits (its folder; engines.reap).
PER_LAUNCH = {"ACCEL_RUN_LAUNCH", "ACCEL_RUN_LAUNCH_T0", "ACCEL_RUN_PLAN", "MASTER_PORT", "TORCHELASTIC_ERROR_FILE"}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("launchers")
    (folder / "facts.py").write_text(FACTS, encoding="utf-8")
    (folder / "spec.yaml").write_text(SPEC, encoding="utf-8")
    done = run_cli(str(folder / "spec.yaml"), "--output", str(folder / "out"), "--no-progress")
    assert done.returncode == 0, done.stderr
    (summary,) = (folder / "out").glob("launchers/*/summary.json")
    return summary.parent


def facts(result: Path, run: str, rank: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((result / run / f"facts-{rank}.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.slow
@pytest.mark.parametrize(("processes", "rank"), [(1, 0), (2, 0), (2, 1)])
def test_a_forked_rank_sees_what_an_accelerate_launch_rank_sees(result: Path, processes: int, rank: int) -> None:
    forked, launched = facts(result, f"fork-{processes}", rank), facts(result, f"accelerate-{processes}", rank)
    env_f, env_l = forked.pop("env"), launched.pop("env")
    differing = {name for name in {*env_f, *env_l} if env_f.get(name) != env_l.get(name)}
    assert differing <= PER_LAUNCH
    assert env_f["OMP_NUM_THREADS"] == env_l["OMP_NUM_THREADS"]
    seed_f, seed_l = forked.pop("seed"), launched.pop("seed")
    assert seed_f != seed_l  # each process seeds torch anew, a forked one too
    assert forked == launched
    assert forked["cuda_initialized"] is False


@pytest.mark.slow
def test_the_summary_says_which_launcher_started_each_launch(result: Path) -> None:
    summary = json.loads((result / "summary.json").read_text(encoding="utf-8"))
    started_by = {name: run["repeats"][0]["launcher"] for name, run in summary["runs"].items()}
    assert started_by == {
        "fork-1": "fork",
        "accelerate-1": "accelerate",
        "fork-2": "fork",
        "accelerate-2": "accelerate",
    }


def test_a_variable_only_a_new_process_reads_sends_the_launch_to_accelerate_launch() -> None:
    server = {"PATH": "/bin", "PYTHONPATH": "/a", "OMP_NUM_THREADS": "2"}
    assert startup_differences(server, {**server, "OMP_NUM_THREADS": "1", "NCCL_DEBUG": "INFO"}) == []
    assert startup_differences(server, {**server, "LD_PRELOAD": "x.so", "PYTHONHASHSEED": "0"}) == [
        "LD_PRELOAD",
        "PYTHONHASHSEED",
    ]
    assert startup_differences(server, {"PATH": "/bin", "OMP_NUM_THREADS": "2"}) == ["PYTHONPATH"]


@pytest.mark.slow
def test_a_launch_env_that_needs_a_new_process_gets_accelerate_launch_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "facts.py").write_text(FACTS, encoding="utf-8")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(
            """\
            name: hashseed
            script: {path: facts.py}
            launch: {device: cpu, env: {PYTHONHASHSEED: "7"}}
            measure: {repeats: 1, warmup_steps: 1, max_disturbance: 1.0}
            """
        ),
        encoding="utf-8",
    )
    done = run_cli(str(spec), "--output", str(tmp_path / "out"), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert (
        "note: its environment sets PYTHONHASHSEED, which only a new process reads: this launch used accelerate "
        "launch instead of the fork server"
    ) in done.stderr
    (summary,) = (tmp_path / "out").glob("hashseed/*/summary.json")
    launch = json.loads(summary.read_text(encoding="utf-8"))["runs"]["main"]["repeats"][0]
    assert launch["launcher"] == "accelerate"


@pytest.mark.slow
def test_the_fork_server_leaves_when_its_session_does() -> None:
    server = ForkServer(server_env(os.environ))
    ready = server.wait_ready()
    assert ready["preload_s"] > 0
    pid = int(ready["pid"])
    assert server.proc is not None and server.proc.stdin is not None
    server.proc.stdin.close()  # what a session that dies (SIGKILL) leaves the server with
    deadline = time.monotonic() + 10
    while server.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.proc.poll() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_importing_the_fork_server_module_from_the_session_costs_nothing() -> None:
    code = "import sys, runner.engines.warm, runner.engines.local; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
