"""Where the metric calls went: every optimizer's budget splits its metric calls by phase, and the
phases add up to the total, through a kill and a resume too."""

from __future__ import annotations

import pytest

from promptopt.optimizers import GEPA, BootstrapFewShot, Callback, MIPROv2, phases
from promptopt.optimizers.evaluation import CandidateEvaluator
from promptopt.optimizers.result import Budget, OptimizationResult
from promptopt.testing import Killed, ScriptedLM, toy_examples, toy_metric, toy_program, toy_reply
from tests.optimizers.gepa.test_budget import reflection_reply, task_reply
from tests.optimizers.mipro.test_mipro import proposer_lm
from tests.optimizers.mipro.test_mipro import task_lm as mipro_task_lm


def gepa(**options) -> GEPA:
    return GEPA(
        toy_metric,
        max_metric_calls=70,
        reflection_lm=ScriptedLM(reflection_reply),
        proposer="rules",
        progress=False,
        evolve_demos=False,
        minibatch_size=3,
        max_stalled_iterations=1000,
        seed=0,
        **{"seed_demos": 0, **options},
    )


def run_gepa(run_dir=None, callbacks=(), **options):
    return gepa(callbacks=list(callbacks), **options).compile(
        toy_program(),
        toy_examples(12),
        toy_examples(8, offset=12),
        lm=ScriptedLM(task_reply),
        run_dir=run_dir,
    )


@pytest.mark.parametrize("options", [{}, {"parallel_proposals": 3}, {"use_merge": True, "tie_extensions": 2}])
def test_gepa_counts_minibatches_and_validations_apart(options):
    result = run_gepa(**options)
    by_phase = result.budget.metric_calls_by_phase
    assert sum(by_phase.values()) == result.budget.metric_calls
    accepted = len(result.candidates) - 1
    assert by_phase[phases.VALIDATION] == 8 * (1 + accepted)  # the seed and each accepted child, once
    assert by_phase[phases.MINIBATCH] > 0 and set(by_phase) <= {
        phases.MINIBATCH,
        phases.VALIDATION,
        phases.TIE_EXTENSION,
        phases.MERGE,
    }


class DieAtTheFirstAcceptance(Callback):
    def on_candidate_accepted(self, event):
        raise Killed


def test_a_resumed_gepa_run_ends_with_the_phases_of_an_uninterrupted_one(tmp_path):
    full = run_gepa(tmp_path / "full")
    with pytest.raises(Killed):
        run_gepa(tmp_path / "killed", callbacks=[DieAtTheFirstAcceptance()])
    resumed = gepa().compile(
        toy_program(),
        toy_examples(12),
        toy_examples(8, offset=12),
        lm=ScriptedLM(task_reply),
        run_dir=tmp_path / "killed",
        resume=True,
    )
    assert resumed.budget.metric_calls_by_phase == full.budget.metric_calls_by_phase


def test_mipro_counts_bootstrapping_trials_and_full_evaluations_apart():
    mipro = MIPROv2(
        toy_metric,
        num_candidates=3,
        num_trials=6,
        minibatch_size=3,
        minibatch_full_eval_steps=3,
        max_bootstrapped_demos=1,
        max_labeled_demos=1,
        proposer_lm=proposer_lm(),
        progress=False,
        seed=0,
    )
    result = mipro.compile(toy_program(), toy_examples(8), toy_examples(6, offset=10), lm=mipro_task_lm())
    by_phase = result.budget.metric_calls_by_phase
    assert sum(by_phase.values()) == result.budget.metric_calls
    assert by_phase[phases.BOOTSTRAP] > 0
    assert by_phase[phases.MINIBATCH] >= 3  # at least one trial on a minibatch of 3
    assert by_phase[phases.VALIDATION] >= 6  # the seed on the validation set, at least


def test_bootstrap_few_shot_counts_its_teacher_runs():
    lm = ScriptedLM(lambda messages: toy_reply(messages, lambda word, system, shown: shown))
    result = BootstrapFewShot(toy_metric, max_bootstrapped_demos=2, max_labeled_demos=0).compile(
        toy_program(), toy_examples(6), toy_examples(4, offset=10), lm=lm
    )
    # A teacher run on each of the 6 training examples; BootstrapFewShot scores nothing on validation.
    assert result.budget.metric_calls_by_phase == {phases.BOOTSTRAP: 6} and result.budget.metric_calls == 6


def test_records_keep_their_phase_and_unlabelled_ones_count_as_other():
    evaluator = CandidateEvaluator(
        toy_program(), toy_metric, lm=ScriptedLM(lambda m: "out: X"), num_threads=1
    )
    comps = {"self.instruction": "x"}
    evaluator.run(comps, toy_examples(3), phases.MINIBATCH)
    evaluator.run(comps, toy_examples(5), phases.VALIDATION)  # 3 already scored: 2 more calls
    evaluator.run({"self.instruction": "y"}, toy_examples(1))
    assert evaluator.metric_calls_by_phase() == {phases.MINIBATCH: 3, phases.VALIDATION: 2, "other": 1}
    assert next(iter(evaluator.records.values()))["phase"] == phases.MINIBATCH


def test_a_result_saved_without_phases_still_loads():
    result = run_gepa()
    data = result.to_dict()
    assert data["budget"]["metric_calls_by_phase"] == result.budget.metric_calls_by_phase
    del data["budget"]["metric_calls_by_phase"]
    assert OptimizationResult.from_dict(data).budget.metric_calls_by_phase == {}
    assert Budget.from_dict({"metric_calls": 3}).metric_calls_by_phase == {}
