"""Every LangProBe task and program, end to end on the real local model, on a few test examples.

Each (task, program) pair runs on one test example (the task's first program on two) with the
embedded 0.5B model and is scored by the task's metric: the loaders, programs, adapters, metrics
and the HumanEval sandbox meet a real model's replies. Scores are whatever the model earns; the
assertions are that every example ran through the LM and was scored (evaluate() turns a metric value
outside [0, 1] into a metric failure, not a score), and that any error is a reply the program could
not parse (kept in the result), never an error of the harness.
"""

from __future__ import annotations

import time

import pytest

from langprobe import TASKS, get_task
from promptopt.evaluate import evaluate

PAIRS = [(t, p) for t in TASKS for p in get_task(t).programs]


@pytest.fixture(scope="module")
def lm(tmp_path_factory, local_lm_factory):
    return local_lm_factory(tmp_path_factory.mktemp("cache") / "cache.sqlite", max_tokens=384)


@pytest.mark.real_lm
@pytest.mark.parametrize(("task_name", "program_name"), PAIRS, ids=[f"{t}-{p}" for t, p in PAIRS])
def test_task_program_runs_on_the_local_model(task_name, program_name, lm):
    task = get_task(task_name)
    first = program_name == next(iter(task.programs))
    examples = task.splits(seed=0).test[: 2 if first else 1]
    t0 = time.perf_counter()
    result = evaluate(
        task.program(program_name), examples, task.metric, num_threads=1, display_progress=False, lm=lm
    )
    for r in result.results:
        # scored: no LM failure, no metric error or value outside [0, 1], no program-contract failure
        assert r.failure is None, f"{task_name}/{program_name}: {r.failure} failure: {r.error}"
        assert len(r.trace) >= 1, f"{task_name}/{program_name} made no LM call: {r.error}"
        # A reply the program cannot read is a recorded example failure; any other error is a bug.
        assert r.error is None or r.error.startswith(("ParseError", "PairwiseVerdictError")), r.error
    print(
        f"\n{task_name}/{program_name}: scores {[r.score for r in result.results]}, "
        f"errors {[r.error for r in result.results if r.error]}, {time.perf_counter() - t0:.0f}s"
    )
