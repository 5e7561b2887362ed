"""The LM layer without a server: litellm's mock responses stand in for the model."""

import threading
import time

import litellm
import pytest

import promptopt as po
from promptopt.lm.cache import Cache


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = litellm.completion

    def fake(**kwargs):
        calls.append(kwargs)
        kwargs.setdefault("mock_response", f"reply {len(calls)}")
        return real(**kwargs)

    monkeypatch.setattr(litellm, "completion", fake)
    return calls


MSG = [{"role": "user", "content": "hello"}]


def test_cache_hit_miss_and_fresh_sample(tmp_path, counted):
    lm = po.LM("openai/gpt-4o-mini", cache=tmp_path / "c.sqlite")
    first = lm(MSG)
    again = lm(MSG)
    assert len(counted) == 1 and again.cached and again.text == first.text
    fresh = lm(MSG, rollout_id=1)  # same request, new sample: a real call
    assert len(counted) == 2 and not fresh.cached and fresh.text != first.text
    assert lm(MSG, rollout_id=1).cached  # the fresh sample is itself cached
    lm(MSG, temperature=0.7)  # other options are another request
    assert len(counted) == 3
    lm(MSG, cache=False)
    assert len(counted) == 4
    # a second LM object (or process) on the same file sees the same entries
    other = po.LM("openai/gpt-4o-mini", cache=tmp_path / "c.sqlite")
    assert other(MSG).cached and len(counted) == 4
    # the key covers the model too
    po.LM("openai/gpt-4o", cache=tmp_path / "c.sqlite")(MSG)
    assert len(counted) == 5


def test_usage_accounting_and_history(tmp_path, counted):
    lm = po.LM("openai/gpt-4o-mini", cache=tmp_path / "c.sqlite")
    with po.track_usage() as usage:
        lm(MSG)
        lm(MSG)
    assert usage.calls == 2 and usage.cached_calls == 1 and usage.uncached_calls == 1
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert lm.usage.calls == 2
    assert usage.cost >= 0.0
    shown = []
    last = lm.inspect_history(2, printer=shown.append)
    assert len(last) == 2 and any("hello" in s for s in shown) and any("cached" in s for s in shown)
    restored = po.Usage.from_dict(usage.to_dict())
    assert restored.to_dict() == usage.to_dict()


def test_retries_transient_errors_then_gives_up(monkeypatch, tmp_path):
    attempts = []

    def flaky(**kwargs):
        attempts.append(1)
        if len(attempts) < 3:
            raise litellm.exceptions.APIConnectionError("down", llm_provider="openai", model="x")
        return litellm.ModelResponse(choices=[{"message": {"content": "ok", "role": "assistant"}}])

    monkeypatch.setattr(litellm, "completion", flaky)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    lm = po.LM("openai/x", cache=False, num_retries=3)
    assert lm(MSG).text == "ok" and len(attempts) == 3

    def broken(**kwargs):
        attempts.append(1)
        raise litellm.exceptions.BadRequestError("bad", model="x", llm_provider="openai")

    attempts.clear()
    monkeypatch.setattr(litellm, "completion", broken)
    with pytest.raises(po.LMError, match="1 attempt"):
        lm(MSG)
    assert len(attempts) == 1  # a bad request is not retried
    assert lm.usage.failed_calls == 1


def test_concurrency_is_bounded(monkeypatch):
    inflight, peak = [0], [0]
    lock = threading.Lock()

    def slow(**kwargs):
        with lock:
            inflight[0] += 1
            peak[0] = max(peak[0], inflight[0])
        time.sleep(0.05)
        with lock:
            inflight[0] -= 1
        return litellm.ModelResponse(choices=[{"message": {"content": "ok", "role": "assistant"}}])

    monkeypatch.setattr(litellm, "completion", slow)
    lm = po.LM("openai/x", cache=False, max_concurrency=2)
    threads = [threading.Thread(target=lm, args=([{"role": "user", "content": str(i)}],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2


def test_cache_is_shared_across_threads(tmp_path):
    cache = Cache(tmp_path / "c.sqlite")
    errors = []

    def work(i):
        try:
            key = f"k{i % 5}"
            cache.put(key, {"i": i}, po.Completion(text=str(i)))
            assert cache.get(key) is not None
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache) == 5


def test_lm_is_shared_not_copied_by_program_copies():
    import copy

    lm = po.LM("openai/x", cache=False)
    prog = po.Predict("q -> a", lm=lm)
    assert prog.deepcopy().lm is lm and copy.deepcopy(lm) is lm
