"""OptimizationResult: frozen, versioned, read back from every earlier format."""

from __future__ import annotations

import dataclasses
import json

import pytest

from promptopt.optimizers.result import Budget, Candidate, OptimizationResult, ResultFormatError
from promptopt.testing import toy_program

SEED = {"self.instruction": "Repeat the word.", "self.demos": []}
BEST = {"self.instruction": "Repeat the word in uppercase.", "self.demos": []}


def result() -> OptimizationResult:
    return OptimizationResult.of_run(
        toy_program(),
        optimizer="promptopt.GEPA",
        candidates=[
            Candidate(0, SEED, val_scores={"a": 0.0, "b": 1.0}),
            Candidate(
                1, BEST, parents=[0], origin="reflection", val_scores={"a": 1.0, "b": 1.0}, discovered_at=9
            ),
        ],
        best_id=1,
        pareto_front=[1],
        budget=Budget(metric_calls=12, lm_calls=14, unscored_calls=1),
        learning_curve=[(2, 0.5), (9, 1.0)],
        stop_reason="metric-call budget of 12 spent",
        config={"max_metric_calls": 12},
    )


def test_the_best_program_is_set_when_the_result_is_built_and_cannot_be_replaced():
    res = result()
    assert res.best_program.get_instructions() == {"self": "Repeat the word in uppercase."}
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.best_id = 0  # type: ignore[misc]


def test_round_trip_with_and_without_the_seed_program(tmp_path):
    res = result()
    res.save(tmp_path / "result.json")
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["format"] == OptimizationResult.FORMAT == 2
    back = OptimizationResult.load(tmp_path / "result.json")
    assert back == res and back.best_program is None
    rebuilt = OptimizationResult.load(tmp_path / "result.json", toy_program())
    assert rebuilt.best_program.get_instructions() == res.best_program.get_instructions()


def test_a_format_1_result_is_read_with_the_fields_it_lacked():
    # As results were saved before the format key: no unscored or proposer calls in the budget,
    # candidates without the metric calls at which they were found.
    v1 = {
        "optimizer": "promptopt.GEPA",
        "candidates": [
            {
                "id": 0,
                "components": SEED,
                "parents": [],
                "origin": "seed",
                "val_scores": {"a": 0.0},
                "iteration": 0,
            },
            {"id": 1, "components": BEST, "parents": [0], "origin": "reflection", "val_scores": {"a": 1.0}},
        ],
        "best_id": 1,
        "budget": {
            "metric_calls": 7,
            "lm_calls": 8,
            "uncached_lm_calls": 8,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost": 0.0,
            "seconds": 1.5,
        },
        "learning_curve": [[1, 0.0], [7, 1.0]],
        "stop_reason": "done",
    }
    res = OptimizationResult.from_dict(v1, toy_program())
    assert res.budget == Budget(metric_calls=7, lm_calls=8, uncached_lm_calls=8, seconds=1.5)
    assert [c.discovered_at for c in res.candidates] == [0, 0]
    assert res.candidates[1].iteration == 0
    assert res.pareto_front == [] and res.trials == [] and res.config == {}
    assert res.best_program.get_instructions() == {"self": "Repeat the word in uppercase."}
    assert res.to_dict()["format"] == 2


def test_a_newer_format_asks_for_an_upgrade():
    data = result().to_dict() | {"format": 3}
    with pytest.raises(ResultFormatError, match="format 3, written by a newer promptopt"):
        OptimizationResult.from_dict(data)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[1, 2]", "a JSON list, not a result"),
        ('{"optimizer": "x"}', "missing 'candidates'"),
        ("{", "Expecting"),
    ],
)
def test_a_file_that_is_no_result_names_itself(tmp_path, text, why):
    path = tmp_path / "result.json"
    path.write_text(text)
    with pytest.raises(ResultFormatError, match=f"{path} cannot be read as an optimization result") as err:
        OptimizationResult.load(path)
    assert why in str(err.value)
