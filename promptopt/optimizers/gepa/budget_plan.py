"""When a GEPA run may make one more proposal, and why it ends when nothing more can help.

A proposal may spend two minibatch runs (the parent's and the child's; one more per extra child with
``reflection_samples``) and, when the child is accepted, its validation; it starts only when the
budget left pays for all of that, so a run never spends past its budget and ends with less than one
proposal's worth unspent. A merge spends less (a
validation subsample, then the rest of the validation set).
"""

from __future__ import annotations

from collections.abc import Sequence

from promptopt.optimizers.result import Candidate


def proposal_cost(minibatch_size: int, n_val: int, samples: int = 1) -> int:
    """The most one proposal may spend before a tie extension (``samples`` children on its minibatch)."""
    return (1 + samples) * minibatch_size + n_val


def spare_step_fits(budget_left: int, n_val: int, proposal_cost: int) -> bool:
    """Whether the budget left is too small for a proposal but pays for one full validation: what
    a spare step (a demo set, a reflection judged on validation stages) may spend."""
    return n_val <= budget_left < proposal_cost


def why_exhausted(
    candidates: Sequence[Candidate],
    *,
    budget_left: int,
    minibatch_size: int,
    n_val: int,
    perfect_score: float,
    stalled_iterations: int,
    max_stalled_iterations: int,
    samples: int = 1,
    spare_step: bool = False,
) -> str | None:
    """Why no further iteration can help, if so: the stoppers only see spent budget, and an
    iteration that spends none (a perfect minibatch, a rejected proposal) never moves it.
    ``spare_step``: the budget left is too small for a proposal but pays for a cheaper step."""
    if 0 < budget_left < proposal_cost(minibatch_size, n_val, samples) and not spare_step:
        runs = "two minibatches" if samples == 1 else f"{1 + samples} minibatch runs"
        return (
            f"budget: {budget_left} metric calls left, fewer than one more proposal may spend "
            f"({(1 + samples) * minibatch_size} on {runs}, {n_val} to validate an accepted child)"
        )
    if any(len(c.val_scores) == n_val and min(c.val_scores.values()) >= perfect_score for c in candidates):
        return "a candidate is perfect on every validation example"
    if stalled_iterations >= max_stalled_iterations:
        return (
            f"no progress: {stalled_iterations} iterations in a row spent no metric call "
            "(every minibatch was already perfect, or every proposal was rejected); raise "
            "max_stalled_iterations or use a stronger reflection LM"
        )
    return None
