"""A GEPA budget is a budget: a run never spends more metric calls than it was given, and ends with
less than one proposal's worth unspent (a proposal: two minibatches and an accepted child's
validation)."""

from __future__ import annotations

import hashlib

import pytest

from promptopt.optimizers import GEPA
from promptopt.testing import ScriptedLM, toy_examples, toy_metric, toy_program, toy_request

MINIBATCH, N_VAL = 3, 8


def task_reply(messages):
    # Each instruction gets about 60% of the words right, a different 60%: no candidate is perfect,
    # children are often accepted, and only the budget ends a run.
    word, system, _ = toy_request(messages)
    digest = hashlib.sha256(f"{system}|{word}".encode()).digest()
    return f"out: {word.upper() if digest[0] < 155 else word}"


def reflection_reply(messages):
    variant = hashlib.sha256(messages[-1]["content"].encode()).hexdigest()[:8]
    return f"Rules:\n- Write the word in capitals (variant {variant})."


def run(budget: int, **options):
    gepa = GEPA(
        toy_metric,
        max_metric_calls=budget,
        reflection_lm=ScriptedLM(reflection_reply),
        proposer="rules",
        progress=False,
        evolve_demos=False,
        minibatch_size=MINIBATCH,
        max_stalled_iterations=1000,
        seed=0,
        **{"seed_demos": 0, **options},  # instruction mechanics, unless a case asks for demos
    )
    return gepa.compile(
        toy_program(), toy_examples(12), toy_examples(N_VAL, offset=12), lm=ScriptedLM(task_reply)
    )


@pytest.mark.parametrize("budget", [20, 37, 61, 100])
@pytest.mark.parametrize(
    "options",
    [
        {"use_merge": False},
        {"use_merge": True},
        {"use_merge": False, "parallel_proposals": 3},
        {"use_merge": True, "parallel_proposals": 4},
        {"use_merge": True, "validation": "adaptive"},
        {"use_merge": False, "validation": "adaptive", "parallel_proposals": 3, "tie_extensions": 3},
        {"use_merge": True, "validation": "adaptive", "seed_demos": 2, "parallel_proposals": 2},
        {"use_merge": True, "reflection_samples": 2},
        {"use_merge": False, "validation": "adaptive", "parallel_proposals": 2, "reflection_samples": 3},
    ],
    ids=[
        "reflection",
        "merge",
        "parallel-3",
        "merge-parallel-4",
        "staged",
        "staged-parallel-ties",
        "demos",
        "samples-2",
        "staged-parallel-samples-3",
    ],
)
def test_a_run_never_spends_past_its_budget_and_leaves_less_than_a_proposal(budget, options):
    result = run(budget, **options)
    spent = result.budget.metric_calls
    assert spent <= budget, (spent, result.stop_reason)
    cost = (1 + options.get("reflection_samples", 1)) * MINIBATCH + N_VAL  # one proposal at most
    assert budget - spent < cost, result.stop_reason
    # Either the budget was spent exactly, or what was left could not pay for one more proposal.
    assert result.stop_reason.startswith("budget: ") or spent == budget, result.stop_reason
    # The seed's validation leaves 12 of 20 calls, not one proposal's worth; budgets that pay for two
    # proposals or more add children.
    if budget == 20 and not options.get("seed_demos"):
        assert len(result.candidates) == 1
    elif budget >= N_VAL + 2 * cost:
        assert len(result.candidates) >= 2


def test_the_stop_reason_says_how_much_was_left_and_why_it_was_not_spent():
    result = run(20, use_merge=False)
    assert result.budget.metric_calls == N_VAL  # the seed's validation, then no proposal fits in 12
    assert result.stop_reason == (
        f"budget: 12 metric calls left, fewer than one more proposal may spend "
        f"({2 * MINIBATCH} on two minibatches, {N_VAL} to validate an accepted child)"
    )
