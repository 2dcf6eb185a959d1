"""Plots are an optional extra: PNGs when matplotlib is installed, a hint (never a crash) when not."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest

from runner.report.plots import PLOTS_HINT, write_plots


def summary() -> dict[str, Any]:
    def run(rate: float, curve: list[list[float]]) -> dict[str, Any]:
        return {
            "status": "ok",
            "metrics": {"train_time_s": 1000 / rate, "samples_per_s": rate},
            "spread": {"samples_per_s": {"min": rate * 0.9, "max": rate * 1.1, "n": 3}},
            "loss_curve": curve,
        }

    return {
        "spec": {"name": "plots"},
        "runs": {"a": run(100.0, [[10, 2.0], [20, 1.5]]), "b": run(150.0, [[10, 2.1], [20, 1.4]])},
    }


def test_plots_are_written_as_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")  # installed by `make test` ('.[dev,plots]')
    written, hint = write_plots(summary(), tmp_path)
    assert hint is None
    assert written == ["loss_curves.png", "timings.png"]
    for name in written:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


def test_without_matplotlib_a_hint_and_no_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    written, hint = write_plots(summary(), tmp_path)
    assert (written, hint) == ([], PLOTS_HINT)
    assert list(tmp_path.iterdir()) == []
