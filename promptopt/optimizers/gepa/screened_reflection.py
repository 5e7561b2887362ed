"""Reflections judged on validation stages: how a candidate with demos is improved.

GEPA judges a child on a training minibatch before it spends a validation on it. That test fails
for a parent with demos: every demo GEPA makes is a training example (BootstrapFewShot's set holds
up to 16, its successful traces first and the other examples as labeled demos; a demo mutation draws
from the successful training traces), so the parent and its child run on examples whose answers they
are shown, and they tie. The seed has no demos, so its training runs are honest, and the demo
candidate's bootstrap already made them, with traces and feedback, at no further metric call.

So with ``screened_reflections`` (the default), a child of a parent with demos is made from the
seed's training runs (shuffled with the run's seeded generator, so each reflection shows the
reflection LM other failures) and judged on the validation set in stages (a quarter, a half, all of
it; each child starts a quarter further on in the staged order): it goes on only while its mean is
at least its parent's on the same examples. A weak child costs a quarter of a validation instead of
two minibatch runs and a tie extension; one that holds up joins with its full scores, as every
candidate does. The proposer hears the outcome as after a minibatch
comparison. The seed's own children keep GEPA's minibatch test: its runs see no answers.

The same reflection fits where a proposal does not (a budget left too small for two minibatch runs
and a validation, such as the 18 calls that 60 leave after the seed and the demo candidate are
scored on 15 validation examples): spare steps then take turns between a reflection for the best
candidate and a spare demo set (:mod:`~promptopt.optimizers.gepa.demo_seed`), counting the screened
children of the iterations as reflections (so a run whose iterations made some draws demo sets
first), its instruction components in turn.

A parallel round judges every child on its minibatch, as before (its point is to score many
children at once); a serial step on a parent with demos makes one screened child, whatever
``reflection_samples`` asks (samples are told apart on a minibatch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptopt.optimizers.evaluation import Record
from promptopt.optimizers.gepa.budget_plan import spare_step_fits
from promptopt.optimizers.gepa.strategies import ComponentChoice
from promptopt.optimizers.gepa.validation import rejection_event
from promptopt.optimizers.result import Candidate, best_candidate

if TYPE_CHECKING:
    from promptopt.optimizers.gepa.run import GEPARun

MAX_SPARE_REFLECTIONS = 8  # per run, at most (a proposal refused by the guard rails spends no call)


def seed_training_runs(run: GEPARun) -> list[Record]:
    """The seed's scored runs on training examples, in training-set order (nothing is run)."""
    seed = run.state.candidates[0]
    found = (run.evaluator.cached(seed.components, [example]) for example in run.train.values())
    return [recs[0] for recs in found if recs is not None and recs[0].scored]


def has_demos(candidate: Candidate) -> bool:
    return any(name.endswith(".demos") and value for name, value in candidate.components.items())


def seed_failed_somewhere(run: GEPARun) -> bool:
    """Whether the seed's training runs hold a failure to reflect on (successes alone fix nothing)."""
    return any(r.score < run.cfg.perfect_score for r in seed_training_runs(run))


def screens(run: GEPARun, parent: Candidate) -> bool:
    """Whether an iteration on ``parent`` reflects on the seed's runs and screens on validation."""
    return run.cfg.screened_reflections and has_demos(parent) and seed_failed_somewhere(run)


def screened_child(
    run: GEPARun, parent: Candidate, choice: ComponentChoice | None = None, rollout_tag: str = ""
) -> bool:
    """Propose a child of ``parent`` from the seed's training runs (the component selector's choice
    unless ``choice`` is given) and validate it in stages against ``parent``; whether it joined."""
    st = run.state
    runs = seed_training_runs(run)
    run.rng.shuffle(runs)
    child, changed = run.children.propose(
        parent, runs, st, run.pool, run.rng, choice=choice, iteration=st.iteration, rollout_tag=rollout_tag
    )
    if child is None:
        return False  # the proposer was told; the refused proposal spent no metric call
    st.screened_children += 1
    origin = "reflection:" + ",".join(changed)
    # Each child starts on the next quarter: judged against the same parent on the same first
    # examples every time, children would all pass or all fail by how the parent did on those.
    turn = st.screened_children - 1
    screening = run.stages.screen(run.evaluator, child, parent.val_scores, turn=turn)
    if not screening.passed:
        run.events.on_candidate_rejected(rejection_event(st.iteration, parent.id, origin, screening))  # type: ignore[arg-type]
        run.children.observe(False)
        return False
    joined = run.accept(child, [parent.id], origin, screen=False) is not None  # its scores are recorded
    run.children.observe(joined)
    return joined


def instruction_components(run: GEPARun) -> list[str]:
    """The components a spare reflection rewrites: every predictor's instruction and free text."""
    return [c for c in run.components if not c.endswith(".demos")]


def spare_reflection_due(run: GEPARun) -> bool:
    """Whether a spare reflection can be made: allowed, after the demo candidate, under its cap,
    the budget left too small for a proposal but enough for a validation, and a seed failure to
    reflect on."""
    st = run.state
    if (
        not (run.cfg.screened_reflections and st.demo_seed_done)
        or st.spare_reflections >= MAX_SPARE_REFLECTIONS
    ):
        return False
    if not spare_step_fits(run.budget_left(), len(run.val), run.proposal_cost()):
        return False
    return bool(instruction_components(run)) and seed_failed_somewhere(run)


def add_spare_reflection(run: GEPARun) -> list[int]:
    """A screened reflection on the best candidate's next instruction component; returns the
    iterations it ended (none: it is not an iteration)."""
    st = run.state
    st.spare_reflections += 1
    base = best_candidate([c for c in st.candidates if c.val_scores])
    names = instruction_components(run)
    choice = ComponentChoice([names[(st.spare_reflections - 1) % len(names)]], all_of_them=False)
    screened_child(run, base, choice, rollout_tag=f"spare{st.spare_reflections}")
    return []
