"""What a launch's reason says of a rank whose heartbeat stopped: it stopped responding.

A heartbeat that no longer changes means the rank's process no longer runs: it died (killed, a
crash in native code) or it is frozen (SIGSTOP, a debugger, a hung driver call). The heartbeat
cannot tell which, so the reason says what is known, and how long the silence lasted; "died" was
wrong for a frozen rank.
"""

from __future__ import annotations


def unresponsive_rank(rank: str, silent_s: float) -> str:
    """The reason of a launch stopped because one rank's heartbeat stopped."""
    return f"rank {rank} stopped responding (no heartbeat for {silent_s:.0f} s); the other ranks were stopped"
