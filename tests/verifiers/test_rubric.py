"""Rubrics: loading from TOML and JSON, validation with errors that name the problem, weights."""

import json

import pytest

from promptopt.verifiers import Criterion, Rubric, RubricError, load_rubric

TOML = """
name = "support reply"

[[criteria]]
id = "answers"
description = "The reply answers the customer's question."
weight = 3

[[criteria]]
id = "polite"
description = "The reply is polite."

[[criteria]]
id = "grounded"
level = "event"
description = "The step uses only facts given in its inputs."
"""


def test_a_rubric_loads_from_toml_and_json_alike(tmp_path):
    (tmp_path / "r.toml").write_text(TOML)
    rubric = load_rubric(tmp_path / "r.toml")
    assert rubric.name == "support reply" and rubric.ids() == ["answers", "polite", "grounded"]
    assert [c.id for c in rubric.outcome] == ["answers", "polite"] and [c.id for c in rubric.event] == [
        "grounded"
    ]
    assert rubric["answers"].weight == 3.0 and rubric["polite"].level == "outcome"
    (tmp_path / "r.json").write_text(json.dumps(rubric.to_dict()))
    assert load_rubric(tmp_path / "r.json") == rubric


def test_weights_make_the_score():
    rubric = Rubric.of([{"id": "a", "description": "A.", "weight": 3}, {"id": "b", "description": "B."}])
    assert rubric.weighted_score({"a": 1.0, "b": 0.0}) == pytest.approx(0.75)
    assert rubric.weighted_score({"a": 0.0, "b": 1.0}) == pytest.approx(0.25)
    assert rubric.weighted_score({"b": 1.0}) == 1.0  # over the criteria scored
    with pytest.raises(KeyError, match="not in rubric"):
        rubric.weighted_score({"c": 1.0})


@pytest.mark.parametrize(
    ("criteria", "message"),
    [
        ([], "has no criteria"),
        ([{"id": "a", "description": "A.", "level": "step"}], "level 'step'; use 'outcome'"),
        ([{"id": "a", "description": "A."}, {"id": "a", "description": "B."}], "'a' appears twice"),
        (
            [{"id": "a", "description": "A.", "weight": 0}, {"id": "b", "description": "B.", "weight": 0}],
            "summing to 0",
        ),
        (
            [{"id": "a", "description": "A.", "weight": -1}],
            "weight -1.0; weights are finite and not negative",
        ),
        ([{"id": "a", "description": "A.", "weight": "high"}], "must be a number, not 'high'"),
        ([{"id": "a b", "description": "A."}], "must start with a letter"),
        ([{"id": "a"}], "needs a non-empty `description`"),
        ([{"id": "a", "description": "A.", "score": 1}], "Unknown key 'score' in criterion 1"),
    ],
)
def test_a_bad_rubric_is_refused_with_the_reason(criteria, message):
    with pytest.raises(RubricError, match=message):
        Rubric.from_dict({"criteria": criteria})


def test_event_and_outcome_weights_are_checked_apart():
    with pytest.raises(RubricError, match=r"The event criteria .* summing to 0"):
        Rubric((Criterion("a", "A."), Criterion("b", "B.", weight=0, level="event")))


def test_a_bad_file_names_itself(tmp_path):
    (tmp_path / "r.toml").write_text("criteria = [")
    with pytest.raises(RubricError, match=r"r.toml is not valid TOML"):
        load_rubric(tmp_path / "r.toml")
    (tmp_path / "r.yaml").write_text("x")
    with pytest.raises(RubricError, match=r"must be a \.toml or \.json file"):
        load_rubric(tmp_path / "r.yaml")
    with pytest.raises(RubricError, match="Cannot read the rubric"):
        load_rubric(tmp_path / "missing.toml")


def test_rewording_keeps_ids_weights_and_levels():
    rubric = Rubric.of([{"id": "a", "description": "A.", "weight": 2, "level": "event"}])
    new = rubric.with_descriptions({"a": "A, said better."})
    assert new["a"] == Criterion("a", "A, said better.", 2.0, "event")
    with pytest.raises(RubricError, match="not in rubric"):
        rubric.with_descriptions({"z": "?"})
