"""Scoring a MIPROv2 combination until its examples are scored: a short outage then costs a few
repeated calls instead of a hole in the scores."""

from __future__ import annotations

from typing import Any

from promptopt.core.example import Example
from promptopt.optimizers.evaluation import CandidateEvaluator, Record

# With max_consecutive_failures=None, runs in a row of the same examples that scored none of them
# before an evaluation gives up on them (a metric that fails on one example every time). With a
# limit, the failure streak ends such a loop: every run that scores nothing adds to it.
MAX_STALE_ATTEMPTS = 3


def run_until_scored(
    evaluator: CandidateEvaluator, components: dict[str, Any], examples: list[Example]
) -> list[Record]:
    """A record per example, running the unscored ones again while that scores more of them.

    A short outage then costs a few repeated calls instead of a hole in the scores: the result is
    the one a run without the outage gets. Scored pairs come from the evaluator's cache.
    Raises :class:`~promptopt.optimizers.stoppers.ConsecutiveFailuresError` when the streak ends it.
    """
    recs = evaluator.run(components, examples)
    stale = 0
    while stale < MAX_STALE_ATTEMPTS or evaluator.streak.limit is not None:
        left = sum(not r.scored for r in recs)
        if not left:
            break
        recs = evaluator.run(components, examples)
        stale = stale + 1 if sum(not r.scored for r in recs) >= left else 0
    return recs
