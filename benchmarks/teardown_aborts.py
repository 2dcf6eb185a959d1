"""How often does a 2-process CPU launch abort at exit after it succeeded? Real launches, counted.

A tiny spec with one 2-process CPU run (a 32-wide MLP, 20 optimizer steps, no eval, no attribution)
is launched N times (--launches, default 30) in each condition:
  idle        one accel-run invocation at a time (its N launches are measure.repeats of one invocation);
  concurrent  two invocations at once, N/2 launches each, both counted (the cores are contended);
  ramdisk     as idle, with --output on /dev/shm (opt in: --conditions idle,concurrent,ramdisk).
Each launch is classified from summary.json:
  ok             status ok;
  abort-at-exit  failed, metrics.json was written, and the reason or log tail shows an abort (SIGABRT,
                 "terminate called without an active exception", exit code -6 / 134): the run succeeded
                 and a rank died in teardown;
  other          any other failure.
A runner that keeps such a run (status ok, with a note that the launch failed after every rank had
finished) still counts it as abort-at-exit; the "(kept)" column says how many of them it kept. Every
launch that is not plainly ok gets a line below the table (reason | abort lines of its log).
--root measures another checkout (e.g. a clone of an older commit): accel-run is run as
`python -m runner` with cwd and PYTHONPATH set to ROOT. About 7 s a launch on 2 idle cores (~8 minutes
at the defaults, ~12 with ramdisk); twice that on a machine busy with other work.

Run: python benchmarks/teardown_aborts.py [--launches 30] [--conditions idle,concurrent,ramdisk] [--root PATH]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONDITIONS = ("idle", "concurrent", "ramdisk")
SPEC = """\
name: teardown
model: {{kind: mlp, input_dim: 32, hidden: [32], classes: 4}}
data: {{kind: synthetic-classification, samples: 512, features: 32, classes: 4}}
train: {{max_steps: 20, batch_size: 16, eval_samples: 0}}
measure: {{repeats: {repeats}, warmup_steps: 2, attribution: false}}
launch: {{processes: 2, device: cpu, timeout_s: 300}}
"""
ABORT = re.compile(
    r"SIGABRT|terminate called without an active exception|Signal 6\b|exit ?code\s*:?\s*(-6|134)\b|code (-6|134)\b",
    re.IGNORECASE,
)


def accel_run(root: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`python -m runner ARGS` of the checkout at ROOT; its output goes to LOG."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=root, env=env, stdout=out, stderr=out)


def write_spec(root: Path, folder: Path, label: str, repeats: int) -> Path:
    spec = folder / f"{label}.yaml"
    spec.write_text(SPEC.format(repeats=repeats))
    log = folder / f"{label}.validate.log"
    if accel_run(root, log, "--validate", str(spec)).wait() != 0:
        sys.exit(f"the spec is not valid for {root}:\n{log.read_text(errors='replace')}")
    return spec


def classify(result: Path, launch: dict[str, Any]) -> str:
    """ok, abort-at-exit (reported failed, or kept by a runner that tolerates it: see `kept`) or other."""
    notes = " ".join(str(note) for note in launch.get("notes") or [])
    aborted = ABORT.search(f"{launch.get('reason', '')}\n{launch.get('log_tail', '')}\n{notes}") is not None
    if launch["status"] == "ok":
        return "kept" if aborted or "after every rank had finished" in notes else "ok"
    wrote_metrics = (result / launch["directory"] / "metrics.json").exists()
    return "abort-at-exit" if wrote_metrics and aborted else "other"


def evidence(tail: str) -> str:
    """The log tail's lines that show an abort (or its last meaningful line), on one line."""
    lines = [line.strip() for line in tail.splitlines() if line.strip(" =-\t")]
    hits = list(dict.fromkeys(line for line in lines if ABORT.search(line)))
    return " / ".join(hits[:3]) if hits else (lines[-1] if lines else "(no log)")


def condition(root: Path, name: str, launches: int) -> tuple[collections.Counter[str], list[str], float]:
    """Run one condition: the outcome counts, a line for each failed launch, and the wall time."""
    streams = [launches // 2, launches - launches // 2] if name == "concurrent" and launches > 1 else [launches]
    with tempfile.TemporaryDirectory(dir="/dev/shm" if name == "ramdisk" else None) as tmp:
        folder = Path(tmp)
        specs = [write_spec(root, folder, f"{name}{index}", repeats) for index, repeats in enumerate(streams)]
        started = time.monotonic()  # all invocations start together (validation is not timed)
        procs = [
            (out, accel_run(root, out.with_suffix(".log"), str(spec), "--output", str(out), "--no-progress"))
            for spec in specs
            for out in [folder / spec.stem]
        ]
        counts: collections.Counter[str] = collections.Counter()
        others: list[str] = []
        for out, proc in procs:
            code = proc.wait()
            results = list(out.glob("*/*/summary.json"))
            if not results:
                sys.exit(f"accel-run wrote no summary.json (exit {code}):\n{out.with_suffix('.log').read_text()}")
            (summary_path,) = results
            summary = json.loads(summary_path.read_text())
            for launch in summary["runs"]["main"]["repeats"]:
                outcome = classify(summary_path.parent, launch)
                counts[outcome] += 1
                if outcome != "ok":
                    others.append(f"{outcome}: {launch.get('reason', '')} | {evidence(launch.get('log_tail', ''))}")
        return counts, others, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launches", type=int, default=30, help="launches per condition (default 30)")
    parser.add_argument("--conditions", default="idle,concurrent", help=f"comma-separated, of {','.join(CONDITIONS)}")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose runner is measured")
    args = parser.parse_args()
    names = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = sorted(set(names) - set(CONDITIONS))
    if unknown or args.launches < 1:
        parser.error(f"unknown condition(s) {unknown}" if unknown else "--launches must be at least 1")
    root = args.root.resolve()
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    print(f"root: {root} (commit {commit.stdout.strip() or 'unknown'}), {args.launches} launches per condition")
    rows = []
    failures: list[str] = []
    for name in names:
        counts, others, wall = condition(root, name, args.launches)
        rows.append((name, counts, wall))
        failures.extend(f"  {name}: {line}" for line in others)
        print(f"  {name}: done in {wall:.0f} s", flush=True)
    header = f"{'condition':<12} {'launches':>8} {'ok':>5} {'abort-at-exit':>14} {'(kept)':>7} {'other':>6}"
    print(f"\n{header} {'abort rate':>11}")
    for name, counts, _ in rows:
        total = sum(counts.values())
        aborts = counts["abort-at-exit"] + counts["kept"]
        row = f"{name:<12} {total:>8} {counts['ok']:>5} {aborts:>14} {counts['kept']:>7} {counts['other']:>6}"
        print(f"{row} {f'{aborts / total:.0%}':>11}")
    if failures:
        print("\nfailed launches:")
        print("\n".join(failures))


if __name__ == "__main__":
    main()
