"""Two optimizers compared directly: the difference of their mean lifts over tasks, with an interval.

The summary table's mean lift is a mean over tasks of each task's lift (pooled over seeds). Whether
one optimizer's mean lift is really ahead of another's is a question about the *difference*, and the
two lifts are not independent: both optimizers are scored on the same test examples against the same
seed program. So the difference is computed example by example. In each stratum (task, program,
task LM, configuration) every distinct test example gets each optimizer's lift on it, averaged over
the seeds that scored it; the example's difference is A's minus B's. The statistic is the mean over
tasks of each task's mean difference (a task with several strata averages them first), which equals
A's mean lift minus B's when both scored the same examples.

The interval is a stratified percentile bootstrap: ``scipy.stats.bootstrap`` with one sample per
stratum, each resampled on its own (``paired=False`` across samples), so every resample keeps each
task's number of examples and an example stays one cluster however many seeds scored it. Wins and
losses count distinct examples on which A's lift was above or below B's, with a sign test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptopt.bench.aggregate import paired_test_scores
from promptopt.bench.records import CellRecord
from promptopt.bench.stats import sign_counts, sign_test
from promptopt.evaluate import bootstrap_rng_kwarg

Stratum = tuple[str, str, str, str]  # (task, program, task LM, configuration)


@dataclass(frozen=True)
class HeadToHead:
    """``optimizer``'s mean lift minus ``versus``'s, over the strata both finished.

    ``difference`` and ``ci`` are fractions of the metric (x100 for points); ``tasks`` the tasks
    compared; ``n_distinct`` the distinct test examples over all strata; ``wins``/``losses``/``ties``
    count those examples by the sign of their difference and ``sign_p`` tests wins against losses.
    ``strata_left_out`` names the strata only one of the two finished.
    """

    optimizer: str
    versus: str
    difference: float
    ci: tuple[float, float]
    confidence: float
    tasks: tuple[str, ...]
    n_distinct: int
    wins: int
    losses: int
    ties: int
    sign_p: float
    strata_left_out: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "versus": self.versus,
            "difference": self.difference,
            "ci": list(self.ci),
            "confidence": self.confidence,
            "tasks": list(self.tasks),
            "n_distinct": self.n_distinct,
            "wins": self.wins,
            "losses": self.losses,
            "ties": self.ties,
            "sign_p": self.sign_p,
            "strata_left_out": list(self.strata_left_out),
        }


def example_lifts(
    configurations: Mapping[str, Sequence[CellRecord]], optimizer: str
) -> dict[Stratum, dict[Hashable, float]]:
    """Per stratum, ``optimizer``'s lift on each distinct test example, averaged over its seeds.

    ``configurations`` names each group of cells (a run folder: one reflection LM, one budget); a
    configuration is part of the stratum, so two configurations' runs of a task are not taken for
    more seeds of one."""
    total: dict[Stratum, dict[Hashable, float]] = defaultdict(dict)
    count: dict[Stratum, dict[Hashable, int]] = defaultdict(dict)
    for name, cells in configurations.items():
        for c in cells:
            cfg = c.config
            if not c.ok or cfg.optimizer != optimizer:
                continue
            stratum = (cfg.task, cfg.program, cfg.lm, name)
            ids, base, opt = paired_test_scores(c)
            for i, b, o in zip(ids, base, opt, strict=True):
                total[stratum][i] = total[stratum].get(i, 0.0) + (o - b)
                count[stratum][i] = count[stratum].get(i, 0) + 1
    return {s: {i: v / count[s][i] for i, v in per.items()} for s, per in total.items()}


def head_to_head(
    configurations: Mapping[str, Sequence[CellRecord]],
    optimizer: str,
    versus: str,
    *,
    confidence: float = 0.95,
    resamples: int = 9999,
    seed: int = 0,
) -> HeadToHead | None:
    """``optimizer`` against ``versus`` on the strata both finished; ``None`` when they share none."""
    a, b = example_lifts(configurations, optimizer), example_lifts(configurations, versus)
    shared = sorted(set(a) & set(b))
    left_out = tuple("/".join(p for p in s if p) for s in sorted(set(a) ^ set(b)))
    samples: list[np.ndarray] = []
    strata: list[Stratum] = []
    for s in shared:
        ids = [i for i in a[s] if i in b[s]]
        if ids:
            samples.append(np.array([a[s][i] - b[s][i] for i in ids], dtype=float))
            strata.append(s)
    if not samples:
        return None
    weights = _weights(strata)
    value = float(sum(w * np.mean(x) for w, x in zip(weights, samples, strict=True)))
    everything = np.concatenate(samples)
    # A stratum of one example resamples to itself (scipy wants two or more per sample), and when
    # every difference is the same every resample gives the same value (scipy refuses such input).
    fixed = sum(w * float(x[0]) for w, x in zip(weights, samples, strict=True) if x.size < 2)
    varied = [(w, x) for w, x in zip(weights, samples, strict=True) if x.size >= 2]
    if not varied or np.all(everything == everything[0]):
        ci = (value, value)
    else:
        from scipy import stats

        def statistic(*xs: np.ndarray, axis: int = -1) -> np.ndarray:
            return sum(w * np.mean(x, axis=axis) for (w, _), x in zip(varied, xs, strict=True))

        res = stats.bootstrap(
            tuple(x for _, x in varied),
            statistic,
            n_resamples=resamples,
            confidence_level=confidence,
            method="percentile",
            vectorized=True,
            paired=False,
            **bootstrap_rng_kwarg(seed),
        )
        ci = (fixed + float(res.confidence_interval.low), fixed + float(res.confidence_interval.high))
    wins, losses, ties = sign_counts(everything)
    return HeadToHead(
        optimizer=optimizer,
        versus=versus,
        difference=value,
        ci=ci,
        confidence=confidence,
        tasks=tuple(sorted({s[0] for s in strata})),
        n_distinct=int(everything.size),
        wins=wins,
        losses=losses,
        ties=ties,
        sign_p=sign_test(wins, losses),
        strata_left_out=left_out,
    )


def _weights(strata: Sequence[Stratum]) -> list[float]:
    """Each stratum's weight in the mean over tasks of the mean over each task's strata."""
    tasks = {s[0] for s in strata}
    return [1.0 / (len(tasks) * sum(1 for t in strata if t[0] == s[0])) for s in strata]
