"""Spare reflections: a budget too small for one more proposal (two minibatch runs and a full
validation) still pays for a reflection on the seed's own training runs, judged on validation stages
against the best candidate, whose demos hold the training examples."""

from __future__ import annotations

import hashlib

from promptopt.optimizers import GEPA, Callback, phases
from promptopt.testing import (
    Killed,
    ScriptedLM,
    resumes_to_the_uninterrupted_run,
    toy_examples,
    toy_metric,
    toy_program,
    toy_request,
)
from tests.optimizers.gepa.test_demo_seed import Rejections

TRAIN, VAL = toy_examples(10), toy_examples(8, offset=10)
# The seed never succeeds, so its bootstrap runs all 10 training examples (4 per wanted trace, 4
# traces wanted, at most the training set) and labeled examples make the demos: the seed's 8
# validation runs, 10 bootstrap runs and the demo candidate's 8 validation runs spend 26 calls. A
# proposal costs 2 * 3 + 8 = 14; a budget of 36 leaves 10 for one spare step.
SPENT_BEFORE_SPARE = 26


def often(word: str) -> bool:
    """True on about three quarters of the words: 5 of the 8 validation words, 2 of the 3 that a
    staged validation scores first."""
    return hashlib.sha256(word.encode()).digest()[0] < 192


def task_lm(fixed_by: str = "capitals", broken_by: str = "backwards") -> ScriptedLM:
    """Wrong without demos; with demos right on about three quarters of the words; right on every word when
    the instruction says ``fixed_by``, wrong on every word when it says ``broken_by``."""

    def reply(messages):
        word, system, shown = toy_request(messages)
        right = fixed_by in system or (shown and often(word) and broken_by not in system)
        return f"out: {word.upper() if right else word}"

    return ScriptedLM(reply)


def rules_lm(rule: str) -> ScriptedLM:
    """Writes ``rule``, worded after the prompt it was shown (so no two children are the same)."""

    def reply(messages):
        variant = hashlib.sha256(messages[-1]["content"].encode()).hexdigest()[:6]
        return f"Rules:\n- {rule} ({variant})"

    return ScriptedLM(reply)


def gepa(budget: int, reflection_lm: ScriptedLM, **options) -> GEPA:
    opts = dict(
        max_metric_calls=budget,
        reflection_lm=reflection_lm,
        proposer="rules",
        progress=False,
        evolve_demos=False,
        minibatch_size=3,
        max_stalled_iterations=1000,
        seed=0,
        staged_seed=False,  # the seed on every validation example: the budgets below count on it
    )
    return GEPA(toy_metric, **{**opts, **options})


def test_a_reflection_that_fits_no_proposal_rewrites_the_demo_candidates_instruction_and_joins():
    reflector = rules_lm("Write the word in capitals.")
    result = gepa(36, reflector).compile(toy_program(), TRAIN, VAL, lm=task_lm())
    assert [c.origin for c in result.candidates] == ["seed", "demos:bootstrap", "reflection:self.instruction"]
    demo, child = result.candidates[1], result.candidates[2]
    # The demo candidate's demos with a rewritten instruction; scored on every validation example.
    assert child.parents == [1] and child.components["self.demos"] == demo.components["self.demos"]
    assert "capitals" in child.components["self.instruction"] and len(child.val_scores) == len(VAL)
    assert result.best_id == 2 and result.best_score == 1.0 > demo.val_score > result.seed_score
    # No training minibatch was run: the reflection read the seed's bootstrap runs, shown the
    # seed's training words and none of the validation words.
    by_phase = result.budget.metric_calls_by_phase
    assert phases.MINIBATCH not in by_phase and by_phase[phases.BOOTSTRAP] == len(TRAIN)
    assert by_phase[phases.VALIDATION] == 3 * len(VAL) and result.budget.metric_calls <= 36
    (call,) = reflector.calls
    assert call["options"]["rollout_id"].endswith("-spare1")  # not an iteration's rollout
    prompt = call["messages"][-1]["content"]
    assert any(e.word in prompt for e in TRAIN) and not any(e.word in prompt for e in VAL)


def test_a_rewrite_that_falls_behind_costs_the_first_validation_stage_only():
    rejections = Rejections()
    reflector = rules_lm("Write the word backwards.")
    result = gepa(36, reflector, callbacks=[rejections]).compile(toy_program(), TRAIN, VAL, lm=task_lm())
    assert [c.origin for c in result.candidates] == ["seed", "demos:bootstrap"] and len(reflector.calls) == 1
    (event,) = rejections.events
    assert (
        event["stage"] == "validation"
        and event["parent_id"] == 1
        and event["component"] == "self.instruction"
    )
    assert len(event["example_ids"]) == 3 and event["child_score"] < event["parent_score"]
    assert set(event["example_ids"]) <= {e.id for e in VAL}
    # 7 calls left: less than a validation, so nothing more is tried.
    assert result.budget.metric_calls == SPENT_BEFORE_SPARE + 3 and "budget" in result.stop_reason


