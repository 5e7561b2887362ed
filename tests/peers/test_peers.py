"""Peer optimizers (dspy.GEPA, dspy.MIPROv2, dspy.BootstrapFewShot, gepa.optimize) from our seed."""

from __future__ import annotations

import json

import pytest

import promptopt as po
from promptopt import peers
from promptopt.optimizers.components import serialize_components
from promptopt.testing import Killed, dies_at
from promptopt.testing.dspy_toy import dspy_toy_lm, dspy_toy_reflector


def run_peer(cls, program, metric, trainset, valset, *, task_lm, run_dir=None, resume=True, **options):
    """A peer runner through the optimizer contract (resuming from ``run_dir`` by default)."""
    return cls(metric, **options).compile(
        program, trainset, valset, lm=task_lm, run_dir=run_dir, resume=resume
    )


TOY_WORDS = ["apple", "berry", "cider", "dates", "elder", "figgy"]
TOY_WORDS += ["grape", "honey", "icing", "jelly", "kiwis", "lemon"]


def data(words, offset):
    return [
        po.Example(_id=f"w{offset + i}", word=w, out=w.upper()).with_inputs("word")
        for i, w in enumerate(words)
    ]


TRAIN, VAL = data(TOY_WORDS[:6], 0), data(TOY_WORDS[6:], 6)


def metric(example, prediction, trace=None):
    if prediction.out == example.out:
        return po.Score(1.0, "Correct.")
    return po.Score(0.0, f"Wrong: expected {example.out!r} (the word in uppercase), got {prediction.out!r}.")


def task_lm(*, demo_works=False):
    return dspy_toy_lm(demo_works=demo_works)


def reflector():
    return dspy_toy_reflector()


def seed_program():
    return po.Predict("word -> out", "Repeat the word.")


def check_common(result, program, budget):
    seed = result.candidates[0]
    assert seed.origin == "seed" and seed.components == serialize_components(program.components())
    assert seed.val_score == 0.0 and set(seed.val_scores) == {e.id for e in VAL}
    assert result.best_score == 1.0 and result.best_id != 0
    assert "uppercase" in result.best_program.instruction
    assert program.instruction == "Repeat the word."  # the seed is untouched
    # The imported best program scores perfectly in promptopt's own runtime.
    assert po.evaluate(result.best_program, VAL, metric, lm=task_lm(), display_progress=False).score == 1.0
    # A peer finishes the step it is in: at most a minibatch pair (3 + 3) and one full validation.
    assert len(VAL) <= result.budget.metric_calls <= budget + 2 * 3 + len(VAL)
    assert result.budget.proposer_lm_calls >= 1 and result.budget.lm_calls > result.budget.metric_calls
    assert result.learning_curve[0][1] == 0.0 and result.learning_curve[-1][1] == 1.0
    assert result.best_id in result.pareto_front


def test_gepa_library_from_our_seed_resumes_from_its_run_dir(tmp_path):
    program = seed_program()
    result = run_peer(
        peers.GepaLibrary,
        program,
        metric,
        TRAIN,
        VAL,
        task_lm=task_lm(),
        reflection_lm=reflector(),
        max_metric_calls=30,
        run_dir=tmp_path,
    )
    check_common(result, program, 30)
    assert result.optimizer == "gepa.optimize"
    assert result.config["peer_reported_metric_calls"] >= result.budget.metric_calls
    assert (tmp_path / "gepa").is_dir() and any((tmp_path / "gepa").iterdir())

    again = run_peer(
        peers.GepaLibrary,
        program,
        metric,
        TRAIN,
        VAL,
        task_lm=task_lm(),
        reflection_lm=reflector(),
        max_metric_calls=30,
        run_dir=tmp_path,
    )
    # The saved state had spent the budget: no new proposal, and the first run's spending is counted
    # (gepa rescores a few pairs when it loads its state; those are counted too).
    assert again.budget.metric_calls >= result.budget.metric_calls
    assert again.budget.proposer_lm_calls == result.budget.proposer_lm_calls
    assert again.config["resumed_after_metric_calls"] == result.budget.metric_calls
    assert [c.components for c in again.candidates] == [c.components for c in result.candidates]


