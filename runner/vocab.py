"""The words every stage shares: statuses, verdicts, precision names, launch file and variable names.

A leaf module (standard library only), so the worker, the verdicts and the report can learn a
name without importing the compiler, the validation stack or the process layer.
"""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    """How a launch (and a run) ended."""

    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"
    PENDING = "pending"
    INCOMPLETE = "incomplete"  # a run: the session ended (Ctrl-C) after some of its planned repeats were ok


class Outcome(enum.StrEnum):
    """An expectation's verdict."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"  # the measurement cannot carry a pass or a fail; the message says why
    ERROR = "error"  # a run it needs did not finish: never silently skipped
    SKIPPED = "skipped"  # a run it needs was left out with --only: shown, not counted


# Accelerate's mixed_precision values, and what a person reads and the layers compute in.
PRECISION_NAMES = {"no": "fp32", "fp16": "fp16", "bf16": "bf16"}
COMPUTE_DTYPES = {"no": "torch.float32", "fp16": "torch.float16", "bf16": "torch.bfloat16"}


def precision_name(mixed_precision: object) -> str:
    """fp32, fp16 or bf16 (Accelerate says 'no' for fp32); an unknown value as it is."""
    return PRECISION_NAMES.get(str(mixed_precision), str(mixed_precision))


# Files of one launch folder (<result>/<run>/ or <result>/<run>/repeat-<k>/).
CONFIG_FILE = "accelerate_config.yaml"
PLAN_FILE = "plan.json"
COMMAND_FILE = "command.txt"
METRICS_FILE = "metrics.json"
PROGRESS_FILE = "progress.json"
STDOUT_LOG = "stdout.log"
STDERR_LOG = "stderr.log"
HEARTBEAT_PREFIX = "heartbeat.rank"
DONE_PREFIX = "done.rank"  # written by each rank once its work is finished (metrics durable on the main rank)

# Files of a result folder (<output>/<spec>/<timestamp>/).
SUMMARY_FILE = "summary.json"
SPEC_COPY = "spec.yaml"
SETS_FILE = "sets.json"  # the --set options a result was started with, beside spec.yaml (for a rebuild)
REPORT_FILE = "report.md"
LOCK_FILE = "session.lock"  # held (flock) by the session that owns the result folder
RESERVE_FILE = "session.reserve"  # disk space a session holds so a full disk cannot keep it from saving why

# Environment variables between the runner and its workers.
LAUNCH_T0_VAR = "ACCEL_RUN_LAUNCH_T0"  # wall-clock time of the launch, for start-up time
RUNNER_PID_VAR = "ACCEL_RUN_RUNNER_PID"  # workers exit when this process is gone (no orphans)
LAUNCH_MARK_VAR = "ACCEL_RUN_LAUNCH"  # the launch's folder: every process of a launch inherits it (engines.reap)
FAILPOINT_VAR = "ACCEL_RUN_FAILPOINT"  # fault injection for accel-run's own tests

PLAN_VAR = "ACCEL_RUN_PLAN"  # plan.json of a user script's launch: how runner.track finds where to write
