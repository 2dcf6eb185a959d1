"""Shared helpers: the repository root, a tiny valid spec, running the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TINY_SPEC = """\
name: tiny
model: {kind: mlp, input_dim: 16, hidden: [32], classes: 4}
data: {kind: synthetic-classification, samples: 512, features: 16, classes: 4}
train: {epochs: 2, batch_size: 32}
"""


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`python -m runner ARGS` in a fresh process, as a user would run it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_in_terminal(*args: str, timeout: float = 300) -> tuple[int, str]:
    """`python -m runner ARGS` with stdout and stderr on a pseudo-terminal (reporting 0x0, as a bare
    pty does); returns the exit code and everything it drew."""
    import pty

    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", *args], cwd=ROOT, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    code = proc.wait(timeout=timeout)
    os.close(leader)
    return code, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


# CI sets this where node is (.ci/run): the editor tests must run there, so a missing server fails them.
REQUIRE_EDITOR = "ACCEL_RUN_REQUIRE_EDITOR"


def editor_tool_missing(reason: str) -> None:
    """Skip a test whose editor tool is not installed, saying why in one line; fail instead where CI requires it."""
    if os.environ.get(REQUIRE_EDITOR) == "1":
        pytest.fail(f"{reason} ({REQUIRE_EDITOR}=1: the editor tests must run here)")
    pytest.skip(reason)


@pytest.fixture
def write_spec(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write YAML text to a spec file under tmp_path and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
