"""Paired comparisons of two programs scored on the same test examples.

``paired_bootstrap``  one run: the mean of ``optimized - baseline`` over its test examples, a percentile
                      bootstrap interval over examples, wins/losses/ties and a sign test.
``pooled_paired``     several runs (seeds) of one configuration: the same statistics with the examples as
                      clusters, so an example scored under several seeds is resampled once, not once per
                      seed (seeds share the test examples; treating them as new examples narrows the
                      interval without new evidence).
``pair_by_id``        lines up a stored cell's baseline and optimized test scores by example id.
``sign_counts``       wins, losses and ties of per-example differences.
``sign_test``         two-sided sign test of wins against losses.

Intervals come from ``scipy.stats.bootstrap`` (percentile method) through
:func:`promptopt.evaluate.bootstrap_ci`. Resampling the per-example differences is the same as
``scipy.stats.bootstrap(..., paired=True)`` on the two score lists with the statistic
``mean(optimized - baseline)``: both draw whole examples, keeping each baseline score with its own
optimized score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from promptopt.evaluate import bootstrap_ci

# Per-example differences closer to zero than this are ties (an example's mean over seeds of float
# scores can miss an exact zero by rounding).
TIE_TOLERANCE = 1e-12


def sign_test(wins: int, losses: int) -> float:
    """Two-sided sign-test p-value of ``wins`` against ``losses`` (ties already dropped).

    ``scipy.stats.binomtest(wins, wins + losses, 0.5)``; 1.0 when there are neither wins nor losses.
    """
    if wins < 0 or losses < 0:
        raise ValueError(f"wins and losses must be counts, not {wins} and {losses}.")
    if wins + losses == 0:
        return 1.0
    from scipy import stats

    return float(stats.binomtest(int(wins), int(wins + losses), 0.5, alternative="two-sided").pvalue)


def sign_counts(diff: Sequence[float] | np.ndarray) -> tuple[int, int, int]:
    """``(wins, losses, ties)``: how many differences are above, below and within ``TIE_TOLERANCE`` of 0."""
    d = np.asarray(diff, dtype=float)
    wins, losses = int((d > TIE_TOLERANCE).sum()), int((d < -TIE_TOLERANCE).sum())
    return wins, losses, int(d.size) - wins - losses


@dataclasses.dataclass(frozen=True)
class PairedLift:
    """The lift of an optimized program over the seed program on the same test examples.

    ``mean`` of ``optimized - baseline``; ``ci`` its percentile bootstrap interval at ``confidence``;
    ``n`` scored pairs and ``n_distinct`` distinct examples (equal for one run); ``wins``, ``losses``
    and ``ties`` count distinct examples by the sign of their difference and ``sign_p`` is the sign
    test of wins against losses. ``seeds``: how many runs were pooled (``None`` for one run).
    """

    mean: float
    ci: tuple[float, float]
    n: int
    n_distinct: int
    confidence: float
    wins: int
    losses: int
    ties: int
    sign_p: float
    seeds: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mean": self.mean,
            "ci": list(self.ci),
            "n": self.n,
            "n_distinct": self.n_distinct,
            "confidence": self.confidence,
            "wins": self.wins,
            "losses": self.losses,
            "ties": self.ties,
            "sign_p": self.sign_p,
        }
        if self.seeds is not None:
            data["seeds"] = self.seeds
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PairedLift:
        low, high = data["ci"]
        return cls(
            mean=data["mean"],
            ci=(low, high),
            n=data["n"],
            n_distinct=data["n_distinct"],
            confidence=data["confidence"],
            wins=data["wins"],
            losses=data["losses"],
            ties=data["ties"],
            sign_p=data["sign_p"],
            seeds=data.get("seeds"),
        )


def _summary(diff: np.ndarray, *, n: int, confidence: float, resamples: int, seed: int) -> PairedLift:
    """The statistics of independent per-example differences ``diff`` (one value per distinct example)."""
    wins, losses, ties = sign_counts(diff)
    lo, hi = bootstrap_ci(diff, confidence=confidence, resamples=resamples, seed=seed)
    return PairedLift(
        mean=float(diff.mean()) if diff.size else float("nan"),
        ci=(lo, hi),
        n=n,
        n_distinct=int(diff.size),
        confidence=confidence,
        wins=wins,
        losses=losses,
        ties=ties,
        sign_p=sign_test(wins, losses),
    )


def paired_bootstrap(
    baseline: Sequence[float],
    optimized: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 9999,
    seed: int = 0,
) -> PairedLift:
    """The mean of ``optimized - baseline`` over paired examples, with a percentile bootstrap interval.

    Position ``i`` of both lists is the same example, and each example is scored once. Examples are
    resampled together, so the interval reflects how the lift varies across examples rather than the
    (larger) spread of either score alone. Deterministic for a given ``seed``.

    ``n`` and ``n_distinct`` are both the number of examples; ``wins``/``losses``/``ties`` the examples
    where optimized scored higher/lower/the same. No examples: mean and interval are NaN,
    ``sign_p`` 1.0. One example, or the same difference on every example: the interval is [mean, mean].
    """
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(optimized, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"Paired scores need the same examples: {a.size} baseline vs {b.size} optimized.")
    return _summary(b - a, n=int(a.size), confidence=confidence, resamples=resamples, seed=seed)


def pair_by_id(
    baseline_ids: Sequence[Hashable],
    baseline_scores: Sequence[float],
    optimized_ids: Sequence[Hashable],
    optimized_scores: Sequence[float],
    *,
    label: str = "",
) -> tuple[list[Hashable], list[float], list[float]]:
    """``(ids, baseline, optimized)`` in the baseline's order, optimized scores matched by example id.

    Raises ``ValueError`` (naming ``label``, e.g. the cell key) when a list's ids and scores differ in
    length, an id repeats, or the two sides were scored on different examples.
    """
    where = f"{label}: " if label else ""
    for side, ids, scores in (
        ("baseline", baseline_ids, baseline_scores),
        ("optimized", optimized_ids, optimized_scores),
    ):
        if len(ids) != len(scores):
            raise ValueError(f"{where}{len(ids)} {side} test ids but {len(scores)} {side} test scores.")
        if len(set(ids)) != len(ids):
            dup = sorted({str(i) for i in ids if list(ids).count(i) > 1})
            raise ValueError(f"{where}the {side} test ids repeat ({', '.join(dup[:5])}); cannot pair by id.")
    if set(baseline_ids) != set(optimized_ids):
        only_b = sorted(str(i) for i in set(baseline_ids) - set(optimized_ids))
        only_o = sorted(str(i) for i in set(optimized_ids) - set(baseline_ids))
        raise ValueError(
            f"{where}baseline and optimized were scored on different test examples "
            f"({len(only_b)} only in baseline, e.g. {only_b[:3]}; {len(only_o)} only in optimized, "
            f"e.g. {only_o[:3]})."
        )
    opt = dict(zip(optimized_ids, optimized_scores, strict=True))
    return (
        list(baseline_ids),
        [float(s) for s in baseline_scores],
        [float(opt[i]) for i in baseline_ids],
    )


def pooled_paired(
    cells_ids: Sequence[Sequence[Hashable]],
    baseline_scores: Sequence[Sequence[float]],
    optimized_scores: Sequence[Sequence[float]],
    *,
    confidence: float = 0.95,
    resamples: int = 9999,
    seed: int = 0,
) -> PairedLift:
    """The paired lift pooled over several runs (seeds), resampling distinct test examples.

    ``cells_ids[k][i]`` is the example whose baseline and optimized scores in run ``k`` are
    ``baseline_scores[k][i]`` and ``optimized_scores[k][i]`` (line a stored cell up with
    :func:`pair_by_id` first). Examples are grouped by id across runs: each distinct example (the union
    over runs, so runs on other splits add their own examples) is one cluster whose difference is the
    mean of ``optimized - baseline`` over the runs that scored it. The lift is the mean of those
    differences over distinct examples (the mean of all pairs when every run scored the same examples),
    the interval a percentile bootstrap over distinct examples (a cluster bootstrap), and wins, losses,
    ties and ``sign_p`` count distinct examples by the sign of their difference.

    ``seeds`` is the number of runs; ``n`` is the number
    of scored pairs over all runs and ``n_distinct`` the number of distinct examples. Deterministic for a
    given ``seed`` and input order (clusters are taken in order of first appearance).
    """
    if not len(cells_ids) == len(baseline_scores) == len(optimized_scores):
        raise ValueError(
            f"One list of ids and scores per run: {len(cells_ids)} id lists, {len(baseline_scores)} "
            f"baseline and {len(optimized_scores)} optimized score lists."
        )
    total: dict[Hashable, float] = {}
    count: dict[Hashable, int] = {}
    n = 0
    for k, (ids, base, opt) in enumerate(zip(cells_ids, baseline_scores, optimized_scores, strict=True)):
        if not len(ids) == len(base) == len(opt):
            raise ValueError(
                f"Run {k}: {len(ids)} ids, {len(base)} baseline and {len(opt)} optimized scores."
            )
        for i, b, o in zip(ids, base, opt, strict=True):
            total[i] = total.get(i, 0.0) + (float(o) - float(b))
            count[i] = count.get(i, 0) + 1
            n += 1
    diff = np.array([total[i] / count[i] for i in total], dtype=float)
    pooled = _summary(diff, n=n, confidence=confidence, resamples=resamples, seed=seed)
    return dataclasses.replace(pooled, seeds=len(cells_ids))
