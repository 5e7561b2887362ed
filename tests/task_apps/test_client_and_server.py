"""A Python task app served for real (uvicorn on 127.0.0.1) and the client: info, rollouts, auth,
timeouts, crashes and malformed answers, each told apart as an outage or a recorded failure."""

import http.server
import json
import threading
import time

import pytest

import promptopt as po
from promptopt.task_apps import RolloutRequest
from promptopt.task_apps.client import RolloutFailedError, TaskAppClient, TaskAppUnavailableError
from promptopt.task_apps.server import RolloutOutcome, serve, task_app

URL = "http://127.0.0.1:9/v1"  # never called by these apps


def examples():
    rows = [
        po.Example(_id=f"e{i}", word=w, out=w.upper()).with_inputs("word") for i, w in enumerate("abcdef")
    ]
    return {"train": rows[:3], "validation": rows[3:5], "test": rows[5:]}


def upper(example, components, inference_url):
    if example.word == "e":
        raise ValueError("the app cannot handle e")
    if example.word == "d":
        time.sleep(3)
    said = example.word.upper() if "SHOUT" in components["style"] else example.word
    return RolloutOutcome(float(said == example.out), f"said {said}", {"out": said})


@pytest.fixture(scope="module")
def app():
    with serve(
        task_app("upper", upper, examples=examples(), components={"style": "Repeat."}, token="t0k")
    ) as running:
        yield running


def test_info_and_a_rollout_with_and_without_the_candidates_prompts(app):
    client = TaskAppClient(app.url, token="t0k")
    assert client.health()
    info = client.info()
    assert (
        info.name == "upper"
        and info.splits["train"] == ("e0", "e1", "e2")
        and info.components == {"style": "Repeat."}
    )
    seed = client.rollout(RolloutRequest("r1", "train", URL, example_id="e0"))
    assert (seed.score, seed.outputs, seed.feedback) == (0.0, {"out": "a"}, "said a")
    shouted = client.rollout(
        RolloutRequest("r2", "train", URL, example_id="e0", components={"style": "SHOUT"})
    )
    assert shouted.score == 1.0 and shouted.rollout_id == "r2"
    by_inputs = client.rollout(
        RolloutRequest("r3", "test", URL, inputs={"word": "q", "out": "Q"}, components={"style": "SHOUT"})
    )
    assert by_inputs.score == 1.0


def test_the_apps_own_failure_is_a_recorded_rollout_failure(app):
    client = TaskAppClient(app.url, token="t0k")
    with pytest.raises(RolloutFailedError, match="ValueError: the app cannot handle e"):
        client.rollout(RolloutRequest("r4", "validation", URL, example_id="e4"))
    with pytest.raises(RolloutFailedError, match="answered 404: no example 'nope'"):
        client.rollout(RolloutRequest("r5", "train", URL, example_id="nope"))


def test_a_hung_rollout_times_out_as_a_failure(app):
    client = TaskAppClient(app.url, token="t0k", timeout=0.5)
    with pytest.raises(RolloutFailedError, match=r"no answer within 0\.5s"):
        client.rollout(RolloutRequest("r6", "validation", URL, example_id="e3"))


def test_auth_and_outages_are_not_rollout_failures(app):
    with pytest.raises(TaskAppUnavailableError, match="refused \\(401\\)"):
        TaskAppClient(app.url, token="wrong").info()
    with pytest.raises(TaskAppUnavailableError, match="refused \\(401\\)"):
        TaskAppClient(app.url).rollout(RolloutRequest("r7", "train", URL, example_id="e0"))
    down = TaskAppClient("http://127.0.0.1:9", timeout=2)
    assert not down.health()
    with pytest.raises(TaskAppUnavailableError, match="Is the app running"):
        down.info()
    with pytest.raises(ValueError, match="starts with http"):
        TaskAppClient("127.0.0.1:80")


class _Bad(http.server.BaseHTTPRequestHandler):
    """An app that answers whatever the test put in ``reply``."""

    reply: tuple[int, bytes] = (200, b"{}")

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self._answer()

    def do_GET(self):
        self._answer()

    def _answer(self):
        status, body = type(self).reply
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def bad_app():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Bad)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ((200, b"<html>oops"), "not JSON"),
        ((200, json.dumps({"rollout_id": "r8", "score": "high"}).encode()), "at score"),
        ((200, json.dumps({"rollout_id": "r8", "score": 7}).encode()), r"scored 7; scores are in \[0, 1\]"),
        (
            (200, json.dumps({"rollout_id": "other", "score": 1}).encode()),
            "answers rollout 'other', not 'r8'",
        ),
        ((500, b'{"error": "segfault"}'), "answered 500: segfault"),
    ],
)
def test_malformed_answers_are_recorded_failures(bad_app, reply, message):
    _Bad.reply = reply
    with pytest.raises(RolloutFailedError, match=message):
        TaskAppClient(bad_app).rollout(RolloutRequest("r8", "train", URL, example_id="e0"))


def test_a_malformed_info_is_an_unusable_app(bad_app):
    _Bad.reply = (200, json.dumps({"name": "x"}).encode())
    with pytest.raises(TaskAppUnavailableError, match=r"info does not follow promptopt\.task-app/1"):
        TaskAppClient(bad_app).info()


def test_the_helper_refuses_a_dataset_without_its_splits():
    with pytest.raises(ValueError, match="missing test"):
        task_app("x", upper, examples={"train": [], "validation": []}, components={"style": "s"})
    rows = examples()
    rows["test"] = rows["train"][:1]
    with pytest.raises(ValueError, match="'e0' appears twice"):
        task_app("x", upper, examples=rows, components={"style": "s"})
