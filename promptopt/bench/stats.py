"""Paired comparisons of two programs scored on the same test examples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def paired_bootstrap(
    baseline: Sequence[float],
    optimized: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The mean of ``optimized - baseline`` over paired examples, with a percentile bootstrap interval.

    Examples are resampled together, so the interval reflects how the lift varies across examples
    rather than the (larger) spread of either score alone. Deterministic for a given ``seed``.
    """
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(optimized, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"Paired scores need the same examples: {a.size} baseline vs {b.size} optimized.")
    diff = b - a
    if diff.size == 0:
        return {"mean": float("nan"), "ci": [float("nan"), float("nan")], "n": 0, "confidence": confidence}
    mean = float(diff.mean())
    if diff.size == 1 or np.all(diff == diff[0]):
        lo = hi = mean
    else:
        rng = np.random.default_rng(seed)
        means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
        alpha = (1 - confidence) / 2
        lo, hi = float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
    return {
        "mean": mean,
        "ci": [lo, hi],
        "n": int(diff.size),
        "confidence": confidence,
        "wins": int((diff > 0).sum()),
        "losses": int((diff < 0).sum()),
    }
