"""`python -m runner.worker.script SCRIPT [ARGS...]`: one process of a user script's launch.

The compiled launch starts this through `accelerate launch -m`, so the script runs in every
process exactly as `accelerate launch SCRIPT ARGS...` would run it (as __main__, with its own
folder first on sys.path and sys.argv = [SCRIPT, *ARGS]). Around it, this wrapper does for the
script what the built-in worker does for itself: a heartbeat per rank (accel-run notices a dead
rank, and the process exits when accel-run is gone), the report finished when the script returns
(runner.track.finish), a failure naming the API when the script reported nothing or reported steps
its optimizer did not take, and the rank's done marker once its work is durable.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

from runner import track
from runner.vocab import PLAN_VAR

USAGE = "usage: python -m runner.worker.script SCRIPT [ARGS...] (started by accel-run through accelerate launch)"


def main(argv: list[str] | None = None) -> int:
    """Run the script with its arguments as __main__, then finish its report and mark this rank done."""
    args = sys.argv[1:] if argv is None else argv
    plan_path = os.environ.get(PLAN_VAR)
    if not args or not plan_path:
        print(USAGE + ("" if plan_path else f"; {PLAN_VAR} is not set"), file=sys.stderr)
        return 2
    from runner.worker.observe import start_heartbeat

    outputs = json.loads(Path(plan_path).read_text(encoding="utf-8"))["outputs"]
    rank = int(os.environ.get("RANK", "0") or 0)
    start_heartbeat(f"{outputs['heartbeat_prefix']}{rank}")
    script = str(Path(args[0]).resolve())
    sys.argv = [script, *args[1:]]
    sys.path.insert(0, str(Path(script).parent))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as stop:  # the script's own sys.exit(): 0 (or None) is a normal end
        if stop.code not in (0, None):
            raise
    track.finish()
    problem = track.missing()
    if problem:
        raise SystemExit(f"accel-run worker: {Path(script).name}: {problem}")
    contradiction = track.contradicted()  # located at the script's line that reports
    if contradiction:
        raise SystemExit(f"accel-run worker: {contradiction}")
    Path(f"{outputs['done_prefix']}{rank}").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
