"""What a GEPA run tells the user about itself: the estimate it prints at the start, and the
result it returns at the end."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from promptopt.optimizers.gepa import pareto
from promptopt.optimizers.gepa.demo_seed import DEMO_CANDIDATE
from promptopt.optimizers.result import Candidate, OptimizationResult, best_candidate, compare_on_common

if TYPE_CHECKING:
    from collections.abc import Sequence

    from promptopt.optimizers.gepa.run import GEPARun


def print_estimate(run: GEPARun, resumed: bool) -> None:
    if not run.session.options.progress:
        return
    n_preds = len(run.signatures)
    spent = run.state.progress.metric_calls
    status = f"resuming at {spent}" if resumed else "new run"
    # A program without predictors (a task app) makes its own LM calls: they cannot be foreseen.
    calls = f"about {run.budget * n_preds} task-LM calls at most" if n_preds else "its own task-LM calls"
    parallel, samples = run.cfg.parallel_proposals, run.cfg.reflection_samples
    per_step = (
        f"{parallel} proposals in parallel per round" if parallel > 1 else "one reflection call per iteration"
    )
    if samples > 1:
        per_step = per_step.replace("one reflection call", "one step").replace("proposals", "steps")
        per_step += f", {samples} reflection calls and children per step"
    sys.stderr.write(
        f"GEPA: budget {run.budget} metric calls ({status}); {calls} and {per_step}; "
        f"{len(run.val)} validation and {len(run.train)} training examples, "
        f"{len(run.components)} components.\n"
    )


def result_of(run: GEPARun) -> OptimizationResult:
    st = run.state
    best = final_choice(st.candidates)
    budget = run.session.budget(
        metric_calls=run.evaluator.metric_calls,
        unscored_calls=run.evaluator.unscored_calls,
        proposer_calls=st.proposer_calls,
        metric_calls_by_phase=run.evaluator.metric_calls_by_phase(),
    )
    proposer_stats = {"proposer_state": st.proposer_state} if st.proposer_state else {}
    if run.cfg.predictor_feedback is not None:
        proposer_stats["feedback_metric_calls"] = st.feedback_calls
    return run.session.result(
        st.candidates,
        best.id,
        budget=budget,
        stop_reason=st.stop_reason or "unknown",
        config={**run.config, "budget": run.budget, **proposer_stats},
        pareto_front=pareto.front(st.candidates),
        learning_curve=[(int(a), float(b)) for a, b in st.learning_curve],
    )


def final_choice(candidates: Sequence[Candidate]) -> Candidate:
    """The best candidate on validation; where the seed ties BootstrapFewShot's program (the demo
    candidate), that program, as BootstrapFewShot itself would return: the validation set cannot
    tell them apart, and GEPA should then not end below the demo baseline."""
    best = best_candidate(candidates)
    demo = next((c for c in candidates if c.origin == DEMO_CANDIDATE), None)
    if best.id == 0 and demo is not None and demo.val_scores:
        diff, n = compare_on_common(demo, best)
        if n and diff == 0:
            return demo
    return best
