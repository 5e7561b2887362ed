"""Where a run's wall time went: seconds per phase (the names of :mod:`promptopt.optimizers.phases`,
plus ``proposal`` for the LM calls that write new instructions).

Each timed step adds its own wall time to its phase. Steps that run at once (GEPA's parallel
proposals, MIPROv2's workers) each add theirs, so the phases can add up to more than the run's wall
time; in a serial run they add up to at most it, and the rest is the optimizer's own bookkeeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


class PhaseClock:
    """Thread-safe seconds per phase, resumable from the totals a saved run kept."""

    def __init__(self, seconds_by_phase: Mapping[str, float] | None = None) -> None:
        self._seconds: dict[str, float] = {k: float(v) for k, v in (seconds_by_phase or {}).items()}
        self._lock = threading.Lock()

    @contextmanager
    def time(self, phase: str | None) -> Iterator[None]:
        """Adds the wall time of the ``with`` block to ``phase`` (``other`` when None), even when
        the block raises: the time was spent."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase or "other", time.perf_counter() - start)

    def add(self, phase: str, seconds: float) -> None:
        with self._lock:
            self._seconds[phase] = self._seconds.get(phase, 0.0) + seconds

    def totals(self) -> dict[str, float]:
        """Phase -> seconds, most first."""
        with self._lock:
            return dict(sorted(self._seconds.items(), key=lambda kv: (-kv[1], kv[0])))
