"""A second starting candidate: the seed with BootstrapFewShot's demos, from the seed's own runs.

With ``seed_demos=k`` and ``seed_traces=t``, before the first proposal GEPA runs the seed on the
training examples in their given order, a minibatch at a time, until ``t`` runs succeeded (the
score reaches ``demo_threshold`` and every predictor call returned) or ``4 t`` examples have run.
Each predictor's demos are then its calls in the first ``t`` successful runs, followed by the unused
training examples in order, up to ``k`` demos in all: the demo set that
``BootstrapFewShot(max_bootstrapped_demos=t, max_labeled_demos=k)`` builds from the same program and
training set (with the defaults t=4, k=16, BootstrapFewShot's own), so that program is one of GEPA's
candidates and GEPA's best validation score is never below its score. The set is the same as long as
the successful runs come within ``4 t`` examples and the budget (the runs and one validation must fit
in it), the demos fit in ``max_demo_chars`` and ``labeled_demos`` is on (off: traces only).

The set is scored on the whole validation set (under staged validation too, so it is never dropped
on a first stage). With ``staged_seed`` (the default) the seed was scored on the first validation
stage only; after the demo candidate it goes on stage by stage while its mean is at least the demo
candidate's on the same examples, and stops where it falls behind (where demos help, as they mostly
do for a small model, a quarter of a validation instead of all of it; the calls go to proposals). A
seed stopped that way can still be a parent (its children are judged on training minibatches), never
the final choice, unless the end of the budget, too small for anything else, completes its
validation (then the final choice weighs it on every example, as the others). The runs are the seed's own,
so its later minibatches on those examples cost nothing; they count in the budget as ``bootstrap``
and their traces join the demo pool that demo mutations draw from. Instruction evolution then starts
from both candidates, and a merge can join an evolved instruction with these demos (the seed is their
common ancestor): the demo baseline becomes a starting point instead of a rival.

A budget too small for one more proposal still pays for validations, so the rest of it goes to spare
demo sets, drawn as ``BootstrapFewShotWithRandomSearch`` draws them: the training examples in a
shuffled order, the calls of a random number (1 to ``t``) of successful runs, then labeled examples,
on the best candidate's instructions. Each is validated in stages against the best candidate (a
quarter of the validation set, a half, all) and dropped as soon as it falls behind, so a weak set
costs a few calls and the next one gets the rest; at most ``MAX_SPARE_DEMO_SETS`` are drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptopt.core.trace import TraceEntry
from promptopt.optimizers import phases
from promptopt.optimizers.bootstrap import call_demos
from promptopt.optimizers.evaluation import components_key, scores_of
from promptopt.optimizers.gepa.budget_plan import spare_step_fits
from promptopt.optimizers.gepa.demos import within_chars
from promptopt.optimizers.gepa.validation import rejection_event
from promptopt.optimizers.result import Candidate, best_candidate

if TYPE_CHECKING:
    from promptopt.core.example import Example
    from promptopt.optimizers.evaluation import Record
    from promptopt.optimizers.gepa.run import GEPARun

EXAMPLES_PER_TRACE = 4  # training examples run per wanted successful run, at most
DEMO_CANDIDATE = "demos:bootstrap"  # the origin of BootstrapFewShot's program among the candidates
MAX_SPARE_DEMO_SETS = 8  # spare sets drawn per run, at most (a draw may repeat a set already scored)


def add_demo_seed(run: GEPARun) -> list[int]:
    """Bootstrap the demo candidate of ``run`` (once per run) and score it, within the budget;
    returns the iterations it ended (none: it is not an iteration)."""
    st, cfg = run.state, run.cfg
    st.demo_seed_done = True
    traces_wanted = min(cfg.seed_traces, cfg.seed_demos)
    order = list(run.train.values())
    room = run.budget_left() - len(run.val)  # the runs and their validation must fit in what is left
    if not run.signatures or room < 0:
        settle_seed(run, None)
        return []
    cap = min(len(order), EXAMPLES_PER_TRACE * traces_wanted, room)
    seed = st.candidates[0]
    components = {**seed.components, **_demo_set(run, order, traces_wanted, cap)}
    # Scored on the whole validation set, so it is never dropped on a first stage.
    demo = None
    if components_key(components) != components_key(seed.components):
        demo = run.accept(components, [0], DEMO_CANDIDATE, screen=False)
    if demo is not None:
        st.merges_due += 1
    settle_seed(run, demo)
    return []


def settle_seed(run: GEPARun, demo: Candidate | None) -> None:
    """Go on with a seed scored on the first validation stage (``staged_seed``): stage by stage while
    its mean is at least the demo candidate's on the same examples (then it ends scored on all of
    them), and no further once it falls behind. Without a demo candidate, or with too little budget
    left for the rest of the seed's validation, it is scored as usual (the run fills in what is
    missing) or left as it is."""
    st = run.state
    if not st.seed_staged:
        return
    seed = st.candidates[0]
    if demo is None or not demo.val_scores:
        st.seed_staged = False  # nothing to keep up with: the run scores the rest of the seed
        return
    if run.budget_left() < len(run.val) - len(seed.val_scores):
        return
    screening = run.stages.screen(run.evaluator, seed.components, demo.val_scores)
    run.add_val_scores(seed, run.evaluator.scored(seed.components, run.val))
    st.seed_staged = not screening.passed
    if st.seed_staged:
        run.events.on_candidate_rejected(rejection_event(st.iteration, demo.id, "seed", screening))  # type: ignore[arg-type]


def seed_completion_due(run: GEPARun) -> bool:
    """Whether the budget left, too small for anything else, pays for the rest of a seed that
    stopped behind the demo candidate, so the run ends with the seed's score on every example (a
    seed that catches up there can still be the final choice)."""
    st, left = run.state, run.budget_left()
    missing = len(run.val) - len(st.candidates[0].val_scores)
    return st.seed_staged and st.demo_seed_done and 0 < missing <= left < run.proposal_cost()


def complete_seed(run: GEPARun) -> list[int]:
    """Score the seed on the validation examples it was not scored on; ends no iteration."""
    st = run.state
    seed = st.candidates[0]
    st.seed_staged = False  # from here the run fills in what an outage leaves out, as for any candidate
    missing = [e for e in run.val if e.id not in seed.val_scores]
    run.add_val_scores(seed, scores_of(run.evaluator.run(seed.components, missing, phases.VALIDATION)))
    return []


def spare_demo_set_due(run: GEPARun) -> bool:
    """Whether the budget left, too small for a proposal, goes to another demo set."""
    st = run.state
    return (
        st.demo_seed_done
        and st.spare_demo_sets < MAX_SPARE_DEMO_SETS
        and spare_step_fits(run.budget_left(), len(run.val), run.proposal_cost())
        and bool(run.signatures)
    )


def add_spare_demo_set(run: GEPARun) -> list[int]:
    """Draw one spare demo set for the best candidate and validate it in stages against it."""
    st, cfg = run.state, run.cfg
    st.spare_demo_sets += 1
    base = best_candidate([c for c in st.candidates if c.val_scores])
    order = list(run.train.values())
    run.rng.shuffle(order)
    traces_wanted = min(cfg.seed_traces, cfg.seed_demos)
    size = run.rng.randint(1, traces_wanted) if traces_wanted else 0
    cap = min(len(order), run.budget_left() - len(run.val))
    components = {**base.components, **_demo_set(run, order, size, cap)}
    if any(components_key(c.components) == components_key(components) for c in st.candidates):
        return []
    staged = run.staged or run.stages
    screening = staged.screen(run.evaluator, components, base.val_scores)
    if not screening.passed:
        event = rejection_event(st.iteration, base.id, "demos:spare", screening)
        run.events.on_candidate_rejected(event)  # type: ignore[arg-type]
        return []
    run.accept(components, [base.id], "demos:spare", screen=False)  # its scores are all recorded now
    return []


def _demo_set(run: GEPARun, order: list[Example], traces_wanted: int, cap: int) -> dict[str, Any]:
    """Each predictor's demos: the calls of the first ``traces_wanted`` successful runs of the seed in
    ``order`` (at most ``cap`` examples run), then the unused training examples in ``order``."""
    cfg, seed = run.cfg, run.state.candidates[0]
    passed: list[Record] = []
    ran = 0
    while ran < cap and len(passed) < traces_wanted:
        batch = order[ran : min(cap, ran + cfg.minibatch_size)]
        records = run.evaluator.run(seed.components, batch, phases.BOOTSTRAP)
        run.pool.add(records, cfg.demo_threshold)
        passed += [r for r in records if _passed(r, cfg.demo_threshold)]
        ran += len(batch)
    passed = passed[:traces_wanted]
    used = {r.example_id for r in passed}
    labeled = [e for e in order if e.id not in used] if cfg.labeled_demos else []
    out: dict[str, Any] = {}
    for name in run.signatures:
        demos = [d for r in passed for d in _demos(r, name)][:traces_wanted]
        demos += [e.to_dict() for e in labeled[: max(0, cfg.seed_demos - len(demos))]]
        if cfg.max_demo_chars is not None:
            demos = within_chars(demos, cfg.max_demo_chars)
        out[f"{name}.demos"] = demos  # replaces the seed's own, as BootstrapFewShot does
    return out


def _passed(record: Record, threshold: float) -> bool:
    """As BootstrapFewShot's teacher runs: scored, at the threshold, every predictor call returned."""
    entries = [TraceEntry.from_dict(t) for t in record.trace]
    return record.scored and not record.error and record.score >= threshold and all(e.ok for e in entries)


def _demos(record: Record, predictor: str) -> list[dict[str, Any]]:
    demos: list[Example] = call_demos(record.entries(predictor)).get(predictor, [])
    return [d.to_dict() for d in demos]
