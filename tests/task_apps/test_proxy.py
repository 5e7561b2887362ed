"""The inference proxy, called with the openai client as an app would: the candidate's prompt
replaces the seed prompt, every call lands in the rollout's trace, and closed or foreign rollouts
are refused."""

import httpx
import openai
import pytest

from promptopt.lm.usage import track_usage
from promptopt.task_apps.proxy import InferenceProxy, substitute
from promptopt.testing import ScriptedLM

SEEDS = {"system": "You are a terse assistant.", "style": "Answer in one word."}


def echo_system(messages):
    return f"system said: {messages[0]['content']}"


@pytest.fixture(scope="module")
def proxy():
    with InferenceProxy(ScriptedLM(echo_system)) as running:
        yield running


def ask(rollout, text="hi", **options):
    client = openai.OpenAI(base_url=rollout.url, api_key=rollout.token, max_retries=0)
    messages = [
        {"role": "system", "content": SEEDS["system"] + " " + SEEDS["style"]},
        {"role": "user", "content": text},
    ]
    return client.chat.completions.create(model="whatever", messages=messages, **options)


def test_the_candidates_prompt_reaches_the_lm_and_the_trace(proxy):
    candidate = {"system": "You are a pirate.", "style": "Answer in one word."}
    with proxy.rollout(SEEDS, candidate) as rollout:
        reply = ask(rollout, temperature=0.0, max_tokens=5)
    assert reply.choices[0].message.content == "system said: You are a pirate. Answer in one word."
    (entry,) = rollout.trace
    assert entry.messages[0]["content"] == "You are a pirate. Answer in one word."
    assert entry.predictor == "system" and entry.inputs["messages"].startswith("system: You are a pirate.")
    assert entry.raw == reply.choices[0].message.content and entry.prompt_tokens > 0
    assert reply.usage.prompt_tokens == entry.prompt_tokens


def test_the_seed_passes_unchanged_and_calls_are_counted(proxy):
    with track_usage() as usage, proxy.rollout(SEEDS) as rollout:
        ask(rollout)
        ask(rollout, text="again")
    assert usage.calls == 2 and len(rollout.trace) == 2
    assert rollout.trace[0].messages[0]["content"] == SEEDS["system"] + " " + SEEDS["style"]


def test_ended_and_foreign_rollouts_are_refused(proxy):
    with proxy.rollout(SEEDS) as first:
        pass
    with pytest.raises(openai.APIStatusError) as ended:
        ask(first)
    assert ended.value.status_code == 410
    assert first.id not in proxy._rollouts  # an ended rollout and its trace are not kept
    with proxy.rollout(SEEDS) as second:
        stolen = type(second)(second.id, first.token, second.url, second.substitutions)
        with pytest.raises(openai.AuthenticationError):
            ask(stolen)
        assert second.trace == []
    bad = httpx.post(
        f"{proxy.url}/rollouts/{second.id}/v1/chat/completions", json={"messages": "x"}, timeout=5
    )
    assert bad.status_code == 401


def test_a_malformed_request_and_an_lm_failure_are_answered_as_errors():
    def broken(messages):
        raise ConnectionError("model server down")

    with InferenceProxy(ScriptedLM(broken)) as proxy, proxy.rollout(SEEDS) as rollout:
        headers = {"authorization": f"Bearer {rollout.token}"}
        bad = httpx.post(f"{rollout.url}/chat/completions", json={"model": "m"}, headers=headers, timeout=5)
        assert bad.status_code == 400 and "not a chat completion request" in bad.text
        with pytest.raises(openai.APIStatusError) as failed:
            ask(rollout)
        assert failed.value.status_code == 502
    assert rollout.trace[0].error == "ConnectionError: model server down"


def test_the_proxy_listens_on_loopback_only_by_default(proxy):
    assert proxy.url.startswith("http://127.0.0.1:")
    with pytest.raises(KeyError, match="does not have"):
        proxy.open_rollout(SEEDS, {"unknown": "x"})


def test_substitution_touches_only_the_seed_texts():
    msgs = [
        {"role": "system", "content": "A. B."},
        {"role": "user", "content": "B."},
        {"role": "user", "content": None},
    ]
    out, used = substitute(msgs, {"a": ("A.", "AA."), "b": ("B.", "B."), "c": ("C.", "CC.")})
    assert [m["content"] for m in out] == ["AA. B.", "B.", None] and used == ["a", "b"]
    assert msgs[0]["content"] == "A. B."  # the app's own messages are not modified
