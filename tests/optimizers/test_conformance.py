"""Every optimizer and peer runner against the optimizer contract (promptopt.testing.conformance)."""

from __future__ import annotations

import pytest

from promptopt.optimizers import (
    GEPA,
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    LabeledFewShot,
    MIPROv2,
)
from promptopt.testing import ScriptedLM, toy_proposer, toy_reply
from promptopt.testing.conformance import OptimizerCase, OptimizerConformance
from promptopt.testing.dspy_toy import dspy_toy_lm, dspy_toy_reflector


def task_lm():
    return ScriptedLM(toy_reply)


def rules_reflector():
    return ScriptedLM("Here are rules:\n- Always write the output in uppercase letters.")


def peers():
    import promptopt.peers

    return promptopt.peers


NO_LOOP = "it has no steps to stop between: it scores the seed and one demo set"
LIBRARY_LOOP = "its library runs the loop, which does not look for promptopt's STOP file"

CASES = [
    OptimizerCase(
        "gepa",
        build=lambda metric, budget, cbs: GEPA(
            metric,
            max_metric_calls=budget,
            reflection_lm=rules_reflector(),
            proposer="rules",
            callbacks=cbs,
            progress=False,
            num_threads=2,
        ),
        task_lm=task_lm,
        # one iteration past the budget: parent and child on two minibatches of 3, then a validation
        most_metric_calls=lambda budget, n_train, n_val: budget + 2 * 2 * 3 + n_val,
    ),
    OptimizerCase(
        "mipro",
        build=lambda metric, budget, cbs: MIPROv2(
            metric,
            auto=None,
            num_candidates=3,
            num_trials=6,
            minibatch_size=2,
            minibatch_full_eval_steps=2,
            max_metric_calls=budget,
            proposer_lm=toy_proposer(),
            callbacks=cbs,
            progress=False,
            num_threads=2,
        ),
        task_lm=task_lm,
        budget=40,
        most_metric_calls=lambda budget, n_train, n_val: budget,  # the final full evaluation is kept in it
        exclusive_run_dir=False,
        kill_at=20,
    ),
    OptimizerCase(
        "labeled_fewshot",
        build=lambda metric, budget, cbs: LabeledFewShot(k=2, metric=metric, score=True, callbacks=cbs),
        task_lm=task_lm,
        most_metric_calls=lambda budget, n_train, n_val: 2 * n_val,
        stops_on_file=False,
        stop_skip=NO_LOOP,
        kill_at=6,
    ),
    OptimizerCase(
        "bootstrap_fewshot",
        build=lambda metric, budget, cbs: BootstrapFewShot(
            metric, max_bootstrapped_demos=2, max_labeled_demos=2, score=True, callbacks=cbs
        ),
        task_lm=task_lm,
        most_metric_calls=lambda budget, n_train, n_val: n_train + 2 * n_val,
        stops_on_file=False,
        stop_skip=NO_LOOP,
    ),
    OptimizerCase(
        "bootstrap_rs",
        build=lambda metric, budget, cbs: BootstrapFewShotWithRandomSearch(
            metric,
            num_candidate_programs=3,
            max_bootstrapped_demos=2,
            max_labeled_demos=2,
            max_metric_calls=budget,
            callbacks=cbs,
        ),
        task_lm=task_lm,
        # the candidate being scored is finished: its teacher runs and its validation
        most_metric_calls=lambda budget, n_train, n_val: budget + n_train + n_val,
        # Validation scores are kept, teacher runs are redone on resume (the LM cache serves them).
        resume="continues",
        kill_at=12,
    ),
    OptimizerCase(
        "dspy_gepa",
        build=lambda metric, budget, cbs: peers().DspyGEPA(
            metric, max_metric_calls=budget, reflection_lm=dspy_toy_reflector(), callbacks=cbs
        ),
        task_lm=dspy_toy_lm,
        most_metric_calls=lambda budget, n_train, n_val: budget + 2 * 3 + n_val,
        stops_on_file=False,
        stop_skip=LIBRARY_LOOP,
        resume="no",
        resume_skip="dspy.GEPA's own resume from its log directory is not checked here",
        requires=("dspy",),
    ),
    OptimizerCase(
        "dspy_mipro",
        build=lambda metric, budget, cbs: peers().DspyMIPROv2(
            metric, max_metric_calls=budget, prompt_lm=dspy_toy_reflector(), callbacks=cbs
        ),
        task_lm=dspy_toy_lm,
        budget=40,
        most_metric_calls=lambda budget, n_train, n_val: budget,
        stops_on_file=False,
        stop_skip=LIBRARY_LOOP,
        resume="no",
        resume_skip="dspy.MIPROv2 cannot resume a killed run: a resumed one starts over",
        requires=("dspy",),
    ),
    OptimizerCase(
        "gepa_lib",
        build=lambda metric, budget, cbs: peers().GepaLibrary(
            metric, max_metric_calls=budget, reflection_lm=dspy_toy_reflector(), callbacks=cbs
        ),
        task_lm=dspy_toy_lm,
        most_metric_calls=lambda budget, n_train, n_val: budget + 2 * 3 + n_val,
        stops_on_file=False,
        stop_skip=LIBRARY_LOOP,
        resume="continues",
        kill_at=12,
        requires=("gepa", "dspy"),
    ),
]


class TestConformance(OptimizerConformance):
    @pytest.fixture(params=CASES, ids=[c.name for c in CASES])
    def case(self, request):
        return request.param