def test_spare_reflections_and_spare_demo_sets_take_turns_reflection_first():
    rejections = Rejections()
    reflector = rules_lm("Write the word backwards.")
    # 13 calls left: the rejected reflection spends 3, a spare demo set the next ones.
    result = gepa(39, reflector, callbacks=[rejections]).compile(toy_program(), TRAIN, VAL, lm=task_lm())
    kinds = [e["component"] for e in rejections.events] + [c.origin for c in result.candidates[2:]]
    assert kinds[:2] == ["self.instruction", "demos:spare"] and len(reflector.calls) == 1
    assert result.budget.metric_calls <= 39


def test_without_spare_reflections_the_reflection_lm_is_never_called():
    reflector = rules_lm("Write the word in capitals.")
    result = gepa(36, reflector, screened_reflections=False).compile(toy_program(), TRAIN, VAL, lm=task_lm())
    assert reflector.calls == [] and all(not c.origin.startswith("reflection") for c in result.candidates)


def test_a_seed_right_on_every_training_run_leaves_nothing_to_reflect_on():
    def reply(messages):
        word, _, _ = toy_request(messages)
        right = word in {e.word for e in TRAIN} or often(word)
        return f"out: {word.upper() if right else word}"

    reflector = rules_lm("Write the word in capitals.")
    gepa(36, reflector).compile(toy_program(), TRAIN, VAL, lm=ScriptedLM(reply))
    assert reflector.calls == []


class DieOnTheReflectionChild(Callback):
    def on_candidate_accepted(self, event):
        if event["candidate"]["origin"].startswith("reflection"):
            raise Killed


def test_a_run_killed_as_a_spare_reflection_joins_resumes_to_the_uninterrupted_result(tmp_path):
    def compile_(run_dir, callbacks=(), resume=False):
        return gepa(36, rules_lm("Write the word in capitals."), callbacks=list(callbacks)).compile(
            toy_program(), TRAIN, VAL, lm=task_lm(), run_dir=run_dir, resume=resume
        )

    full, _ = resumes_to_the_uninterrupted_run(compile_, DieOnTheReflectionChild(), tmp_path)
    assert full.candidates[-1].origin == "reflection:self.instruction"


class Minibatches(Callback):
    def __init__(self):
        self.parents = []

    def on_minibatch_evaluated(self, event):
        self.parents.append(event["candidate_id"])


def test_iterations_on_a_parent_with_demos_reflect_on_the_seeds_runs_and_screen_on_validation():
    minibatches, rejections = Minibatches(), Rejections()
    reflector = rules_lm("Write the word backwards.")
    result = gepa(
        80, reflector, parent_selector="best", callbacks=[minibatches, rejections], use_merge=False
    ).compile(toy_program(), TRAIN, VAL, lm=task_lm())
    # The demo candidate is the best, so every iteration starts from it: none runs a training
    # minibatch (its demos hold those examples), each child falls behind on the first stage.
    assert result.best_id == 1 and minibatches.parents == []
    assert phases.MINIBATCH not in result.budget.metric_calls_by_phase
    assert len(rejections.events) >= 4 and len(reflector.calls) == len(rejections.events)
    assert all(e["stage"] == "validation" and e["parent_id"] == 1 for e in rejections.events)
    assert all(len(e["example_ids"]) == 3 for e in rejections.events)
    # Each child starts on the next 3 examples of the staged order (wrapping around).
    first, second, third = (set(e["example_ids"]) for e in rejections.events[:3])
    assert not first & second and not second & third and len(first | second | third) == len(VAL)
    assert result.budget.metric_calls <= 80


def test_without_screened_reflections_a_parent_with_demos_is_judged_on_training_minibatches():
    minibatches = Minibatches()
    gepa(
        80,
        rules_lm("Write the word backwards."),
        parent_selector="best",
        callbacks=[minibatches],
        screened_reflections=False,
    ).compile(toy_program(), TRAIN, VAL, lm=task_lm())
    assert 1 in minibatches.parents


class Outcomes(Callback):
    """What each screened child or spare set was, in order: its component, or a joined origin."""

    def __init__(self):
        self.kinds = []

    def on_candidate_rejected(self, event):
        self.kinds.append(event["component"])

    def on_candidate_accepted(self, event):
        if event["candidate"]["origin"] != "demos:bootstrap":
            self.kinds.append(event["candidate"]["origin"])


def test_the_spare_steps_count_the_iterations_screened_children_as_reflections():
    outcomes = Outcomes()
    reflector = rules_lm("Write the word backwards.")
    # 14 left after the demo candidate: one screened iteration (a proposal's worth), then 11 for
    # spare steps: a demo set first, since the iteration already made a reflection.
    gepa(40, reflector, callbacks=[outcomes], use_merge=False).compile(
        toy_program(), TRAIN, VAL, lm=task_lm()
    )
    assert outcomes.kinds[0] == "self.instruction" and "demos:spare" in outcomes.kinds[1]
