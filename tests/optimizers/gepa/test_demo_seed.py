"""``seed_demos=k``: GEPA starts from the seed and from the seed with BootstrapFewShot's demos (the
calls of its own successful training runs, then labeled examples), bootstrapped within the budget."""

from __future__ import annotations

import hashlib

import pytest

from promptopt.optimizers import GEPA, BootstrapFewShot, Callback, phases
from promptopt.optimizers.gepa.validation import StagedValidation
from promptopt.testing import (
    Killed,
    ScriptedLM,
    field_value,
    resumes_to_the_uninterrupted_run,
    toy_examples,
    toy_metric,
    toy_program,
    toy_reply,
    toy_request,
)
from tests.optimizers.gepa.test_budget import reflection_reply, task_reply


def shown_lm():
    """Right exactly when a demo is shown: only demos can help."""
    return ScriptedLM(lambda messages: toy_reply(messages, lambda word, system, shown: shown))


def gepa(**options) -> GEPA:
    opts = dict(
        max_metric_calls=80,
        reflection_lm=ScriptedLM(reflection_reply),
        proposer="rules",
        progress=False,
        evolve_demos=False,
        minibatch_size=3,
        max_stalled_iterations=1000,
        seed_demos=2,
        seed=0,
    )
    opts.update(options)
    return GEPA(toy_metric, **opts)


def test_the_demo_candidate_starts_beside_the_seed_and_wins_where_demos_help():
    result = gepa().compile(toy_program(), toy_examples(10), toy_examples(6, offset=10), lm=shown_lm())
    demo = result.candidates[1]
    assert demo.origin == "demos:bootstrap" and demo.parents == [0]
    assert len(demo.components["self.demos"]) == 2 and result.seed_score == 0.0 and demo.val_score == 1.0
    # The seed never succeeds, so no trace makes a demo: labeled training examples fill in, after the
    # most runs allowed (4 per successful run wanted, and 2 are wanted).
    assert result.budget.metric_calls_by_phase[phases.BOOTSTRAP] == 8
    assert result.best_id == 1 and result.budget.metric_calls <= 80


def test_demos_come_from_the_seeds_successful_runs_which_later_minibatches_reuse():
    result = gepa(labeled_demos=False).compile(
        toy_program(), toy_examples(10), toy_examples(6, offset=10), lm=ScriptedLM(task_reply)
    )
    demo = result.candidates[1]
    assert demo.origin == "demos:bootstrap" and len(demo.components["self.demos"]) == 2
    by_phase = result.budget.metric_calls_by_phase
    assert 2 <= by_phase[phases.BOOTSTRAP] <= 8 and sum(by_phase.values()) == result.budget.metric_calls
    assert result.budget.metric_calls <= 80


def test_the_demo_candidate_is_bootstrap_fewshots_program_so_gepa_ends_at_least_as_high():
    train, val = toy_examples(10), toy_examples(6, offset=10)
    bfs = BootstrapFewShot(toy_metric, score=True).compile(
        toy_program(), train, val, lm=ScriptedLM(task_reply)
    )
    result = gepa(seed_demos=16, max_metric_calls=60).compile(
        toy_program(), train, val, lm=ScriptedLM(task_reply)
    )
    demos = result.candidates[1].components["self.demos"]
    assert demos == bfs.candidates[-1].components["self.demos"]
    # 4 from successful runs (inputs and the LM's outputs, no example id of the training set), then
    # the other 6 training examples in order.
    assert len(demos) == 10 and not {d["id"] for d in demos[:4]} & {e.id for e in train}
    used = {d["fields"]["word"] for d in demos[:4]}
    assert [d["id"] for d in demos[4:]] == [e.id for e in train if e.word not in used]
    assert result.candidates[1].val_score == bfs.candidates[-1].val_score
    assert result.best_score >= bfs.candidates[-1].val_score


def test_with_no_traces_wanted_the_demo_candidate_holds_labeled_examples_and_runs_nothing():
    train, val = toy_examples(10), toy_examples(6, offset=10)
    result = gepa(seed_traces=0).compile(toy_program(), train, val, lm=shown_lm())
    assert [d["id"] for d in result.candidates[1].components["self.demos"]] == ["w0", "w1"]
    assert phases.BOOTSTRAP not in result.budget.metric_calls_by_phase


def test_demos_past_the_character_limit_are_left_out():
    train, val = toy_examples(10), toy_examples(6, offset=10)
    result = gepa(seed_traces=0, seed_demos=10, max_demo_chars=30).compile(
        toy_program(), train, val, lm=shown_lm()
    )
    demos = result.candidates[1].components["self.demos"]
    assert 0 < len(demos) < 10 and sum(len(v) for d in demos for v in d["fields"].values()) <= 30


def test_without_room_in_the_budget_no_demo_candidate_is_made():
    result = gepa(max_metric_calls=7).compile(
        toy_program(), toy_examples(10), toy_examples(6, offset=10), lm=shown_lm()
    )
    assert len(result.candidates) == 1 and result.budget.metric_calls == 6


