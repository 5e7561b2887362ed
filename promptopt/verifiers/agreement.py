"""How well a judge agrees with human labels: accuracy, Cohen's kappa and (for pairwise judges) the
position-bias rate, each with a percentile bootstrap interval over examples, and the paired change
of each between two judges scored on the same examples (before and after calibration).

Intervals come from ``scipy.stats.bootstrap`` with examples resampled as units (paired across the
two judges for a change). Cohen's kappa is computed here: scipy has none and scikit-learn is not a
dependency; it is the observed agreement corrected by the agreement the two label distributions
would reach by chance.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A statistic with its bootstrap interval (``nan`` bounds when it cannot be resampled)."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Agreement:
    """A judge's verdicts against human labels on ``n`` examples (``failed`` of them without a verdict,
    counted as disagreements: a judge that cannot answer does not agree)."""

    n: int
    failed: int
    accuracy: Estimate
    kappa: Estimate
    position_bias: Estimate | None = None  # pairwise judges only

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "failed": self.failed,
            "accuracy": self.accuracy.to_dict(),
            "kappa": self.kappa.to_dict(),
            "position_bias": None if self.position_bias is None else self.position_bias.to_dict(),
        }


def cohen_kappa(gold: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Cohen's kappa of two labelings of the same items; 1.0 when both give one and the same label to
    everything (no disagreement to correct for), ``nan`` for no items."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predicted labels.")
    if not gold:
        return float("nan")
    labels = sorted({*gold, *predicted}, key=repr)
    g = np.array([labels.index(x) for x in gold])
    p = np.array([labels.index(x) for x in predicted])
    observed = float(np.mean(g == p))
    chance = float(sum(np.mean(g == k) * np.mean(p == k) for k in range(len(labels))))
    if chance >= 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return (observed - chance) / (1.0 - chance)


def _bootstrap(
    statistic: Callable[[np.ndarray], float], n: int, confidence: float, seed: int
) -> tuple[float, float]:
    from scipy import stats

    if n < 2:
        return float("nan"), float("nan")
    whole = statistic(np.arange(n))
    if np.isnan(whole):
        return float("nan"), float("nan")
    res = stats.bootstrap(
        (np.arange(n),),
        lambda idx: statistic(idx.astype(int)),
        vectorized=False,
        confidence_level=confidence,
        n_resamples=2000,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if np.isnan(low):  # every resample gave the same value
        low = high = whole
    return low, high


def agreement(
    gold: Sequence[Hashable],
    predicted: Sequence[Hashable | None],
    *,
    position_inconsistent: Sequence[bool | None] | None = None,
    confidence: float = 0.95,
    seed: int = 0,
) -> Agreement:
    """Agreement of ``predicted`` (``None``: no verdict) with ``gold``, example by example.

    The position-bias rate is over the examples whose flag is known (``None``: no verdict to judge)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} verdicts.")
    g = list(gold)
    p = ["(no verdict)" if x is None else x for x in predicted]
    correct = np.array([a == b for a, b in zip(g, p, strict=True)], dtype=float)

    def acc(idx: np.ndarray) -> float:
        return float(correct[idx].mean())

    def kap(idx: np.ndarray) -> float:
        return cohen_kappa([g[i] for i in idx], [p[i] for i in idx])

    n = len(g)
    bias = None
    if position_inconsistent is not None:
        if len(position_inconsistent) != n:
            raise ValueError(f"{len(position_inconsistent)} position flags for {n} verdicts.")
        flips = np.array([float(f) for f in position_inconsistent if f is not None])
        bias = Estimate(
            float(flips.mean()) if flips.size else float("nan"),
            *_bootstrap(lambda i: float(flips[i].mean()), int(flips.size), confidence, seed),
        )

    return Agreement(
        n=n,
        failed=sum(x is None for x in predicted),
        accuracy=Estimate(acc(np.arange(n)) if n else float("nan"), *_bootstrap(acc, n, confidence, seed)),
        kappa=Estimate(kap(np.arange(n)), *_bootstrap(kap, n, confidence, seed)),
        position_bias=bias,
    )


@dataclass(frozen=True)
class AgreementChange:
    """``after - before`` for each statistic, paired by example."""

    accuracy: Estimate
    kappa: Estimate
    position_bias: Estimate | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy.to_dict(),
            "kappa": self.kappa.to_dict(),
            "position_bias": None if self.position_bias is None else self.position_bias.to_dict(),
        }


def agreement_change(
    gold: Sequence[Hashable],
    before: Sequence[Hashable | None],
    after: Sequence[Hashable | None],
    *,
    flips_before: Sequence[bool | None] | None = None,
    flips_after: Sequence[bool | None] | None = None,
    confidence: float = 0.95,
    seed: int = 0,
) -> AgreementChange:
    """The paired change in accuracy, kappa and position bias between two judges on the same examples."""
    if not len(gold) == len(before) == len(after):
        raise ValueError(f"{len(gold)} labels, {len(before)} verdicts before and {len(after)} after.")
    g = list(gold)
    b = ["(no verdict)" if x is None else x for x in before]
    a = ["(no verdict)" if x is None else x for x in after]
    n = len(g)

    def d_acc(idx: np.ndarray) -> float:
        return float(np.mean([a[i] == g[i] for i in idx]) - np.mean([b[i] == g[i] for i in idx]))

    def d_kap(idx: np.ndarray) -> float:
        sub = [g[i] for i in idx]
        return cohen_kappa(sub, [a[i] for i in idx]) - cohen_kappa(sub, [b[i] for i in idx])

    every = np.arange(n)
    bias = None
    if flips_before is not None and flips_after is not None:
        # Paired over the examples both judges gave a verdict on.
        both = [k for k in range(n) if flips_before[k] is not None and flips_after[k] is not None]
        fb = np.array([float(flips_before[k]) for k in both])  # type: ignore[arg-type]
        fa = np.array([float(flips_after[k]) for k in both])  # type: ignore[arg-type]

        def d_bias(idx: np.ndarray) -> float:
            return float(fa[idx].mean() - fb[idx].mean())

        m = len(both)
        bias = Estimate(d_bias(np.arange(m)) if m else float("nan"), *_bootstrap(d_bias, m, confidence, seed))
    return AgreementChange(
        accuracy=Estimate(d_acc(every) if n else float("nan"), *_bootstrap(d_acc, n, confidence, seed)),
        kappa=Estimate(d_kap(every) if n else float("nan"), *_bootstrap(d_kap, n, confidence, seed)),
        position_bias=bias,
    )
