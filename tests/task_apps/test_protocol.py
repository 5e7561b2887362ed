"""The task-app protocol's messages: valid ones round-trip, invalid ones are refused naming the field."""

import pytest

from promptopt.task_apps import PROTOCOL, AppInfo, ProtocolError, RolloutRequest, RolloutResult

INFO = {
    "protocol": PROTOCOL,
    "name": "support-bot",
    "splits": {"train": ["a", "b"], "validation": ["c"], "test": ["d"]},
    "components": {"system_prompt": "You answer support questions.", "style": "Be brief."},
}


def test_info_round_trips():
    info = AppInfo.from_json(INFO)
    assert info.splits["train"] == ("a", "b") and info.components["style"] == "Be brief."
    assert AppInfo.from_json(info.to_json()) == info


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d.update(protocol="promptopt.task-app/0"),
            "at protocol: 'promptopt.task-app/1' was expected",
        ),
        (lambda d: d["splits"].pop("test"), "at splits: 'test' is a required property"),
        (lambda d: d["splits"].update(train=["a", 3]), "at splits/train/1: 3 is not of type 'string'"),
        (lambda d: d.update(components={}), "at components"),
        (lambda d: d["components"].update(style=None), "at components/style: None is not of type 'string'"),
        (lambda d: d["splits"].update(train=["a", "a"]), "train split lists an example id twice"),
    ],
)
def test_a_bad_info_names_the_field(change, message):
    data = {
        **INFO,
        "splits": {k: list(v) for k, v in INFO["splits"].items()},
        "components": dict(INFO["components"]),
    }
    change(data)
    with pytest.raises(ProtocolError, match=message):
        AppInfo.from_json(data)


def test_a_rollout_request_names_one_example_by_id_or_inputs():
    by_id = RolloutRequest(
        "r1", "train", "http://127.0.0.1:9/v1", example_id="a", components={"style": "Terse."}
    )
    assert RolloutRequest.from_json(by_id.to_json()) == by_id
    by_inputs = RolloutRequest("r2", "test", "http://127.0.0.1:9/v1", inputs={"question": "hi"})
    assert RolloutRequest.from_json(by_inputs.to_json()) == by_inputs
    with pytest.raises(ProtocolError, match="rollout request"):
        RolloutRequest("r3", "train", "http://127.0.0.1:9/v1").to_json()  # neither id nor inputs
    with pytest.raises(ProtocolError, match="at split: 'dev' is not one of"):
        RolloutRequest.from_json({**by_id.to_json(), "split": "dev"})
    with pytest.raises(ProtocolError, match="at inference_url"):
        RolloutRequest.from_json({**by_id.to_json(), "inference_url": "file:///etc/passwd"})


def test_a_rollout_result_is_a_score_in_range_or_an_error():
    ok = RolloutResult.from_json({"rollout_id": "r1", "score": 0.5, "feedback": "half", "outputs": {"a": 1}})
    assert ok.score == 0.5 and ok.error is None
    failed = RolloutResult.from_json({"rollout_id": "r1", "score": None, "error": "TypeError: boom"})
    assert failed.score is None and failed.error == "TypeError: boom"
    assert RolloutResult.from_json(failed.to_json()) == failed
    for data, message in [
        ({"rollout_id": "r1"}, "neither a score nor an error"),
        ({"rollout_id": "r1", "score": 1.5}, r"scored 1.5; scores are in \[0, 1\]"),
        ({"rollout_id": "r1", "score": "0.9"}, "at score: '0.9' is not of type"),
        ({"rollout_id": "r1", "score": True}, "at score: True is not of type"),
        ({"score": 1.0}, "'rollout_id' is a required property"),
    ]:
        with pytest.raises(ProtocolError, match=message):
            RolloutResult.from_json(data)
    with pytest.raises(ProtocolError, match="answers rollout 'r1', not 'r2'"):
        RolloutResult.from_json({"rollout_id": "r1", "score": 1.0}, expected_id="r2")
