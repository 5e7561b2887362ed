"""GEPA's parallel proposals: rounds of proposals made at once, with the run's budget accounting,
nothing scored twice, the same result on every run, and a killed round redone on resume."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest

from promptopt.optimizers import GEPA, evaluation
from promptopt.optimizers.components import serialize_components
from promptopt.optimizers.evaluation import components_key
from promptopt.optimizers.gepa.parallel import round_size, task_rng
from promptopt.optimizers.gepa.reflection import RulesProposer
from promptopt.testing import Killed, ScriptedLM, dies_at
from tests.optimizers.gepa.test_gepa import Pipe, data, two_stage_lm, two_stage_metric, two_stage_reflect


def parallel_run(run_dir=None, *, metric=two_stage_metric, k=3, seed=0, lm=None, reflector=None, **kw):
    resume = kw.pop("resume", False)
    gepa = GEPA(
        metric,
        max_metric_calls=kw.pop("max_metric_calls", 120),
        reflection_lm=reflector or ScriptedLM(two_stage_reflect),
        proposer=kw.pop("proposer", "rules"),
        progress=False,
        evolve_demos=False,
        use_merge=kw.pop("use_merge", True),
        seed=seed,
        minibatch_size=2,
        parallel_proposals=k,
        seed_demos=kw.pop("seed_demos", 0),  # rounds of instruction proposals, no demo candidate
        **kw,
    )
    return gepa.compile(
        Pipe(), data(8), data(4, offset=10), lm=lm or two_stage_lm(), run_dir=run_dir, resume=resume
    )


def summary(res):
    return (
        [(c.components, c.parents, c.origin, c.val_scores) for c in res.candidates],
        res.best_id,
        res.budget.metric_calls,
        res.learning_curve,
    )


def test_round_size_fits_the_budget_left():
    assert round_size(4, 100, 12) == 4
    assert round_size(4, 30, 12) == 2  # two proposals of at most 12 calls each fit in 30
    assert round_size(4, 5, 12) == 1  # the last step is a single proposal
    assert task_rng(0, 7).random() == task_rng(0, 7).random() != task_rng(0, 8).random()


def test_a_parallel_run_finds_both_rules_with_the_same_result_every_time():
    first, second = parallel_run(), parallel_run()
    assert summary(first) == summary(second)  # threads finishing in any order change nothing
    assert first.seed_score < 0.5 and first.best_score == 1.0
    origins = {c.origin for c in first.candidates}
    assert {"reflection:first.instruction", "reflection:second.instruction"} <= origins
    assert first.config["parallel_proposals"] == 3
    # At most one round past the budget: each accepted child's validation run after the last check.
    assert first.budget.metric_calls <= 120 + 3 * 4


def test_proposals_of_a_round_run_at_the_same_time():
    """With an LM that takes 0.2 s a call and minibatches of 2, a round of 4 proposals overlaps its
    reflections and evaluations: more than one call is in flight at some moment."""
    in_flight, peak, lock = [0], [0], threading.Lock()

    def slow(reply):
        def call(messages):
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            time.sleep(0.2)
            with lock:
                in_flight[0] -= 1
            return reply(messages)

        return call

    task = two_stage_lm()
    lm = ScriptedLM(slow(lambda m: task(m).text))
    reflector = ScriptedLM(slow(two_stage_reflect))
    res = parallel_run(k=4, lm=lm, reflector=reflector, max_metric_calls=40, num_threads=1)
    assert res.budget.metric_calls > 0 and peak[0] >= 3


def test_nothing_is_scored_twice_when_proposals_share_a_parent(monkeypatch):
    runs = Counter()
    run_examples = evaluation.evaluate

    def counting_evaluate(prog, examples, *args, **kwargs):
        key = components_key(serialize_components(prog.components()))
        runs.update((key, ex.id) for ex in examples)
        return run_examples(prog, examples, *args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", counting_evaluate)
    scored = []

    def counted_metric(ex, pred, trace=None):
        scored.append(ex.id)
        return two_stage_metric(ex, pred, trace)

    # Four proposals a round from a seed that is the only parent at first: they share it.
    res = parallel_run(metric=counted_metric, k=4)
    twice = {pair: n for pair, n in runs.items() if n > 1}
    assert not twice, twice
    assert sum(runs.values()) == res.budget.metric_calls == len(scored)


@pytest.mark.parametrize("die_at", [5, 9, 17, 23])  # the whole run spends 28 metric calls
def test_a_run_killed_mid_round_resumes_to_the_uninterrupted_result(tmp_path, die_at):
    # No demo candidate: the kill points fall inside rounds of proposals.
    whole = parallel_run(tmp_path / "whole")
    with pytest.raises(Killed):
        parallel_run(tmp_path / "cut", metric=dies_at(two_stage_metric, die_at))
    state = json.loads((tmp_path / "cut" / "state.json").read_text())
    resumed = parallel_run(tmp_path / "cut", resume=True)
    assert summary(resumed) == summary(whole), state["iteration"]
    assert whole.budget.metric_calls == 28, whole.budget.metric_calls


def test_a_proposer_with_only_observe_hears_every_outcome_of_a_round_and_of_a_step_s_samples():
    class Counting:
        def __init__(self):
            self.heard: list[bool] = []
            self.made = 0

        def __call__(self, request, lm):
            self.made += 1
            return RulesProposer()(request, lm)

        def observe(self, improved):
            self.heard.append(improved)

    for options in ({"k": 3}, {"k": 2, "reflection_samples": 2}):
        proposer = Counting()
        result = parallel_run(proposer=proposer, **options)
        assert proposer.made >= 3 and len(proposer.heard) == proposer.made, options
        assert sum(proposer.heard) == len([c for c in result.candidates if c.origin.startswith("reflection")])
