"""System-aware merge: combine two front candidates that evolved different components.

Given candidates A and B with a common ancestor C, each component of the merge
comes from whichever of A and B changed it relative to C; where both changed
it, from the one with the better validation score. A merge is only tried when
it yields something new: at least one component from each side.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from promptopt.core.example import Example
from promptopt.optimizers import phases
from promptopt.optimizers.evaluation import CandidateEvaluator, components_key, scores_of
from promptopt.optimizers.gepa import pareto
from promptopt.optimizers.result import Candidate

if TYPE_CHECKING:
    from promptopt.optimizers.gepa.run import GEPARun


def ancestors(cid: int, by_id: dict[int, Candidate]) -> set[int]:
    seen: set[int] = set()
    stack = list(by_id[cid].parents)
    while stack:
        p = stack.pop()
        if p not in seen:
            seen.add(p)
            stack.extend(by_id[p].parents)
    return seen


def merge_components(a: Candidate, b: Candidate, ancestor: Candidate) -> tuple[dict[str, Any], bool]:
    """The merged components, and whether both sides contributed a change."""
    out: dict[str, Any] = {}
    from_a = from_b = False
    for key, base in ancestor.components.items():
        va, vb = a.components.get(key, base), b.components.get(key, base)
        if va == vb:
            out[key] = va
        elif va != base and vb == base:
            out[key], from_a = va, True
        elif vb != base and va == base:
            out[key], from_b = vb, True
        else:
            better_a = a.val_score >= b.val_score
            out[key] = va if better_a else vb
            from_a, from_b = from_a or better_a, from_b or not better_a
    return out, from_a and from_b


def find_merge(
    candidates: Sequence[Candidate],
    front_ids: Sequence[int],
    tried: set[str],
    rng: random.Random,
    attempts: int = 10,
) -> tuple[int, int, int, dict[str, Any]] | None:
    """Pick (a, b, ancestor, merged components) for a new merge, or None."""
    by_id = {c.id: c for c in candidates}
    known = {components_key(c.components) for c in candidates}
    pool = [i for i in front_ids if i != 0] or list(front_ids)
    if len(pool) < 2:
        return None
    for _ in range(attempts):
        i, j = sorted(rng.sample(pool, 2))
        if i in ancestors(j, by_id) or j in ancestors(i, by_id):
            continue  # one descends from the other: nothing to combine
        common = ancestors(i, by_id) & ancestors(j, by_id)
        if not common:
            continue
        # the most recent common ancestor carries the fewest unrelated changes
        anc = max(common)
        tag = f"{i}+{j}@{anc}"
        if tag in tried:
            continue
        tried.add(tag)
        merged, both = merge_components(by_id[i], by_id[j], by_id[anc])
        if both and components_key(merged) not in known:
            return i, j, anc, merged
    return None


def judge_merge(
    ca: Candidate,
    cb: Candidate,
    merged: dict[str, Any],
    val: Sequence[Example],
    evaluator: CandidateEvaluator,
    rng: random.Random,
    subsample: int,
) -> bool:
    """Whether ``merged`` (of ``ca`` and ``cb``) does at least as well as the better parent on a
    small validation subsample: of the examples both parents were scored on, those where they
    disagree when there are enough of them (where a merge shows most, most cheaply)."""
    common = [e for e in val if e.id in ca.val_scores and e.id in cb.val_scores]
    differ = [e for e in common if ca.val_scores[e.id] != cb.val_scores[e.id]]
    pool = differ if len(differ) >= subsample else common
    sub = rng.sample(pool, min(subsample, len(pool)))
    merged_scores = scores_of(evaluator.run(merged, sub, phases.MERGE))
    judged = [e.id for e in sub if e.id in merged_scores]
    merged_sum = sum(merged_scores[i] for i in judged)
    best_parent = max(sum(c.val_scores[i] for i in judged) for c in (ca, cb))
    return bool(judged) and merged_sum >= best_parent


def try_merge(run: GEPARun) -> bool:
    """A merge step of ``run``: False when no pair is left to merge (the iteration goes on to a
    reflective proposal), else True, the merged candidate judged on a validation subsample and, if
    it holds up, accepted."""
    st = run.state
    tried = set(st.tried_merges)
    found = find_merge(st.candidates, pareto.front(st.candidates), tried, run.rng)
    st.tried_merges = sorted(tried)
    if found is None:
        return False
    a, b, _anc, merged = found
    st.merges_done += 1
    ca, cb = st.candidates[a], st.candidates[b]
    accepted = judge_merge(ca, cb, merged, run.val, run.evaluator, run.rng, run.cfg.merge_subsample)
    # A staged validation may still refuse what the subsample let through.
    accepted = accepted and run.accept(merged, [a, b], "merge") is not None
    run.events.on_merge({"iteration": st.iteration, "ids": [a, b], "accepted": accepted})
    return True
