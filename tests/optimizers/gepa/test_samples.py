"""Several children per GEPA step (``reflection_samples``): the best on the minibatch goes on, each
extra child costs one minibatch run, proposers hear their own outcomes, and a killed run resumes to
the uninterrupted result."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict

import pytest

import promptopt as po
from promptopt.optimizers import GEPA
from promptopt.optimizers.callbacks import Callback
from promptopt.optimizers.gepa.adaptive import AdaptiveProposer
from promptopt.optimizers.gepa.reflection import RulesProposer
from promptopt.testing import (
    Killed,
    ScriptedLM,
    resumes_to_the_uninterrupted_run,
    toy_examples,
    toy_metric,
    toy_program,
    toy_request,
)

MINIBATCH, N_VAL = 3, 8
WORDS_BY_ID = {e.id: e for e in toy_examples(20)}


def capitals(system: str, word: str) -> bool:
    """Whether the task LM answers ``word`` right under instruction ``system``: each instruction
    gets its own ~half of the words."""
    return hashlib.sha256(f"{system}|{word}".encode()).digest()[0] < 128


def task_reply(messages):
    word, system, _ = toy_request(messages)
    return f"out: {word.upper() if capitals(system, word) else word}"


class SamplingReflector(ScriptedLM):
    """A reflector whose reply depends on the rollout it is asked for, as a sampling LM's does."""

    def __init__(self):
        super().__init__(lambda messages: "")
        self.rollouts: list[str] = []

    def __call__(self, messages, **options):
        completion = super().__call__(messages, **options)
        rollout = str(options.get("rollout_id"))
        self.rollouts.append(rollout)
        digest = hashlib.sha256(f"{messages[-1]['content']}|{rollout}".encode()).hexdigest()[:8]
        return dataclasses.replace(completion, text=f"Rules:\n- Write the word in capitals ({digest}).")


class Steps(Callback):
    """Per iteration: the minibatch, the texts proposed, and a rejected child's minibatch score."""

    def __init__(self):
        self.batch: dict[int, list[str]] = {}
        self.texts: dict[int, list[str]] = defaultdict(list)
        self.judged: dict[int, float] = {}  # a rejected child's minibatch score

    def on_minibatch_evaluated(self, event):
        self.batch[event["iteration"]] = event["example_ids"]

    def on_proposal(self, event):
        if event["accepted"]:
            self.texts[event["iteration"]].append(event["text"])

    def on_candidate_rejected(self, event):
        self.judged[event["iteration"]] = event["child_score"]


def run(samples: int, budget: int = 80, callbacks=(), reflector=None, proposer="rules", seed_demos=0):
    gepa = GEPA(
        toy_metric,
        max_metric_calls=budget,
        reflection_lm=reflector or SamplingReflector(),
        proposer=proposer,
        evolve_demos=False,
        use_merge=False,
        tie_extensions=0,
        minibatch_size=MINIBATCH,
        reflection_samples=samples,
        seed_demos=seed_demos,
        max_stalled_iterations=1000,
        progress=False,
        seed=0,
        callbacks=list(callbacks),
    )
    return gepa.compile(
        toy_program(), toy_examples(12), toy_examples(N_VAL, offset=12), lm=ScriptedLM(task_reply)
    )


def instruction_key(result) -> str:
    (key,) = [k for k in result.candidates[0].components if k.endswith(".instruction")]
    return key


def minibatch_score(result, text: str, ids: list[str]) -> float:
    """What the task LM scores an instruction on examples ``ids``, run as the optimizer runs it."""
    program = toy_program().with_components({instruction_key(result): text})
    with po.context(lm=ScriptedLM(task_reply)):
        return sum(toy_metric(WORDS_BY_ID[i], program(word=WORDS_BY_ID[i].word)) for i in ids)


