"""The log excerpt of a failed launch: the failing rank's first real error, not the echoes of it.

The cases under tests/cases/logs/ are real stderr.log files of 2-process CPU launches (and one
1-process launch) failed with ACCEL_RUN_FAILPOINT, each beside the excerpt it must give.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.engines.logs import first_error

CASES = Path(__file__).parent / "cases" / "logs"
NAMES = sorted(p.name for p in CASES.iterdir() if p.is_dir())


def stderr_of(name: str) -> str:
    return (CASES / name / "stderr.log").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_golden_excerpts(name: str) -> None:
    assert first_error(stderr_of(name)) + "\n" == (CASES / name / "expected.txt").read_text()


def test_the_raising_rank_is_shown_not_the_peer_that_lost_it_nor_torchrun() -> None:
    excerpt = first_error(stderr_of("rank1-raises"))
    lines = excerpt.splitlines()
    assert lines[0] == "[rank1]: Traceback (most recent call last):"
    assert lines[-1] == "[rank1]: RuntimeError: injected failure at step 3 (ACCEL_RUN_FAILPOINT)"
    for echo in ("Connection closed by peer", "ChildFailedError", "Root Cause", "[rank0]", "closing signal"):
        assert echo not in excerpt


def test_the_order_of_the_ranks_tracebacks_does_not_matter() -> None:
    # The peer's "Connection closed by peer" may reach the log first; torchrun's root cause decides.
    text = stderr_of("rank1-raises").splitlines()
    rank0 = [line for line in text if line.startswith("[rank0]:")]
    rank1 = [line for line in text if line.startswith("[rank1]:")]
    rest = [line for line in text if not line.startswith(("[rank0]:", "[rank1]:"))]
    swapped = "\n".join(rest[:1] + rank0 + rank1 + rest[1:])
    assert first_error(swapped) == first_error(stderr_of("rank1-raises"))


def test_when_both_ranks_raise_the_root_cause_rank_is_shown() -> None:
    text = stderr_of("both-ranks-raise")
    assert text.index("[rank0]: Traceback") < text.index("[rank1]: Traceback")  # rank 0 wrote first
    assert "  rank      : 1 (local_rank: 1)" in text.split("Root Cause")[1]  # torchrun saw rank 1 fail first
    assert first_error(text).splitlines()[0] == "[rank1]: Traceback (most recent call last):"


def test_a_rank_killed_without_a_traceback_is_named_by_its_exit() -> None:
    assert first_error(stderr_of("rank1-killed")).splitlines()[1:] == [
        "Root Cause (first observed failure):",
        "  rank      : 1 (local_rank: 1)",
        "  exitcode  : -9 (pid: 3818)  (SIGKILL)",
    ]


def test_a_launch_stopped_by_accel_run_does_not_show_the_launchers_signal_exception() -> None:
    excerpt = first_error(stderr_of("hang-stopped-by-time-limit"))
    assert "SignalException" not in excerpt
    assert "death signal" not in excerpt
    assert excerpt == "accel-run failpoint: hang at step 3 on rank 1 at t=1795846342.185"


def test_the_one_process_launcher_is_a_consequence_too() -> None:
    excerpt = first_error(stderr_of("one-process-raises"))
    assert excerpt.splitlines()[-1] == "RuntimeError: injected failure at step 3 (ACCEL_RUN_FAILPOINT)"
    assert "CalledProcessError" not in excerpt


def test_only_consequences_left_give_their_exception_lines() -> None:
    # Ctrl-C: accel-run stopped torchrun's agent (SIGTERM), which stopped the ranks; nothing else was written.
    text = stderr_of("interrupted-by-ctrl-c")
    assert text.count("\n") > 30
    assert (
        first_error(text)
        == "torch.distributed.elastic.multiprocessing.api.SignalException: Process 10122 got signal: 15"
    )


def test_a_fatal_line_without_a_traceback() -> None:
    text = (
        "some warning\n"
        "accel-run worker: declared 2 processes but this process sees a world of 1 (NO); the launch did not "
        "start a real process group\n"
        "E1128 06:11:01.471000 3271 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: 1)\n"
    )
    assert first_error(text) == text.splitlines()[1]


def test_chained_exceptions_stay_together_and_long_ones_are_bounded() -> None:
    frames = [f'  File "/x.py", line {i}, in f{i}\n    f{i + 1}()' for i in range(40)]
    text = "\n".join(
        [
            "Traceback (most recent call last):",
            '  File "/a.py", line 1, in <module>',
            "KeyError: 'lr'",
            "",
            "During handling of the above exception, another exception occurred:",
            "",
            "Traceback (most recent call last):",
            *frames,
            "ValueError: no learning rate",
            "Traceback (most recent call last):",
            '  File "/launcher.py", line 1, in <module>',
            "subprocess.CalledProcessError: Command '['python']' returned non-zero exit status 1.",
        ]
    )
    excerpt = first_error(text, lines=12).splitlines()
    assert len(excerpt) == 12
    assert excerpt[:3] == [
        "Traceback (most recent call last):",
        '  File "/a.py", line 1, in <module>',
        "KeyError: 'lr'",
    ]
    assert excerpt[3] == "[... 77 lines left out ...]"
    assert excerpt[-1] == "ValueError: no learning rate"


def test_nothing_recognisable_gives_the_last_lines() -> None:
    text = "\n".join(f"line {i}" for i in range(50))
    assert first_error(text, lines=3) == "line 47\nline 48\nline 49"
    assert first_error("") == ""
