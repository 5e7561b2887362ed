"""Peer optimizers against the real local model: the gepa library and dspy.GEPA on iris (6 train, 4 val).

The budget (14 metric calls), short replies and short reflections keep each run to a few reflection
calls on a CPU-served 0.5B model."""

from __future__ import annotations

import pytest

import promptopt as po
from langprobe import get_task
from promptopt import peers
from promptopt.optimizers.components import serialize_components

# Minutes on the local model: run with `pytest -m slow` (CI does).
pytestmark = pytest.mark.slow


def run_peer(cls, program, metric, trainset, valset, *, task_lm, run_dir=None, resume=True, **options):
    """A peer runner through the optimizer contract (resuming from ``run_dir`` by default)."""
    return cls(metric, **options).compile(
        program, trainset, valset, lm=task_lm, run_dir=run_dir, resume=resume
    )


BUDGET = 14


def iris():
    task = get_task("iris")
    splits = task.splits(seed=0, sizes=(6, 4, 4))
    return task, splits.train, splits.val


def check(result, task, val):
    seed = result.candidates[0]
    val_ids = {e.id for e in val}
    assert seed.origin == "seed" and set(seed.val_scores) == val_ids
    # The imported best is the candidate with the top validation score, and the program returned
    # holds that candidate's components.
    full = [c for c in result.candidates if set(c.val_scores) == val_ids]
    assert result.best_score == max(c.val_score for c in full)
    assert serialize_components(result.best_program.components()) == result.best_candidate.components
    # GEPA starts an iteration while under budget: parent and child on a minibatch of 3, then a full
    # validation of an accepted child may follow.
    assert len(val) <= result.budget.metric_calls <= BUDGET + 2 * 3 + len(val)
    assert result.budget.lm_calls >= result.budget.metric_calls
    assert set(result.best_program.components()) == set(task.program("predict").components())


def test_gepa_library_on_iris(tmp_path, local_lm_factory):
    task, train, val = iris()
    task_lm = local_lm_factory(tmp_path / "c.sqlite", max_tokens=64)
    reflection_lm = local_lm_factory(tmp_path / "c.sqlite", temperature=0.7, max_tokens=150)
    result = run_peer(
        peers.GepaLibrary,
        task.program("predict"),
        task.metric,
        train,
        val,
        task_lm=task_lm,
        reflection_lm=reflection_lm,
        max_metric_calls=BUDGET,
        run_dir=tmp_path / "run",
    )
    check(result, task, val)
    assert result.budget.proposer_lm_calls >= 1
    # Our runtime reproduces the seed's and the best candidate's validation scores, example by
    # example (same requests, answered from the cache).
    for prog, cand in (
        (task.program("predict"), result.candidates[0]),
        (result.best_program, result.best_candidate),
    ):
        again = po.evaluate(prog, val, task.metric, lm=task_lm, display_progress=False)
        assert {r.example.id: r.score for r in again.results} == cand.val_scores
        assert again.usage.uncached_calls == 0


def test_dspy_gepa_on_iris(tmp_path, local_lm_factory):
    task, train, val = iris()
    result = run_peer(
        peers.DspyGEPA,
        task.program("predict"),
        task.metric,
        train,
        val,
        task_lm=local_lm_factory(tmp_path / "c.sqlite", max_tokens=64),
        reflection_lm=local_lm_factory(tmp_path / "c.sqlite", temperature=0.7, max_tokens=150),
        max_metric_calls=BUDGET,
        run_dir=tmp_path / "run",
    )
    check(result, task, val)
    assert result.config["task_lm"].startswith("openai/")  # DSPy called the local server itself
    assert result.config["task_lm_calls"] >= result.budget.metric_calls
    assert (tmp_path / "run" / "dspy_gepa").is_dir()