class DieOnTheDemoCandidate(Callback):
    def on_candidate_accepted(self, event):
        if event["candidate"]["origin"] == "demos:bootstrap":
            raise Killed


def test_a_run_killed_while_making_the_demo_candidate_resumes_to_the_uninterrupted_result(tmp_path):
    def compile_(run_dir, callbacks=(), resume=False):
        return gepa(callbacks=list(callbacks)).compile(
            toy_program(),
            toy_examples(10),
            toy_examples(6, offset=10),
            lm=ScriptedLM(task_reply),
            run_dir=run_dir,
            resume=resume,
        )

    resumes_to_the_uninterrupted_run(compile_, DieOnTheDemoCandidate(), tmp_path)


def test_a_negative_count_is_refused():
    with pytest.raises(ValueError, match="seed_demos must be 0 \\(none\\) or more, not -1"):
        GEPA(toy_metric, max_metric_calls=10, seed_demos=-1)
    with pytest.raises(ValueError, match="seed_traces must be 0 \\(labeled demos only\\) or more, not -2"):
        GEPA(toy_metric, max_metric_calls=10, seed_traces=-2)


def seed_right(word: str) -> bool:
    return hashlib.sha256(word.encode()).digest()[1] < 100


def first_demo_lm(first_word: str) -> ScriptedLM:
    """Without demos: right on about half of the words. With demos: right on about two thirds of
    them, and only when the first demo shown is ``first_word`` (BootstrapFewShot's first trace)."""

    def reply(messages):
        word, _, shown = toy_request(messages)
        if shown:
            lucky = hashlib.sha256(word.encode()).digest()[0] < 230
            right = lucky and field_value(messages[1]["content"], "word") == first_word
        else:
            right = seed_right(word)
        return f"out: {word.upper() if right else word}"

    return ScriptedLM(reply)


class Rejections(Callback):
    def __init__(self):
        self.events = []

    def on_candidate_rejected(self, event):
        self.events.append(event)


def test_a_budget_too_small_for_a_proposal_goes_to_spare_demo_sets_screened_in_stages():
    train, val = toy_examples(10), toy_examples(8, offset=10)
    first = next(e.word for e in train if seed_right(e.word))
    rejections = Rejections()
    result = gepa(
        seed_demos=16,
        max_metric_calls=40,
        screened_reflections=False,
        staged_seed=False,
        callbacks=[rejections],
    ).compile(toy_program(), train, val, lm=first_demo_lm(first))
    assert [c.origin for c in result.candidates] == ["seed", "demos:bootstrap"]
    assert result.best_id == 1 and result.best_score > result.seed_score
    spare = [e for e in rejections.events if e["component"] == "demos:spare"]
    # Each spare set starts with another first demo, falls behind on the first stage (3 of the 8
    # validation examples) and is dropped there; the next one gets the rest of the budget.
    assert len(spare) >= 2 and all(len(e["example_ids"]) == 3 for e in spare)
    assert all(e["parent_id"] == 1 and e["child_score"] < e["parent_score"] for e in spare)
    left = 40 - result.budget.metric_calls
    assert 0 <= left < len(val) and result.budget.metric_calls_by_phase[phases.VALIDATION] == 16 + 3 * len(
        spare
    )


def test_spare_demo_sets_that_hold_up_join_the_candidates():
    result = gepa(seed_demos=16, max_metric_calls=60, screened_reflections=False).compile(
        toy_program(), toy_examples(10), toy_examples(6, offset=10), lm=ScriptedLM(task_reply)
    )
    spare = [c for c in result.candidates if c.origin == "demos:spare"]
    assert spare and all(len(c.val_scores) == 6 and len(c.components["self.demos"]) == 10 for c in spare)
    assert result.budget.metric_calls <= 60


def rare_lm() -> ScriptedLM:
    """Without demos right on about a quarter of the words, with demos on about three quarters."""

    def reply(messages):
        word, _, shown = toy_request(messages)
        byte = hashlib.sha256(word.encode()).digest()[2]
        return f"out: {word.upper() if byte < (190 if shown else 64) else word}"

    return ScriptedLM(reply)


@pytest.mark.parametrize("validation", ["full", "adaptive"])
def test_a_seed_that_rarely_succeeds_still_gets_bootstrap_fewshots_demos_within_a_small_budget(validation):
    # 10 training runs find the 4 successes; the budget pays for them and the demo set's validation,
    # though not for a proposal after them. Under staged validation the set is still scored on
    # every validation example, as BootstrapFewShot's program is.
    train, val = toy_examples(10), toy_examples(8, offset=10)
    bfs = BootstrapFewShot(toy_metric, score=True).compile(toy_program(), train, val, lm=rare_lm())
    result = gepa(seed_demos=16, max_metric_calls=36, validation=validation).compile(
        toy_program(), train, val, lm=rare_lm()
    )
    expected = bfs.candidates[-1]
    demo = result.candidates[1]
    assert demo.components["self.demos"] == expected.components["self.demos"]
    assert len(demo.val_scores) == len(val) and demo.val_score == expected.val_score > result.seed_score
    assert result.best_score >= expected.val_score and result.budget.metric_calls <= 36


