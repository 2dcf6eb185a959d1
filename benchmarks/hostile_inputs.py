"""How long does `accel-run --validate` take on hostile spec files? (Each must fail cleanly within a second.)

Whole-process wall time (median of 5) of --validate on: an alias bomb, a 50 MB file, deep
nesting, binary garbage, a UTF-8 BOM, CRLF line endings, samples: 1e30, NaN, a run named
'../x', and a directory. Prints the time, the exit code and the first diagnostic of each.

Run: python benchmarks/hostile_inputs.py
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = (ROOT / "examples" / "minimal.yaml").read_text()


def cases(folder: Path) -> dict[str, Path]:
    files: dict[str, bytes] = {
        "alias bomb": (
            "\n".join(
                ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
                + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
            )
            + "\n"
        ).encode(),
        "deep nesting": ("name: " + "[" * 100000 + "]" * 100000 + "\n").encode(),
        "binary garbage": bytes(random.Random(1).randrange(256) for _ in range(65536)),
        "UTF-8 BOM": b"\xef\xbb\xbf" + BASE.encode(),
        "CRLF": BASE.replace("\n", "\r\n").encode(),
        "samples 1e30": BASE.replace("samples: 2048", "samples: 1e30").encode(),
        "NaN": BASE.replace("epochs: 2", "epochs: .nan").encode(),
        "run name ../x": (BASE + "runs:\n  ../x: {}\n").encode(),
    }
    out = {}
    for name, data in files.items():
        path = folder / (name.replace(" ", "-").replace("/", "") + ".yaml")
        path.write_bytes(data)
        out[name] = path
    big = folder / "fifty-mb.yaml"
    with open(big, "wb") as handle:
        handle.truncate(50 * 2**20)
    out["50 MB file"] = big
    out["a directory"] = folder
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'input':<16} {'median':>8} {'exit':>5}  first diagnostic")
        for name, path in cases(Path(tmp)).items():
            times, done = [], None
            for _ in range(5):
                start = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", "runner", "--validate", str(path)], capture_output=True, text=True, cwd=ROOT
                )
                times.append(time.perf_counter() - start)
            assert done is not None
            first = done.stdout.splitlines()[0].replace(str(path), "SPEC") if done.stdout else done.stderr[:100]
            print(f"{name:<16} {statistics.median(times) * 1000:>6.0f} ms {done.returncode:>5}  {first[:110]}")


if __name__ == "__main__":
    main()
