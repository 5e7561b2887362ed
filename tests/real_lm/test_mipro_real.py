"""MIPROv2 end to end on the local model: a tiny iris run (a few dozen LM calls)."""

import json

import pytest

import promptopt as po
from langprobe import get_task
from promptopt.optimizers import MIPROv2


@pytest.mark.real_lm
def test_tiny_mipro_run_on_iris(tmp_path, local_lm_factory):
    task = get_task("iris")
    splits = task.splits(seed=0)
    train, val = splits.train[:6], splits.val[:6]
    lm = local_lm_factory(tmp_path / "c.sqlite")
    opt = MIPROv2(
        task.metric,
        # Three candidates ask for two new instructions, so six proposal attempts: the 0.5B model,
        # sampled without a fixed seed, copies the seed instruction in about one reply of five, and
        # three attempts alone all came back as copies now and then.
        num_candidates=3,
        num_trials=3,
        minibatch_size=3,
        max_bootstrapped_demos=1,
        max_labeled_demos=1,
        summary_batches=1,
        num_threads=1,
        progress=False,
    )
    res = opt.compile(task.program("predict"), train, val, lm=lm, run_dir=tmp_path / "run")

    assert res.stop_reason == "all 3 trials run" and len(res.trials) == 3
    assert res.candidates[0].origin == "seed" and all(len(c.val_scores) == 6 for c in res.candidates)
    # The seed's and the best program's validation scores are reproduced, example by example, by
    # evaluating the programs apart with the same LM: the same requests, all answered from the cache.
    for prog, cand in ((task.program("predict"), res.candidates[0]), (res.best_program, res.best_candidate)):
        again = po.evaluate(prog, val, task.metric, lm=lm, display_progress=False)
        assert {r.example.id: r.score for r in again.results} == cand.val_scores
        assert again.usage.uncached_calls == 0
    assert res.best_score == max(c.val_score for c in res.candidates)
    assert res.learning_curve and res.learning_curve[-1][1] == res.best_score
    assert all(t["minibatch_score"] is not None and len(t["example_ids"]) == 3 for t in res.trials)
    setup = json.loads((tmp_path / "run" / "search_space.json").read_text())
    assert setup["dataset_summary"].strip()
    # the 0.5B model can follow the proposer prompt: at least one usable new instruction
    (name,) = setup["instructions"]
    instructions = setup["instructions"][name]
    reasons = [(p["reason"], p["raw"][:200]) for p in setup["proposals"]]
    assert 2 <= len(instructions) <= 3, reasons
    assert len({i.strip().lower() for i in instructions}) == len(instructions), instructions
    assert res.budget.proposer_lm_calls >= 2 and res.budget.lm_calls > res.budget.proposer_lm_calls
    with po.context(lm=lm):
        pred = res.best_program(**val[0].inputs())
    assert pred.species in ("setosa", "versicolor", "virginica")
