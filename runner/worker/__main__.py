"""`python -m runner.worker PLAN.json`: one process of a launch (started by `accelerate launch`)."""

import sys


def main(argv: list[str] | None = None) -> int:
    """Train as the plan says and write metrics.json (main process)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(
            "usage: python -m runner.worker PLAN.json (started by accel-run through accelerate launch)", file=sys.stderr
        )
        return 2
    from runner.worker.train import run_plan

    run_plan(args[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
