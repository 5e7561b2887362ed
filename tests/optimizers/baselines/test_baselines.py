"""Few-shot baselines with scripted LMs: demo bootstrapping, limits, thresholds, random search."""

import json
import random

import pytest

import promptopt as po
from promptopt.optimizers import BootstrapFewShot, BootstrapFewShotWithRandomSearch, LabeledFewShot
from promptopt.optimizers.bootstrap import Bootstrapper, demo_sets
from promptopt.testing import TOY_WORDS, ScriptedLM, field_value, last_user_message, toy_examples

data = toy_examples


def metric(ex, pred, trace=None):
    return float(pred.out == ex.out)


def program():
    return po.Predict("word -> out", "Repeat the word.")


def lm_right_for(good, *, demo_works=False, min_demos=1):
    """Uppercases the words in ``good`` (and every word when ``min_demos`` demos are shown, if
    ``demo_works``)."""

    def reply(messages):
        word = field_value(last_user_message(messages), "word")
        shown = demo_works and sum(m["role"] == "assistant" for m in messages) >= min_demos
        return f"out: {word.upper() if (word in good or shown) else word}"

    return ScriptedLM(reply)


def split_demos(demos, train_ids):
    """(bootstrapped, labeled): labeled demos are training examples and keep their ids."""
    boot = [d for d in demos if d.id not in train_ids]
    labeled = [d for d in demos if d.id in train_ids]
    return boot, labeled


