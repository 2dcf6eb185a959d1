"""Progress on long work: a bar over launches and one over the current run's steps (tqdm), or plain lines."""

from __future__ import annotations

import os
from typing import Any, TextIO


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


class ProgressUI:
    """Bars in a terminal; one line per finished launch otherwise (CI logs, --no-progress)."""

    def __init__(self, *, stream: TextIO, bars: bool) -> None:
        self.stream = stream
        self.bars = bars and stream.isatty()
        self.done = 0
        self.total = 0
        self.outer: Any = None
        self.inner: Any = None
        # tqdm draws nothing in a terminal that reports 0 columns (some ptys): assume 100 then
        self.size: dict[str, Any] = {"dynamic_ncols": True} if _columns(stream) else {"ncols": 100, "nrows": 24}

    def begin(self, total: int) -> None:
        """The session knows how many launches it will make."""
        self.total = total
        if self.bars:
            from tqdm import tqdm

            self._tqdm = tqdm
            self.outer = tqdm(total=total, desc="runs", unit="launch", file=self.stream, position=0, **self.size)

    def extend(self, more: int) -> None:
        """More launches were planned (measure.repeats: auto adds rounds)."""
        self.total += more
        if self.outer is not None:
            self.outer.total = self.total
            self.outer.refresh()

    def start(self, label: str) -> None:
        """A launch begins."""
        if self.bars:
            self.inner = self._tqdm(
                total=0, desc=label, unit="step", file=self.stream, position=1, leave=False, **self.size
            )
        else:
            self.say(f"[{self.done + 1}/{self.total}] {label}: started")

    def progress(self, step: int, total: int, phase: str) -> None:
        """The worker reported progress (called from the execute loop)."""
        if self.inner is None:
            return
        if total and self.inner.total != total:
            self.inner.total = total
        self.inner.set_postfix_str(phase, refresh=False)
        self.inner.update(max(0, step - self.inner.n))

    def finish(self, label: str, text: str) -> None:
        """A launch ended; `text` says how."""
        self.done += 1
        if self.inner is not None:
            self.inner.close()
            self.inner = None
        if self.outer is not None:
            self.outer.update(1)
        self.say(f"[{self.done}/{self.total}] {label}: {text}")

    def say(self, text: str) -> None:
        """A line that does not break the bars."""
        if self.outer is not None:
            self._tqdm.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """Remove the bars."""
        if self.inner is not None:
            self.inner.close()
        if self.outer is not None:
            self.outer.close()