def test_under_staged_validation_the_demo_candidate_is_scored_on_every_validation_example():
    # The seed is right only on the first stage's words; demos make every word right but one of
    # those: behind on the first stage (2 of 3), ahead on the whole set (7 of 8 against 3).
    train, val = toy_examples(10), toy_examples(8, offset=10)
    first = {e.word for e in StagedValidation(val, 3, 0).first_stage()}
    dropped = sorted(first)[0]
    lm = ScriptedLM(
        lambda m: toy_reply(m, lambda word, _, shown: word != dropped if shown else word in first)
    )
    result = gepa(seed_demos=16, max_metric_calls=60, validation="adaptive", staged_seed=False).compile(
        toy_program(), train, val, lm=lm
    )
    assert result.candidates[1].origin == "demos:bootstrap" and result.best_id == 1
    assert (result.seed_score, result.best_score) == (3 / 8, 7 / 8)


def test_where_the_seed_ties_bootstrap_fewshots_program_gepa_returns_the_program():
    # The task LM ignores demos, so every candidate scores as the seed does on validation.
    result = gepa(seed_demos=16, max_metric_calls=30, screened_reflections=False).compile(
        toy_program(), toy_examples(10), toy_examples(6, offset=10), lm=ScriptedLM(task_reply)
    )
    assert result.candidates[1].origin == "demos:bootstrap"
    assert result.candidates[1].val_score == result.seed_score and result.best_id == 1


def test_a_seed_behind_the_demo_candidate_on_the_first_stage_is_scored_no_further():
    train, val = toy_examples(10), toy_examples(8, offset=10)
    rejections = Rejections()
    result = gepa(seed_demos=16, max_metric_calls=60, staged_seed=True, callbacks=[rejections]).compile(
        toy_program(), train, val, lm=shown_lm()
    )
    seed, demo = result.candidates[0], result.candidates[1]
    first = [e.id for e in StagedValidation(val, 3, 0).first_stage()]
    assert list(seed.val_scores) == sorted(first, key=[e.id for e in val].index)
    assert len(demo.val_scores) == len(val) and result.best_id == 1
    (event,) = [e for e in rejections.events if e["component"] == "seed"]
    assert event["parent_id"] == 1 and event["example_ids"] == first
    # 3 seed runs instead of 8: the demo candidate is perfect, so the run ends there.
    assert result.budget.metric_calls_by_phase[phases.VALIDATION] == 3 + len(val)


def test_a_seed_that_keeps_up_with_the_demo_candidate_is_scored_on_every_example_and_can_win():
    train, val = toy_examples(10), toy_examples(8, offset=10)
    demos_hurt = ScriptedLM(lambda messages: toy_reply(messages, lambda word, system, shown: not shown))
    result = gepa(seed_demos=16, max_metric_calls=60, staged_seed=True).compile(
        toy_program(), train, val, lm=demos_hurt
    )
    assert len(result.candidates[0].val_scores) == len(val) and result.best_id == 0
    assert result.seed_score == 1.0 and result.candidates[1].val_score == 0.0


def test_without_a_demo_candidate_or_by_default_the_seed_is_scored_on_every_example():
    train, val = toy_examples(10), toy_examples(8, offset=10)
    no_room = gepa(seed_demos=16, max_metric_calls=10, staged_seed=True).compile(
        toy_program(), train, val, lm=shown_lm()
    )
    assert [c.origin for c in no_room.candidates] == ["seed"] and len(no_room.candidates[0].val_scores) == 8
    off = gepa(seed_demos=16, max_metric_calls=60).compile(toy_program(), train, val, lm=shown_lm())
    assert len(off.candidates[0].val_scores) == len(val) and off.best_id == 1


def test_a_budget_too_small_for_any_other_step_completes_the_seeds_validation():
    train, val = toy_examples(10), toy_examples(8, offset=10)

    def run(budget):
        return gepa(
            seed_demos=16, max_metric_calls=budget, screened_reflections=False, staged_seed=True
        ).compile(toy_program(), train, val, lm=rare_lm())

    stopped = run(60)
    seed_runs = len(stopped.candidates[0].val_scores)
    assert seed_runs < len(val) and stopped.best_id == 1  # behind the demo candidate on a stage
    spent_before = stopped.candidates[1].discovered_at
    # Left after the demo candidate: less than a validation (no spare demo set), enough for the rest
    # of the seed's.
    completed = run(spent_before + len(val) - 1)
    assert len(completed.candidates[0].val_scores) == len(val)
    assert completed.budget.metric_calls == spent_before + len(val) - seed_runs
