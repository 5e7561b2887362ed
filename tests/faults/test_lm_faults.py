"""Faults around the LM layer: a hanging or failing server, empty replies, a damaged cache file,
temp files left by a killed writer. Servers listen on 127.0.0.1 only; every wait is bounded."""

from __future__ import annotations

import gc
import json
import os
import random
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

import promptopt as po
from promptopt.io import remove_stale_temp_files, write_json_atomic
from promptopt.lm import client as lm_client
from promptopt.lm.backends import LlamaServerBackend
from promptopt.lm.cache import Cache, CacheCorruptError, CacheWarning
from promptopt.testing import FakeOpenAIServer, field_value, last_user_message

MSG = [{"role": "user", "content": "hello"}]
HANG = FakeOpenAIServer.HANG
HANG_LIMIT_S = 15.0  # a hanging handler gives up by itself, so no test can leave a thread behind for long


class ScriptedServer(FakeOpenAIServer):
    """An OpenAI-compatible endpoint whose n-th request gets the n-th action of ``actions`` (the last
    one repeats): ``HANG`` (read the request, answer nothing), an HTTP status (an error reply) or a
    string (a normal reply with that content)."""

    def __init__(self, actions: list[Any]) -> None:
        super().__init__(self._next_action, prompt_tokens=3, hang_s=HANG_LIMIT_S)
        self.actions = actions
        self._served = 0
        self._served_lock = threading.Lock()

    def _next_action(self, messages: list[dict[str, Any]]) -> Any:
        with self._served_lock:
            n = self._served
            self._served += 1
        return self.actions[min(n, len(self.actions) - 1)]


def _lm(server: Any, **kwargs: Any) -> po.LM:
    kwargs.setdefault("cache", False)
    return po.LM("openai/tiny", api_base=server.base_url, api_key="sk-test", **kwargs)


@pytest.fixture(scope="module", autouse=True)
def warm_client():
    # litellm's import and first-call setup take seconds, which the timings below must not count
    with ScriptedServer(["warm"]) as server:
        _lm(server)(MSG)


@pytest.fixture
def quick_backoff(monkeypatch):
    # the waits between retries are tested for their bound below; here they only slow the tests
    monkeypatch.setattr(lm_client, "BACKOFF_BASE_S", 0.05)


def _seconds_to_fail(lm: po.LM, match: str) -> float:
    """How long ``lm`` takes to raise the :class:`LMError` matching ``match`` on ``MSG``."""
    start = time.monotonic()
    with pytest.raises(po.LMError, match=match):
        lm(MSG)
    return time.monotonic() - start


# --- One timeout means one timeout -----------------------------------------------------------


def test_hanging_server_without_retries_costs_one_request_and_one_timeout():
    with ScriptedServer([HANG]) as server:
        elapsed = _seconds_to_fail(_lm(server, timeout=1, num_retries=0), "1 attempt")
    assert len(server.requests) == 1
    assert elapsed < 2.5


def test_hanging_server_with_retries_costs_one_request_per_attempt(quick_backoff):
    with ScriptedServer([HANG]) as server:
        elapsed = _seconds_to_fail(_lm(server, timeout=1, num_retries=2), "3 attempt")
    assert len(server.requests) == 3
    assert elapsed < 3 * 1 + 2 * 0.05 + 2.0


def test_server_errors_are_retried_by_promptopt_only(quick_backoff):
    with ScriptedServer([500, "fine"]) as server:
        with pytest.raises(po.LMError, match="1 attempt"):
            _lm(server, num_retries=0)(MSG)
        assert len(server.requests) == 1  # the client library did not retry behind our back
    with ScriptedServer([500, 500, "fine"]) as server:
        assert _lm(server, num_retries=2)(MSG).text == "fine"
        assert len(server.requests) == 3


def test_backoff_between_attempts_is_bounded(monkeypatch):
    monkeypatch.setattr(lm_client.random, "random", lambda: 0.999999)
    waits = [lm_client.backoff_seconds(k) for k in range(1, 12)]
    assert waits[:3] == pytest.approx([1.0, 2.0, 4.0], rel=1e-3)
    assert max(waits) <= lm_client.BACKOFF_MAX_S
    monkeypatch.setattr(lm_client.random, "random", lambda: 0.0)
    assert lm_client.backoff_seconds(1) == pytest.approx(0.5)