@pytest.mark.parametrize("max_boot, max_labeled", [(2, 5), (3, 0), (0, 4), (0, 0), (4, 2), (1, 1)])
def test_bootstrap_honours_limits_exactly(max_boot, max_labeled):
    train = data(10)
    lm = lm_right_for(set(TOY_WORDS))
    res = BootstrapFewShot(metric, max_bootstrapped_demos=max_boot, max_labeled_demos=max_labeled).compile(
        program(), train, lm=lm
    )
    demos = res.best_program.get_demos()["self"]
    boot, labeled = split_demos(demos, {e.id for e in train})
    assert len(boot) == max_boot
    assert len(labeled) == max(0, max_labeled - max_boot)
    assert all(d["out"] == d["word"].upper() for d in boot)
    # lazily: only as many teacher runs as it took to fill the slots (a batch of 4 at a time)
    assert res.budget.metric_calls == (0 if max_boot == 0 else 4 * -(-max_boot // 4))
    if max_boot or max_labeled:
        assert [c.origin for c in res.candidates] == ["seed", "bootstrap"] and res.best_id == 1
    else:  # no demos at all: the same program as the seed, not listed twice
        assert [c.origin for c in res.candidates] == ["seed"] and res.best_id == 0


def test_failing_traces_and_errors_are_excluded_without_crashing():
    train = data(10)

    def reply(messages):
        word = field_value(last_user_message(messages), "word")
        if word in ("apple", "dates"):
            raise RuntimeError("server fell over")
        if word == "berry":
            return "this reply has no output field at all"
        return f"out: {word.upper() if word in ('cider', 'grape', 'honey') else word}"

    def flaky_metric(ex, pred, trace=None):
        if ex.word == "grape":
            raise ValueError("metric bug")
        return float(pred.out == ex.out)

    res = BootstrapFewShot(flaky_metric, max_bootstrapped_demos=4, max_labeled_demos=0).compile(
        program(), train, lm=ScriptedLM(reply)
    )
    demos = res.best_program.get_demos()["self"]
    assert sorted(d["word"] for d in demos) == ["cider", "honey"]  # only the clean passing runs
    # every example tried, none crashed the run; the LM and metric failures are not metric calls
    assert res.budget.metric_calls == 7 and res.budget.unscored_calls == 3


def test_metric_threshold_admits_partial_credit():
    train = data(6)

    def partial(ex, pred, trace=None):
        return 1.0 if pred.out == ex.out else (0.5 if pred.out.lower() == ex.out.lower() else 0.0)

    lm = lm_right_for({"apple"})  # right for apple, right-but-lowercase for the rest
    strict = BootstrapFewShot(partial, max_bootstrapped_demos=3, max_labeled_demos=0).compile(
        program(), train, lm=lm
    )
    assert [d["word"] for d in strict.best_program.get_demos()["self"]] == ["apple"]
    loose = BootstrapFewShot(partial, max_bootstrapped_demos=3, max_labeled_demos=0, metric_threshold=0.5)
    demos = loose.compile(program(), train, lm=lm).best_program.get_demos()["self"]
    assert [d["word"] for d in demos] == ["apple", "berry", "cider"]


class Pipe(po.Program):
    def __init__(self):
        self.first = po.Predict("word -> mid", "Copy the word.")
        self.second = po.Predict("mid -> out", "Uppercase the text.")

    def forward(self, word):
        return self.second(mid=self.first(word=word).mid)


def pipe_lm():
    def reply(messages):
        user = last_user_message(messages)
        if user.startswith("word:"):
            return f"mid: {field_value(user, 'word')}!"
        return f"out: {field_value(user, 'mid').rstrip('!').upper()}"

    return ScriptedLM(reply)


def test_bootstrap_gives_each_predictor_its_own_demos_with_intermediate_fields():
    train = data(6)
    res = BootstrapFewShot(metric, max_bootstrapped_demos=2, max_labeled_demos=3).compile(
        Pipe(), train, lm=pipe_lm()
    )
    demos = res.best_program.get_demos()
    first_boot, first_lab = split_demos(demos["first"], {e.id for e in train})
    second_boot, _ = split_demos(demos["second"], {e.id for e in train})
    assert [d["mid"] for d in first_boot] == ["apple!", "berry!"]
    assert [(d["mid"], d["out"]) for d in second_boot] == [("apple!", "APPLE"), ("berry!", "BERRY")]
    assert second_boot[0].input_keys == {"mid"} and first_boot[0].input_keys == {"word"}
    assert len(first_lab) == 1 and first_lab[0]["word"] == "cider"


def test_later_rounds_sample_anew_for_failed_examples():
    def reply(messages):
        return "out: x"

    seen = []

    class Recording(ScriptedLM):
        def __call__(self, messages, **options):
            seen.append(options)
            word = field_value(last_user_message(messages), "word")
            text = f"out: {word.upper() if options.get('temperature') == 0.7 else word}"
            return ScriptedLM([text])(messages, **options)

    res = BootstrapFewShot(metric, max_bootstrapped_demos=2, max_labeled_demos=0, max_rounds=2).compile(
        program(), data(4), lm=Recording(reply)
    )
    assert len(res.best_program.get_demos()["self"]) == 2
    assert {o.get("rollout_id") for o in seen} == {None, 1}


def test_teacher_must_match_the_program_and_data_errors_say_what_to_do():
    with pytest.raises(ValueError, match="teacher"):
        BootstrapFewShot(metric, teacher=Pipe()).compile(program(), data(3), lm=pipe_lm())
    with pytest.raises(ValueError, match="non-empty trainset"):
        BootstrapFewShot(metric).compile(program(), [], lm=pipe_lm())
    with pytest.raises(ValueError, match="duplicate"):
        LabeledFewShot(2).compile(program(), data(2) + data(2))
    with pytest.raises(ValueError, match="no predictors"):
        LabeledFewShot(2).compile(po.Program(), data(2))
    with pytest.raises(ValueError, match="0 or more"):
        BootstrapFewShot(metric, max_labeled_demos=-1)


def test_labeled_few_shot_draws_k_and_scores_on_request():
    train = data(10)
    res = LabeledFewShot(3, seed=5).compile(program(), train)
    demos = res.best_program.get_demos()["self"]
    assert [d.id for d in demos] == [e.id for e in random.Random(5).sample(train, 3)]
    assert len(res.candidates) == 2 and res.best_id == 1 and res.budget.metric_calls == 0
    assert sorted(
        LabeledFewShot(50).compile(program(), train).best_program.get_demos()["self"], key=lambda d: d.id
    ) == sorted(train, key=lambda d: d.id)
    scored = LabeledFewShot(2, metric=metric, score=True).compile(
        program(), train, data(4, offset=12), lm=lm_right_for(set(), demo_works=True)
    )
    assert scored.candidates[0].val_score == 0.0 and scored.candidates[1].val_score == 1.0
    assert scored.budget.metric_calls == 8
    with pytest.raises(ValueError, match="needs a metric"):
        LabeledFewShot(2, score=True)


def test_demo_sets_are_varied_and_the_teacher_runs_once_per_example():
    train = data(12)
    lm = lm_right_for(set(TOY_WORDS))
    boot = Bootstrapper(program(), metric, lm=lm, num_threads=1)
    sets = demo_sets(
        boot, ["self"], train, 6, max_bootstrapped_demos=3, max_labeled_demos=4, rng=random.Random(0)
    )
    ids = {e.id for e in train}
    kinds = [split_demos(s["self"], ids) for s in sets]
    assert [len(b) for b, _ in kinds][:2] == [0, 3]  # labeled-only, then in-order bootstrap
    assert all(1 <= len(b) <= 3 and len(b) + len(lab) == 4 for b, lab in kinds[1:])
    assert len({json.dumps([d.to_dict() for d in s["self"]]) for s in sets}) >= 4
    assert boot.metric_calls == len(lm.calls) <= len(train)  # reused across sets


def test_random_search_scores_every_kind_and_picks_the_best():
    train, val = data(8), data(6, offset=10)
    # two demos are needed: the labeled-only set has one, the in-order bootstrap has two
    lm = lm_right_for({"apple", "berry", "cider", "dates"}, demo_works=True, min_demos=2)
    res = BootstrapFewShotWithRandomSearch(
        metric, num_candidate_programs=3, max_bootstrapped_demos=2, max_labeled_demos=1
    ).compile(program(), train, val, lm=lm)
    origins = [c.origin for c in res.candidates]
    # the seed has no demos, so zero-shot is the same program and is not scored twice
    assert origins[0] == "seed" and "zero-shot" not in origins
    assert origins[1:3] == ["labeled", "bootstrap"] and len(origins) == 6
    assert res.seed_score == 0.0 and res.candidates[1].val_score == 0.0
    assert res.best_score == 1.0 and res.best_id == 2
    assert res.best_program.get_demos()["self"]
    assert all(len(c.val_scores) == 6 for c in res.candidates)
    assert res.learning_curve[0][1] == 0.0 and res.learning_curve[-1][1] == 1.0
    teacher_runs = res.budget.metric_calls - 6 * len(res.candidates)
    assert 0 < teacher_runs <= len(train)


def test_random_search_budget_and_resume(tmp_path):
    train, val = data(8), data(6, offset=10)
    lm = lm_right_for({"apple"}, demo_works=True)

    def opt(**kw):
        return BootstrapFewShotWithRandomSearch(
            metric, num_candidate_programs=4, max_bootstrapped_demos=1, max_labeled_demos=1, **kw
        )

    cut = opt(max_metric_calls=10).compile(program(), train, val, lm=lm, run_dir=tmp_path / "r")
    assert "budget of 10" in cut.stop_reason and len(cut.candidates) == 2
    val_lm = lm_right_for({"apple"}, demo_works=True)
    full = opt().compile(program(), train, val, lm=val_lm, run_dir=tmp_path / "r", resume=True)
    assert len(full.candidates) > 2 and full.stop_reason == "all candidates scored"
    # the two candidates scored before were not scored again
    val_calls = [
        c
        for c in val_lm.calls
        if field_value(last_user_message(c["messages"]), "word") in {e.word for e in val}
    ]
    assert len(val_calls) == 6 * (len(full.candidates) - 2)
    assert json.loads((tmp_path / "r" / "result.json").read_text())["best_id"] == full.best_id
    assert full.budget.metric_calls >= 6 * len(full.candidates)  # the first session's runs count too
    with pytest.raises(ValueError, match=r"holds a promptopt\.BootstrapFewShotWithRandomSearch run"):
        BootstrapFewShot(metric, score=True).compile(
            program(), train, val, lm=lm, run_dir=tmp_path / "r", resume=True
        )
