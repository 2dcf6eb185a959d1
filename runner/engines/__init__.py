"""Engines run compiled launches and say how each ended; the local engine is the only place that starts processes."""
