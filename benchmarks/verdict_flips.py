"""Do verdicts flip on noise? Single-shot verdicts against accel-run's noise-aware ones, over reruns.

A spec with two runs (batch 64 and batch 128 of the same MLP) and a speedup expectation whose
bound sits at the measured speedup (found by a calibration invocation, or given with --bound) is
run N times (default 10), each time with measure.repeats = 5 interleaved repeats. From every
invocation we take
  - the single-shot verdict: repeat 1 of each run, ratio >= bound (what a naive benchmark does);
  - accel-run's verdict: pass / fail / inconclusive from the repeats and the noise floor.
A method "flips" when the same spec gets both pass and fail across the reruns. The aim: the
noise-aware verdict never flips (it may say inconclusive).

Each rerun also prints every pair's ratio, the most CPU other processes took and the repeats left out as
unfit: what a flip needs explained.

Run: python benchmarks/verdict_flips.py [--reruns 10] [--bound X]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def spec_text(bound: float, repeats: int) -> str:
    return f"""\
name: flips
model: {{kind: mlp, input_dim: 64, hidden: [128], classes: 4}}
data: {{kind: synthetic-classification, samples: 8192, features: 64, classes: 4}}
train: {{epochs: 50, batch_size: 64, eval_samples: 0}}
measure: {{repeats: {repeats}, warmup_steps: 10, attribution: false}}
runs:
  b64: {{}}
  b128:
    train: {{batch_size: 128}}
expect:
  - {{kind: speedup, title: batch 128 faster, run: b128, baseline: b64, at_least: {bound:.4f}}}
"""


def invoke(folder: Path, bound: float, repeats: int) -> dict:  # type: ignore[type-arg]
    spec = folder / "flips.yaml"
    spec.write_text(spec_text(bound, repeats))
    out = folder / "results"
    before = set(out.glob("*/*")) if out.exists() else set()
    subprocess.run(
        [sys.executable, "-m", "runner", str(spec), "--output", str(out), "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    (result,) = set(out.glob("*/*")) - before
    return json.loads((result / "summary.json").read_text())


def pair_ratios(summary: dict) -> list[float]:  # type: ignore[type-arg]
    """b128 over b64, repeat by repeat (unfit repeats included: what each pair measured)."""
    rates = {
        name: {r["repeat"]: r["metrics"].get("samples_per_s") for r in summary["runs"][name]["repeats"]}
        for name in ("b64", "b128")
    }
    paired = sorted(k for k in rates["b64"] if rates["b64"][k] and rates["b128"].get(k))
    return [rates["b128"][k] / rates["b64"][k] for k in paired]


def diagnosis(summary: dict) -> str:  # type: ignore[type-arg]
    """What a flip needs explained: every pair's ratio, the others' CPU share and the repeats left out as unfit."""
    ratios = " ".join(f"{ratio:.2f}" for ratio in pair_ratios(summary))
    shares = [summary["runs"][n]["disturbance"].get("max_others_share") or 0.0 for n in ("b64", "b128")]
    unfit = sum(len(summary["runs"][n]["disturbance"].get("unfit_repeats") or {}) for n in ("b64", "b128"))
    return f"pairs {ratios}; others' CPU up to {max(shares):.0%}; {unfit} unfit"


def first_ratio(summary: dict) -> float:  # type: ignore[type-arg]
    rate = lambda name: summary["runs"][name]["repeats"][0]["metrics"]["samples_per_s"]  # noqa: E731
    return float(rate("b128") / rate("b64"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reruns", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bound", type=float, help="the speedup bound (default: calibrated to the measured median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bound = args.bound
        if bound is None:
            calibration = invoke(folder, 1.0, args.repeats)
            bound = statistics.median(
                calibration["runs"]["b128"]["spread"]["samples_per_s"]["values"]
            ) / statistics.median(calibration["runs"]["b64"]["spread"]["samples_per_s"]["values"])
            print(f"calibrated bound: speedup >= {bound:.3f} (the measured median); {diagnosis(calibration)}")
        single, aware, ratios = collections.Counter(), collections.Counter(), []
        for rerun in range(1, args.reruns + 1):
            summary = invoke(folder, bound, args.repeats)
            ratio = first_ratio(summary)
            shot = "pass" if ratio >= bound else "fail"
            verdict = summary["expectations"][0]["verdict"]
            single[shot] += 1
            aware[verdict] += 1
            ratios.append(ratio)
            print(
                f"rerun {rerun:>2}: single-shot {ratio:.3f} -> {shot:<4}   noise-aware -> {verdict:<12}  "
                f"{diagnosis(summary)}",
                flush=True,
            )
        flips = lambda c: c["pass"] > 0 and c["fail"] > 0  # noqa: E731
        print(f"\nsingle-shot verdicts: {dict(single)}  flips: {'yes' if flips(single) else 'no'}")
        print(f"noise-aware verdicts: {dict(aware)}  flips: {'yes' if flips(aware) else 'no'}")
        print(
            f"single-shot speedups: median {statistics.median(ratios):.3f}, "
            f"min {min(ratios):.3f}, max {max(ratios):.3f}"
        )


if __name__ == "__main__":
    main()
