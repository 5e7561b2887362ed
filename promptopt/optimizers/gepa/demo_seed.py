"""A second starting candidate: the seed with demos from its own successful training runs.

With ``seed_demos=k``, before the first proposal GEPA runs the seed on training examples (one seeded
order, a minibatch at a time) until every predictor has ``k`` successful traces or ``4 k`` examples
have run, gives each predictor ``k`` demos from them (spread over the output values; labeled
training examples fill in where traces are short), and scores that program on the validation set as
it would an accepted child. The runs are the seed's own, so its later minibatches on those examples
cost nothing; they count in the budget as ``bootstrap``. Instruction evolution then starts from both
candidates, and a merge can join an evolved instruction with these demos (the seed is their common
ancestor): the demo baselines' strength becomes a starting point instead of a rival.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from promptopt.optimizers import phases

if TYPE_CHECKING:
    from promptopt.optimizers.gepa.run import GEPARun

EXAMPLES_PER_DEMO = 4  # training examples run per wanted demo, at most


def add_demo_seed(run: GEPARun) -> list[int]:
    """Bootstrap the demo candidate of ``run`` (once per run) and score it, within the budget;
    returns the iterations it ended (none: it is not an iteration)."""
    st, cfg = run.state, run.cfg
    st.demo_seed_done = True
    k, predictors, seed = cfg.seed_demos, list(run.signatures), st.candidates[0]
    order = sorted(run.train.values(), key=lambda e: e.id)
    random.Random(f"gepa-demo-seed-{cfg.seed}").shuffle(order)
    # The runs, their validation and one proposal after them must fit in what is left.
    cap = min(len(order), EXAMPLES_PER_DEMO * k, run.budget_left() - len(run.val) - run.proposal_cost())
    if not predictors or cap < 1:
        return []
    ran = 0
    while ran < cap and any(run.pool.size(name) < k for name in predictors):
        batch = order[ran : min(cap, ran + cfg.minibatch_size)]
        run.pool.add(run.evaluator.run(seed.components, batch, phases.BOOTSTRAP), cfg.demo_threshold)
        ran += len(batch)
    components = dict(seed.components)
    for name in predictors:
        current = components.get(f"{name}.demos") or []
        demos = run.pool.propose(name, current, k, run.rng, max_chars=cfg.max_demo_chars)
        if demos is not None:
            components[f"{name}.demos"] = demos
    if components != seed.components and run.accept(components, [0], "demos:bootstrap") is not None:
        st.merges_due += 1
    return []
