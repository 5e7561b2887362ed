"""Where the wall time went: each optimizer's budget splits its seconds by phase (proposals
included), a serial run's phases fit in its wall time, and a resumed run keeps the earlier
process's seconds."""

from __future__ import annotations

import json
import threading
import time

import pytest

from promptopt.optimizers import GEPA, BootstrapFewShot, Callback, MIPROv2, phases
from promptopt.optimizers.phase_clock import PhaseClock
from promptopt.testing import (
    Killed,
    ScriptedLM,
    toy_examples,
    toy_metric,
    toy_program,
    toy_proposer,
    toy_reply,
)
from tests.optimizers.gepa.test_budget import reflection_reply, task_reply
from tests.optimizers.mipro.test_mipro import PROPOSALS
from tests.optimizers.mipro.test_mipro import task_lm as mipro_task_lm

REFLECTION_SECONDS = 0.05  # each reflection or proposal call of the scripted LMs below


def slow(reply, seconds):
    def answer(messages):
        time.sleep(seconds)
        return reply(messages)

    return answer


def test_the_clock_counts_a_step_that_raises_and_steps_on_several_threads():
    clock = PhaseClock({"validation": 1.0})
    with pytest.raises(ValueError), clock.time("minibatch"):
        time.sleep(0.02)
        raise ValueError("the time was spent all the same")

    def step():
        with clock.time("proposal"):
            time.sleep(0.03)

    threads = [threading.Thread(target=step) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with clock.time(None):
        pass
    totals = clock.totals()
    assert list(totals)[:3] == ["validation", "proposal", "minibatch"]  # most first
    assert totals["validation"] == 1.0 and totals["minibatch"] >= 0.02
    assert totals["proposal"] >= 4 * 0.03  # steps at once each count
    assert "other" in totals


def gepa(callbacks=()) -> GEPA:
    return GEPA(
        toy_metric,
        max_metric_calls=70,
        reflection_lm=ScriptedLM(slow(reflection_reply, REFLECTION_SECONDS)),
        proposer="rules",
        progress=False,
        evolve_demos=False,
        seed_demos=0,
        minibatch_size=3,
        max_stalled_iterations=1000,
        seed=0,
        callbacks=list(callbacks),
    )


def run_gepa(run_dir=None, callbacks=(), resume=False):
    return gepa(callbacks).compile(
        toy_program(),
        toy_examples(12),
        toy_examples(8, offset=12),
        lm=ScriptedLM(slow(task_reply, 0.002)),
        run_dir=run_dir,
        resume=resume,
    )


def test_gepa_says_where_its_wall_time_went():
    result = run_gepa()
    spent = result.budget.seconds_by_phase
    assert {phases.MINIBATCH, phases.VALIDATION, phases.PROPOSAL} <= set(spent)
    assert spent[phases.PROPOSAL] >= REFLECTION_SECONDS * result.budget.proposer_lm_calls
    assert all(s > 0 for s in spent.values())
    assert sum(spent.values()) <= result.budget.seconds  # one step at a time


class DieAtTheFourthIteration(Callback):
    def on_parent_selected(self, event):
        if event["iteration"] >= 4:
            raise Killed


def test_a_resumed_gepa_run_keeps_the_seconds_of_the_process_before_it(tmp_path):
    with pytest.raises(Killed):
        run_gepa(tmp_path / "run", callbacks=[DieAtTheFourthIteration()])
    saved = json.loads((tmp_path / "run" / "state.json").read_text())
    before, calls_before = saved["phase_seconds"][phases.PROPOSAL], saved["proposer_calls"]
    assert calls_before >= 1 and before >= REFLECTION_SECONDS * calls_before
    resumed = run_gepa(tmp_path / "run", resume=True)
    calls_after = resumed.budget.proposer_lm_calls - calls_before
    assert calls_after >= 1
    spent = resumed.budget.seconds_by_phase
    assert spent[phases.PROPOSAL] >= before + REFLECTION_SECONDS * calls_after


def test_mipro_says_where_its_wall_time_went():
    proposer = toy_proposer(PROPOSALS, before=lambda: time.sleep(REFLECTION_SECONDS))
    mipro = MIPROv2(
        toy_metric,
        num_candidates=3,
        num_trials=6,
        minibatch_size=3,
        minibatch_full_eval_steps=3,
        max_bootstrapped_demos=1,
        max_labeled_demos=1,
        proposer_lm=proposer,
        progress=False,
        seed=0,
    )
    result = mipro.compile(toy_program(), toy_examples(8), toy_examples(6, offset=10), lm=mipro_task_lm())
    spent = result.budget.seconds_by_phase
    assert set(spent) == {phases.BOOTSTRAP, phases.VALIDATION, phases.PROPOSAL, phases.MINIBATCH}
    assert spent[phases.PROPOSAL] >= REFLECTION_SECONDS * result.budget.proposer_lm_calls
    assert sum(spent.values()) <= result.budget.seconds


def test_bootstrap_few_shot_times_its_teacher_runs():
    teacher = ScriptedLM(slow(lambda m: toy_reply(m, lambda word, system, shown: shown), 0.01))
    result = BootstrapFewShot(toy_metric, max_bootstrapped_demos=2, max_labeled_demos=0).compile(
        toy_program(), toy_examples(6), toy_examples(4, offset=10), lm=teacher
    )
    spent = result.budget.seconds_by_phase
    assert spent[phases.BOOTSTRAP] >= 0.01  # teacher runs, on several threads at once
    assert sum(spent.values()) <= result.budget.seconds