def test_gepa_library_resumed_after_a_kill_counts_the_killed_process(tmp_path):

    dying = dies_at(metric, 16)

    kw = dict(task_lm=task_lm(), max_metric_calls=40, run_dir=tmp_path)
    with pytest.raises(Killed):
        run_peer(peers.GepaLibrary, seed_program(), dying, TRAIN, VAL, reflection_lm=reflector(), **kw)
    spent_before = json.loads((tmp_path / "gepa" / "promptopt_accounting.json").read_text())["metric_calls"]
    assert spent_before >= len(VAL)
    resumed = run_peer(peers.GepaLibrary, seed_program(), metric, TRAIN, VAL, reflection_lm=reflector(), **kw)
    assert resumed.config["resumed_after_metric_calls"] == spent_before
    assert resumed.budget.metric_calls > spent_before
    assert resumed.best_score == 1.0


def test_dspy_gepa_from_our_seed():
    program = seed_program()
    result = run_peer(
        peers.DspyGEPA,
        program,
        metric,
        TRAIN,
        VAL,
        task_lm=task_lm(),
        reflection_lm=reflector(),
        max_metric_calls=30,
    )
    check_common(result, program, 30)
    assert result.optimizer == "dspy.GEPA"
    assert result.config["feedback_metric_calls"] >= 1
    assert result.budget.metric_calls == result.config["peer_reported_metric_calls"]
    best = result.candidates[result.best_id]
    assert best.parents == [0] and best.discovered_at > len(VAL)


def test_dspy_mipro_from_our_seed_spends_the_planned_budget():
    program = seed_program()
    result = run_peer(
        peers.DspyMIPROv2,
        program,
        metric,
        TRAIN,
        VAL,
        task_lm=task_lm(),
        prompt_lm=reflector(),
        max_metric_calls=40,
    )
    check_common(result, program, 40)
    plan = result.config["plan"]
    assert plan["num_candidates"] == 2 and not plan["minibatch"]  # no bootstrapped sets: cost is exact
    assert result.budget.metric_calls == plan["estimated_metric_calls"] <= 40
    assert all(c.val_scores for c in result.candidates)


def test_dspy_bootstrap_imports_demos_and_scores_with_promptopt():
    program = seed_program()
    result = run_peer(
        peers.DspyBootstrapFewShot,
        program,
        metric,
        TRAIN,
        VAL,
        task_lm=task_lm(demo_works=True),
        max_metric_calls=30,
    )
    assert result.best_id == 1 and result.best_score == 1.0 and result.seed_score == 0.0
    demos = result.best_program.demos
    assert demos and all(d.input_keys == {"word"} and d.out == d.word.upper() for d in demos)
    boot = result.config["bootstrap_metric_calls"]
    assert 1 <= boot <= len(TRAIN) and result.budget.metric_calls == boot + 2 * len(VAL)
    with pytest.raises(ValueError, match="nothing for bootstrapping"):
        run_peer(
            peers.DspyBootstrapFewShot, program, metric, TRAIN, VAL, task_lm=task_lm(), max_metric_calls=12
        )


@pytest.mark.parametrize("budget", [30, 100, 400, 2000])
@pytest.mark.parametrize(
    ("n_train", "n_val", "n_preds"), [(6, 6, 1), (30, 30, 2), (100, 100, 1), (200, 50, 3)]
)
def test_mipro_plan_fits_the_budget(budget, n_train, n_val, n_preds):
    plan = peers.mipro_settings(budget, n_train, n_val, n_preds)
    assert plan.num_trials >= 1 and plan.num_candidates >= 2
    assert plan.minibatch == (n_val > 35) and plan.minibatch_size == min(35, n_val)
    if plan.estimated_metric_calls > budget:  # only when one trial does not fit at all
        assert plan.num_candidates == 2 and plan.num_trials == 1
    bigger = peers.mipro_settings(budget * 4, n_train, n_val, n_preds)
    assert (bigger.num_candidates, bigger.num_trials) >= (plan.num_candidates, plan.num_trials)


def test_dspy_mipro_with_minibatches_spends_the_planned_budget():
    # 40 validation examples: MIPROv2 scores minibatches of 35 and fully evaluates every few trials.
    val = [po.Example(_id=f"v{i}", word=f"word{i}x", out=f"WORD{i}X").with_inputs("word") for i in range(40)]
    result = run_peer(
        peers.DspyMIPROv2,
        seed_program(),
        metric,
        TRAIN,
        val,
        task_lm=task_lm(),
        prompt_lm=reflector(),
        max_metric_calls=260,
    )
    plan = result.config["plan"]
    assert plan["minibatch"] and plan["minibatch_size"] == 35 and plan["num_candidates"] == 2
    assert result.budget.metric_calls == plan["estimated_metric_calls"] <= 260
    assert result.best_score == 1.0 and result.seed_score == 0.0
