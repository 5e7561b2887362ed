"""The per-example Pareto front and parent selection.

For each validation example, the candidates that reach the best score on it
form that example's front. A candidate on at least one front and not
dominated by another (at least as good everywhere, better somewhere) is
eligible as a parent, with probability proportional to the number of
examples it is best on. This keeps specialists alive, which is GEPA's point.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from promptopt.optimizers.result import Candidate


def best_sets(candidates: Sequence[Candidate]) -> dict[str, set[int]]:
    ids = set().union(*(c.val_scores for c in candidates)) if candidates else set()
    out: dict[str, set[int]] = {}
    for ex_id in sorted(ids):
        scored = [(c.val_scores[ex_id], c.id) for c in candidates if ex_id in c.val_scores]
        top = max(s for s, _ in scored)
        out[ex_id] = {cid for s, cid in scored if s == top}
    return out


def dominates(a: Candidate, b: Candidate) -> bool:
    keys = set(a.val_scores) & set(b.val_scores)
    if not keys:
        return False
    ge = all(a.val_scores[k] >= b.val_scores[k] for k in keys)
    gt = any(a.val_scores[k] > b.val_scores[k] for k in keys)
    return ge and gt


def front(candidates: Sequence[Candidate]) -> list[int]:
    """Ids of non-dominated candidates that are best on at least one example."""
    on_front = set().union(*best_sets(candidates).values()) if candidates else set()
    by_id = {c.id: c for c in candidates}
    return sorted(
        cid for cid in on_front if not any(dominates(by_id[o], by_id[cid]) for o in on_front if o != cid)
    )


def front_frequencies(candidates: Sequence[Candidate]) -> dict[int, int]:
    eligible = set(front(candidates))
    freq = dict.fromkeys(sorted(eligible), 0)
    for ids in best_sets(candidates).values():
        for cid in ids & eligible:
            freq[cid] += 1
    return freq


def select_parent(candidates: Sequence[Candidate], rng: random.Random) -> int:
    freq = front_frequencies(candidates)
    if not freq:
        return 0
    ids = list(freq)
    return rng.choices(ids, weights=[freq[i] for i in ids], k=1)[0]
