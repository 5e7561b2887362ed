"""The candidates of a MIPROv2 run, read from the search space and the shared study."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial

from promptopt.core.example import Example
from promptopt.lm.usage import Usage
from promptopt.optimizers.mipro.full_evaluation import FullEvaluation
from promptopt.optimizers.mipro.search import combo_key
from promptopt.optimizers.mipro.search_space import SearchSpace
from promptopt.optimizers.result import Candidate, best_candidate


def mean(scores: dict[str, float]) -> float:
    return sum(scores.values()) / len(scores) if scores else float("-inf")


def usage_sum(rows: Sequence[dict[str, Any]]) -> Usage:
    total = Usage()
    for row in rows:
        total.merge(Usage.from_dict(row or {}))
    return total


@dataclass(frozen=True)
class RunCandidates:
    """What a MIPROv2 run's result lists: its candidates, the best one, the learning curve and a
    row per trial."""

    candidates: list[Candidate]
    best_id: int
    learning_curve: list[tuple[int, float]]
    trials: list[dict[str, Any]]


def run_candidates(
    space: SearchSpace, val: Sequence[Example], trials: list[FrozenTrial], fulls: dict[str, FullEvaluation]
) -> RunCandidates:
    """Candidates are the fully evaluated combinations in the order they were evaluated (the seed
    first); the best is chosen among them only, so a lucky minibatch never picks the program.

    A full evaluation that examples are missing from (the LM or metric failed on them, and the run
    stopped before they were scored) lists only its scores and is chosen only when no complete one
    exists (then by :func:`best_candidate`, on the examples candidates have in common)."""
    candidates: list[Candidate] = []
    complete: list[Candidate] = []
    curve: list[tuple[int, float]] = []
    for i, f in enumerate(sorted(fulls.values(), key=lambda f: f.order)):
        cand = Candidate(
            id=i,
            components=space.components(f.params),
            parents=[] if i == 0 else [0],
            origin="seed" if f.kind == "seed" else f"mipro:{f.kind}",
            val_scores={e.id: f.val_scores[e.id] for e in val if e.id in f.val_scores},
            iteration=f.trials_done,
            discovered_at=f.total_metric_calls,
        )
        candidates.append(cand)
        if len(cand.val_scores) < len(val):
            continue
        complete.append(cand)
        if not curve or cand.val_score > curve[-1][1]:
            curve.append((cand.discovered_at, cand.val_score))
    best = max(complete, key=lambda c: (c.val_score, -c.id)) if complete else best_candidate(candidates)
    full_by_key = {k: f.mean for k, f in fulls.items()}
    rows = [
        {
            "number": t.number,
            "params": {k: int(v) for k, v in t.params.items()},
            "minibatch_score": t.value,
            "full_score": full_by_key.get(combo_key(t.params)),
            "metric_calls": int(t.user_attrs.get("metric_calls", 0)),
            "example_ids": list(t.user_attrs.get("scores", {})),
            "worker": (t.user_attrs.get("worker") or {}).get("pid"),
        }
        for t in trials
    ]
    return RunCandidates(candidates, best.id, curve, rows)
