"""How long from an edit to its diagnostics in `accel-run lsp`? 100 edits of specs/day6.yaml, as a person types.

The server is started as an editor starts it and driven with the tests' LSP client over stdio. Each
edit sends the whole new text (didChange) and waits for the publishDiagnostics of that version;
the time between the two is the latency an editor sees, pipes and JSON included. Edits alternate
between a valid change (epochs: 1..) and a typo (a key misspelt, an error with its did-you-mean),
so both paths of the CLI's validation are timed. Start-up (process start to the first file's
diagnostics) is printed apart. On a shared machine the wall time includes waiting for a core, so
the CPU time the server used per edit (user + system, from /proc, summed over all edits) is
printed beside it. Goal: median and maximum under 50 ms after start-up.
Run: python benchmarks/lsp_latency.py [--edits 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from lsp_client import LanguageServer  # noqa: E402  (the tests' client: one way to speak LSP)

SPEC = ROOT / "specs" / "day6.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edits", type=int, default=100, help="edits to time (default 100)")
    edits = parser.parse_args().edits
    text = SPEC.read_text(encoding="utf-8")
    folder = Path(tempfile.mkdtemp(prefix="lsp-latency-"))
    path = folder / "day6.yaml"
    started = time.perf_counter()
    server = LanguageServer([sys.executable, "-m", "runner", "lsp"], {}, folder)
    try:
        uri = server.open(path, text)
        server.wait_for_diagnostics(uri, version=server.versions[uri])
        startup = time.perf_counter() - started
        times: list[float] = []
        errors = 0
        process = psutil.Process(server.process.pid)
        cpu_before = sum(process.cpu_times()[:2])
        for number in range(edits):
            edited = (
                text.replace("  epochs: 10\n", f"  epochs: {number + 1}\n")
                if number % 2 == 0
                else text.replace("  lr_schedule: cosine\n", "  lr_shedule: cosine\n")
            )
            sent = time.perf_counter()
            server.open(path, edited)  # didChange with the full text, as the server asks
            found = server.wait_for_diagnostics(uri, version=server.versions[uri])
            times.append(time.perf_counter() - sent)
            errors += any(d["severity"] == 1 for d in found)
        cpu_per_edit = (sum(process.cpu_times()[:2]) - cpu_before) / edits
    finally:
        server.close()
    times_ms = sorted(t * 1000 for t in times)
    print(f"accel-run lsp on {SPEC.relative_to(ROOT)} ({len(text.splitlines())} lines), {edits} edits")
    print(f"  start-up to first diagnostics: {startup * 1000:.0f} ms")
    print(
        f"  edit -> diagnostics: median {statistics.median(times_ms):.1f} ms, "
        f"p90 {times_ms[int(0.9 * (len(times_ms) - 1))]:.1f} ms, max {times_ms[-1]:.1f} ms (goal: under 50 ms)"
    )
    print(f"  server CPU time per edit: {cpu_per_edit * 1000:.1f} ms (user + system, mean)")
    print(f"  {errors} of {edits} edits published an error (the typo), as expected: {edits // 2}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