def test_the_best_child_of_the_step_goes_on_and_each_extra_child_costs_one_minibatch_run():
    steps = Steps()
    reflector = SamplingReflector()
    result = run(3, budget=200, callbacks=[steps], reflector=reflector)
    by_phase = result.budget.metric_calls_by_phase
    # Every step asked three times, each ask its own rollout.
    proposing = [it for it, texts in steps.texts.items() if texts]
    assert proposing and all(len(steps.texts[it]) == 3 for it in proposing)
    assert len(reflector.rollouts) == 3 * len(proposing) == len(set(reflector.rollouts))
    # A step spends one minibatch run per distinct child, and one for the parent unless the parent
    # already ran on those examples in an earlier step.
    distinct = sum(len(set(steps.texts[it])) for it in proposing)
    assert distinct > 2 * len(proposing)
    assert MINIBATCH * distinct < by_phase["minibatch"] <= MINIBATCH * (len(proposing) + distinct)
    # The child judged against its parent is the one with the best minibatch score among the three.
    accepted = {c.iteration: c for c in result.candidates[1:]}
    key = instruction_key(result)
    for it in proposing:
        scores = [minibatch_score(result, text, steps.batch[it]) for text in steps.texts[it]]
        best = steps.texts[it][scores.index(max(scores))]  # ties: the earlier sample
        if it in accepted:
            assert accepted[it].components[key] == best
        else:
            assert steps.judged[it] == max(scores)
    assert accepted and len(accepted) < len(proposing)  # both kinds of step were checked


def test_more_samples_spend_within_the_budget_and_stop_with_less_than_one_step_left():
    for budget in (30, 47, 80):
        result = run(3, budget=budget)
        spent = result.budget.metric_calls
        cost = (1 + 3) * MINIBATCH + N_VAL
        assert spent <= budget and (budget - spent < cost or spent == budget), result.stop_reason
    result = run(3, budget=27)
    assert result.stop_reason == (
        "budget: 19 metric calls left, fewer than one more proposal may spend "
        f"({4 * MINIBATCH} on 4 minibatch runs, {N_VAL} to validate an accepted child)"
    )


def test_each_samples_proposer_hears_its_own_outcome():
    told: list[tuple[str, bool]] = []

    class Recording(AdaptiveProposer):
        def tally(self, outcomes):
            told.extend(outcomes)
            super().tally(outcomes)

    proposer = Recording({"a": RulesProposer(), "b": RulesProposer()}, warmup=2)
    result = run(3, proposer=proposer)
    steps = result.candidates[1:]
    # Three outcomes per step, at most one of them a win (the judged child's).
    assert len(told) % 3 == 0 and told
    for i in range(0, len(told), 3):
        assert sum(won for _, won in told[i : i + 3]) <= 1
    assert sum(won for _, won in told) == len(steps)
    assert sum(proposer.tries.values()) == len(told)


class DieOnSecondStep(Callback):
    def on_candidate_rejected(self, event):
        if event["iteration"] >= 2:
            raise Killed

    on_candidate_accepted = on_candidate_rejected  # type: ignore[assignment]


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path, parallel):
    def compile_(run_dir, callbacks=(), resume=False):
        gepa = GEPA(
            toy_metric,
            max_metric_calls=90,
            reflection_lm=SamplingReflector(),
            proposer="adaptive",
            minibatch_size=MINIBATCH,
            reflection_samples=3,
            parallel_proposals=parallel,
            progress=False,
            seed=1,
            callbacks=list(callbacks),
        )
        return gepa.compile(
            toy_program(),
            toy_examples(12),
            toy_examples(N_VAL, offset=12),
            lm=ScriptedLM(task_reply),
            run_dir=run_dir,
            resume=resume,
        )

    _, resumed = resumes_to_the_uninterrupted_run(compile_, DieOnSecondStep(), tmp_path)
    assert resumed.config["reflection_samples"] == 3


def test_zero_samples_is_refused():
    with pytest.raises(ValueError, match="reflection_samples must be at least 1, not 0"):
        GEPA(toy_metric, max_metric_calls=10, reflection_samples=0)