def test_default_worst_case_is_minutes_not_an_hour():
    remote = po.LM("openai/x", cache=False)
    waits = sum(
        min(lm_client.BACKOFF_MAX_S, lm_client.BACKOFF_BASE_S * 2 ** (k - 1))
        for k in range(1, remote.num_retries + 1)
    )
    assert remote.timeout * (remote.num_retries + 1) + waits <= 6.5 * 60
    # the local server gets one long attempt: its timeouts are not retried (see the next test)
    assert po.LM("local", cache=False).timeout <= 10 * 60
    # explicit values are kept, and travel with copies
    kept = po.LM("openai/x", cache=False, timeout=300, num_retries=5).copy(temperature=0.5)
    assert (kept.timeout, kept.num_retries) == (300, 5)


class _ServerAt(LlamaServerBackend):
    """The local server's code path without starting llama.cpp: requests go to ``base_url``."""

    def __init__(self, base_url: str) -> None:
        super().__init__("tiny", {})
        self.base_url = base_url
        # A scripted server does not compute on the CPU: it need not wait for the machine's turn
        # (promptopt.lm.compute_turns), which a real local server elsewhere may hold.
        self._takes_turns = False

    def cache_identity(self) -> str:
        return "local/tiny@test"

    def connection(self) -> tuple[str, dict]:
        return "openai/tiny", {"api_base": self.base_url, "api_key": "sk-local"}


def _as_local_server(lm: po.LM, base_url: str) -> po.LM:
    lm.backend = _ServerAt(base_url)
    return lm


def test_local_server_timeout_is_not_retried_but_connection_errors_are(quick_backoff):
    with ScriptedServer([HANG]) as server:
        base_url = server.base_url
        lm = _as_local_server(po.LM("local", cache=False, timeout=1, num_retries=2), base_url)
        assert _seconds_to_fail(lm, r"1 attempt.*timeout=1 s") < 2.5
    assert len(server.requests) == 1
    # nothing listens there any more: refused at once, and retried
    lm = _as_local_server(po.LM("local", cache=False, timeout=1, num_retries=2), base_url)
    with pytest.raises(po.LMError, match="3 attempt"):
        lm(MSG)


def test_max_retries_is_refused_with_a_pointer_to_num_retries():
    with pytest.raises(TypeError, match="num_retries"):
        po.LM("openai/x", cache=False, max_retries=3)


# --- Empty replies ---------------------------------------------------------------------------


@pytest.mark.parametrize("empty", ["", "  \n\t"])
def test_empty_reply_is_returned_but_never_cached(tmp_path, empty):
    with ScriptedServer([empty]) as server:
        lm = _lm(server, cache=tmp_path / "c.sqlite")
        first = lm(MSG)
        assert first.text == empty and not first.cached
        second = lm(MSG)
        assert not second.cached
        assert len(server.requests) == 2  # asked again, not replayed
    assert len(Cache(tmp_path / "c.sqlite")) == 0


def test_nonempty_reply_is_still_cached(tmp_path):
    with ScriptedServer(["answer"]) as server:
        lm = _lm(server, cache=tmp_path / "c.sqlite")
        lm(MSG)
        assert lm(MSG).cached and len(server.requests) == 1


# --- A damaged cache file --------------------------------------------------------------------


def test_garbled_cache_file_names_the_file_and_the_way_out(tmp_path):
    path = tmp_path / "lm_cache.sqlite"
    path.write_bytes(random.Random(0).randbytes(16 * 4096))
    with pytest.raises(CacheCorruptError) as info:
        po.LM("openai/x", cache=path)
    message = str(info.value)
    assert str(path) in message
    assert "move" in message.lower() and "cache=False" in message
    assert isinstance(info.value, po.LMError)


def test_merging_a_garbled_file_names_both_files(tmp_path):
    cache = Cache(tmp_path / "main.sqlite")
    other = tmp_path / "other.sqlite"
    other.write_bytes(random.Random(2).randbytes(8 * 4096))
    with pytest.raises(CacheCorruptError) as info:
        cache.merge_from(other)
    assert str(other) in str(info.value) and str(tmp_path / "main.sqlite") in str(info.value)
    with pytest.raises(CacheCorruptError, match=r"other\.sqlite is damaged"):
        Cache(other)


def _qa_reply(messages: list[dict[str, Any]]) -> str:
    return "answer: " + field_value(last_user_message(messages), "question").upper()


def _qa_dataset(n: int) -> list[po.Example]:
    # long questions make rows of about 2 KB, so the table spans many pages
    return [
        po.Example(question=f"q{i} " + "padding " * 200, answer=f"Q{i} " + "PADDING " * 200).with_inputs(
            "question"
        )
        for i in range(n)
    ]


def _exact(example: po.Example, prediction: po.Prediction, trace: Any = None) -> float:
    return float(example.answer.strip() == prediction.answer.strip())


