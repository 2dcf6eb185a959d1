"""Optional plots (pip install 'accel-run[plots]'): loss curves and time per run with spread whiskers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOTS_HINT = (
    "plots need matplotlib: pip install 'accel-run[plots]' (or pip install matplotlib), then accel-run --report"
)


def write_plots(summary: dict[str, Any], result_dir: Path) -> tuple[list[str], str | None]:
    """(written file names, a hint when matplotlib is missing); never raises for a missing extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], PLOTS_HINT
    runs = {n: r for n, r in summary["runs"].items() if r.get("metrics")}
    if not runs:
        return [], None
    written = []
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, run in runs.items():
        curve = run.get("loss_curve") or []
        if curve:
            ax.plot([p[0] for p in curve], [p[1] for p in curve], label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (all processes)")
    ax.set_title(f"{summary['spec']['name']}: loss curves")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(result_dir / "loss_curves.png", dpi=110)
    plt.close(fig)
    written.append("loss_curves.png")

    names = list(runs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, key, label in ((axes[0], "train_time_s", "train time (s)"), (axes[1], "samples_per_s", "samples/s")):
        medians, low, high = [], [], []
        for name in names:
            value = runs[name]["metrics"].get(key) or 0.0
            spread = runs[name].get("spread", {}).get(key, {})
            medians.append(value)
            low.append(value - spread.get("min", value))
            high.append(spread.get("max", value) - value)
        ax.bar(names, medians, yerr=[low, high], capsize=4, color="#4c72b0")
        ax.set_ylabel(label)
        ax.tick_params(axis="x", rotation=45)
    fig.suptitle(f"{summary['spec']['name']}: median per run (whiskers: min-max over repeats)")
    fig.tight_layout()
    fig.savefig(result_dir / "timings.png", dpi=110)
    plt.close(fig)
    written.append("timings.png")
    return written, None
