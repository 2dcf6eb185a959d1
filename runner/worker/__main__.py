"""`python -m runner.worker PLAN.json`: one process of a launch (started by `accelerate launch`)."""

import os
import sys
import time

USAGE = "usage: python -m runner.worker PLAN.json (started by accel-run through accelerate launch)"


def main(argv: list[str] | None = None) -> int:
    """Train as the plan says and write metrics.json (main process); 0 once this rank's work is durable."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    from runner.worker.train import run_plan

    run_plan(args[0], entered=time.time())
    return 0


if __name__ == "__main__":
    code = main()
    # End without the interpreter's shutdown. gloo's worker threads can still hold Python-owned
    # tensors of the last collective when the interpreter finalises; freeing them then needs the
    # interpreter, and the process aborts ("terminate called without an active exception", SIGABRT)
    # after a run that succeeded. The work is durable and the output flushed by now, so os._exit
    # skips finalisation and its race. (A rank forked by accel-run's own launcher returns to it
    # instead, and multiprocessing ends that process with os._exit too.)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