def _filled_cache(path: Path, server: FakeOpenAIServer, data: list[po.Example]) -> None:
    lm = po.LM("openai/tiny", api_base=server.base_url, api_key="sk-test", cache=path)
    result = po.evaluate(po.Predict("question -> answer", lm=lm), data, _exact, display_progress=False)
    assert result.score == 1.0
    del lm, result
    gc.collect()  # closes the cache's connections
    conn = sqlite3.connect(path)
    conn.execute("VACUUM")
    # VACUUM in WAL mode writes to the -wal file: move everything into the main file, which is garbled next
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _garble_middle(path: Path, pages: int = 4, page_size: int = 4096) -> None:
    size = path.stat().st_size
    start = (size // 2 // page_size) * page_size
    with open(path, "r+b") as fh:
        fh.seek(start)
        fh.write(random.Random(1).randbytes(pages * page_size))


def test_cache_with_garbled_middle_pages_is_refused_when_opened(tmp_path):
    data = _qa_dataset(120)
    path = tmp_path / "lm_cache.sqlite"
    with FakeOpenAIServer(_qa_reply) as server:
        _filled_cache(path, server, data)
        assert path.stat().st_size > 40 * 4096
        _garble_middle(path)
        with pytest.raises(CacheCorruptError) as info:
            po.LM("openai/tiny", api_base=server.base_url, api_key="sk-test", cache=path)
    assert str(path) in str(info.value) and "cache=False" in str(info.value)


def test_cache_damaged_during_a_run_is_bypassed_not_scored(tmp_path):
    data = _qa_dataset(120)
    path = tmp_path / "lm_cache.sqlite"
    with FakeOpenAIServer(_qa_reply) as server:
        _filled_cache(path, server, data)
        lm = po.LM("openai/tiny", api_base=server.base_url, api_key="sk-test", cache=path)
        served_before = len(server.requests)
        _garble_middle(path)  # after the open-time check: only reads can find it now
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # worker threads open connections of their own, which read the damaged pages
            result = po.evaluate(
                po.Predict("question -> answer", lm=lm), data, _exact, num_threads=2, display_progress=False
            )
        bypassed = len(server.requests) - served_before
    assert result.errors == [] and result.score == 1.0
    assert bypassed > 0  # some reads did hit the damage and went to the model instead
    cache_warnings = [w for w in caught if issubclass(w.category, CacheWarning)]
    assert len(cache_warnings) == 1 and str(path) in str(cache_warnings[0].message)


def test_undecodable_row_is_a_miss_and_is_replaced(tmp_path):
    cache = Cache(tmp_path / "c.sqlite")
    cache.put("k", {"r": 1}, po.Completion(text="good"))
    conn = sqlite3.connect(tmp_path / "c.sqlite")
    conn.execute("UPDATE completions SET completion='{\"text\": \"go' WHERE key='k'")
    conn.commit()
    conn.close()
    with pytest.warns(CacheWarning, match=r"c\.sqlite"):
        assert cache.get("k") is None
    cache.put("k", {"r": 1}, po.Completion(text="again"))
    assert cache.get("k").text == "again"


def test_integrity_check_runs_once_per_file_per_process(tmp_path, monkeypatch):
    from promptopt.lm import cache as cache_mod

    path = tmp_path / "c.sqlite"
    Cache(path)
    seen = []
    real = cache_mod._quick_check
    monkeypatch.setattr(cache_mod, "_quick_check", lambda conn: seen.append(1) or real(conn))
    Cache(path)
    Cache(path)
    assert seen == []


# --- Temp files left by a killed writer ------------------------------------------------------


def test_stale_temp_files_of_a_target_are_removed(tmp_path):
    target = tmp_path / "state.json"
    old = time.time() - 3600
    stale = [tmp_path / ".state.json.abcd1234.tmp", tmp_path / ".state.json.zz_99xy0.tmp"]
    fresh = tmp_path / ".state.json.fresh123.tmp"  # a writer may still be working on this one
    other = [
        tmp_path / ".other.json.abcd1234.tmp",  # another target's
        tmp_path / ".state.json.notes.tmp",  # not a name write_json_atomic makes
        tmp_path / "state.json.abcd1234.tmp",
    ]
    for p in [*stale, fresh, *other]:
        p.write_text("{partial")
    for p in [*stale, *other]:
        os.utime(p, (old, old))
    write_json_atomic(target, {"ok": 1})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert not any(p.exists() for p in stale)
    assert fresh.exists() and all(p.exists() for p in other)
    assert remove_stale_temp_files(target, max_age_s=0) == 1 and not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, *(p.name for p in other)])
