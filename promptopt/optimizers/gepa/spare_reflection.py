"""A reflection that fits where a proposal does not: the best candidate's instruction rewritten from
the seed's training runs, judged on validation stages instead of training minibatches.

A GEPA proposal costs two minibatch runs and a full validation, which a small budget cannot pay
after the seed and the demo candidate are scored (60 metric calls and 15 validation examples leave
about 18). Two things make a cheaper proposal possible there:

* The demo candidate's bootstrap already ran the seed on training examples with traces and
  feedback. The seed has no demos, so its failures on those examples are the instruction's own;
  they are the reflective dataset, at no metric call.
* The demo candidate's demos are those training examples (BootstrapFewShot's set holds up to 16,
  the traces first, then the rest as labeled examples), so its runs on them, and a child's, would
  see the answers in the prompt: a training minibatch cannot tell such a child from its parent. The
  validation set can, in stages (a quarter, a half, all of it): the child goes on only while its
  mean is at least the best candidate's on the same examples, so a weak rewrite costs a quarter of
  a validation and a good one joins with its full scores, as every candidate does.

Each spare reflection shuffles the seed's training runs (with the run's seeded generator) so that
the next one shows the reflection LM other failures, and rewrites the instruction components in
turn. The proposer hears whether its child joined, as after a minibatch comparison.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptopt.optimizers.evaluation import Record
from promptopt.optimizers.gepa.budget_plan import spare_step_fits
from promptopt.optimizers.gepa.strategies import ComponentChoice
from promptopt.optimizers.gepa.validation import StagedValidation, rejection_event
from promptopt.optimizers.result import best_candidate

if TYPE_CHECKING:
    from promptopt.optimizers.gepa.run import GEPARun

MAX_SPARE_REFLECTIONS = 8  # per run, at most (a rejected proposal spends no metric call)


def seed_training_runs(run: GEPARun) -> list[Record]:
    """The seed's scored runs on training examples, in training-set order (nothing is run)."""
    seed = run.state.candidates[0]
    found = (run.evaluator.cached(seed.components, [example]) for example in run.train.values())
    return [recs[0] for recs in found if recs is not None and recs[0].scored]


def instruction_components(run: GEPARun) -> list[str]:
    """The components a reflection rewrites: every predictor's instruction and free text."""
    return [c for c in run.components if not c.endswith(".demos")]


def spare_reflection_due(run: GEPARun) -> bool:
    """Whether a spare reflection can be made: allowed, after the demo candidate, under its cap,
    the budget left too small for a proposal but enough for a validation, and the seed failed
    somewhere on the training examples it ran (a reflection on successes alone has nothing to fix)."""
    st = run.state
    if not (run.cfg.spare_reflections and st.demo_seed_done) or st.spare_reflections >= MAX_SPARE_REFLECTIONS:
        return False
    if not spare_step_fits(run.budget_left(), len(run.val), run.proposal_cost()):
        return False
    if not instruction_components(run):
        return False
    return any(r.score < run.cfg.perfect_score for r in seed_training_runs(run))


def add_spare_reflection(run: GEPARun) -> list[int]:
    """Rewrite the best candidate's next instruction from the seed's training runs and validate the
    child in stages against the best candidate; returns the iterations it ended (none)."""
    st, cfg = run.state, run.cfg
    st.spare_reflections += 1
    base = best_candidate([c for c in st.candidates if c.val_scores])
    names = instruction_components(run)
    component = names[(st.spare_reflections - 1) % len(names)]
    runs = seed_training_runs(run)
    run.rng.shuffle(runs)
    child, changed = run.children.propose(
        base,
        runs,
        st,
        run.pool,
        run.rng,
        choice=ComponentChoice([component], all_of_them=False),
        iteration=st.iteration,
        rollout_tag=f"spare{st.spare_reflections}",
    )
    if child is None:
        return []  # the proposer was told; the rejected proposal spent no metric call
    origin = "reflection:" + ",".join(changed)
    staged = run.staged or StagedValidation(run.val, cfg.minibatch_size, cfg.seed)
    screening = staged.screen(run.evaluator, child, base.val_scores)
    if not screening.passed:
        run.events.on_candidate_rejected(rejection_event(st.iteration, base.id, origin, screening))  # type: ignore[arg-type]
        run.children.observe(False)
        return []
    joined = run.accept(child, [base.id], origin, screen=False)  # its scores are all recorded now
    run.children.observe(joined is not None)
    return []
