"""Local servers take turns on the CPU: requests to one-slot servers exclude one another across
threads and processes, and do not when turns are off or the server has several slots."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from promptopt.lm import compute_turns
from promptopt.lm.backends import llama_server
from promptopt.lm.backends.llama_server import LlamaServerBackend
from promptopt.lm.compute_turns import compute_turn, lock_path
from promptopt.lm_protocol import Completion


@pytest.fixture(autouse=True)
def private_lock(tmp_path, monkeypatch):
    """The machine-wide lock file moved into the test's folder (and seen there by subprocesses)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv(compute_turns.ENV, raising=False)
    assert lock_path().parent == tmp_path


def _inside_at_once(n_threads: int = 2) -> int:
    """How many threads were inside ``compute_turn`` at the same moment, at most."""
    inside = 0
    most = 0
    guard = threading.Lock()
    all_started = threading.Barrier(n_threads)

    def work() -> None:
        nonlocal inside, most
        all_started.wait()
        with compute_turn():
            with guard:
                inside += 1
                most = max(most, inside)
            time.sleep(0.2)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return most


def test_threads_take_turns():
    assert _inside_at_once(3) == 1


def test_turns_off_lets_threads_in_together(monkeypatch):
    monkeypatch.setenv(compute_turns.ENV, "0")
    assert _inside_at_once(2) == 2


HOLDER = """
import sys
from promptopt.lm.compute_turns import compute_turn
with compute_turn():
    print("held", flush=True)
    sys.stdin.readline()  # holds the turn until told to let go
"""


def test_another_process_holding_the_turn_makes_this_one_wait():
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        got_turn = threading.Event()

        def want_turn() -> None:
            with compute_turn():
                got_turn.set()

        waiter = threading.Thread(target=want_turn)
        waiter.start()
        assert not got_turn.wait(0.5), "took the turn while another process held it"
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert got_turn.wait(10), "never got the turn after the other process let go"
        waiter.join()
    finally:
        holder.kill()
        holder.wait()


def _backend_holding_turn_while_answering(monkeypatch) -> list[bool]:
    held: list[bool] = []

    def answer(model, conn, messages, params, timeout):
        held.append(compute_turns._lock(lock_path()).is_locked)
        return Completion(text="ok")

    monkeypatch.setattr(llama_server, "litellm_completion", answer)

    class Backend(LlamaServerBackend):
        def connection(self):  # no llama.cpp server started
            return "openai/tiny", {"api_base": "http://127.0.0.1:9", "api_key": "sk-local"}

    Backend("tiny", {}).complete([{"role": "user", "content": "hi"}], {}, 5)
    return held


def test_a_one_slot_server_is_answered_inside_a_turn(monkeypatch):
    monkeypatch.setenv("PROMPTOPT_LOCAL_SLOTS", "1")
    assert _backend_holding_turn_while_answering(monkeypatch) == [True]


def test_a_server_with_several_slots_does_not_take_turns(monkeypatch):
    monkeypatch.setenv("PROMPTOPT_LOCAL_SLOTS", "2")
    assert _backend_holding_turn_while_answering(monkeypatch) == [False]
