"""An OpenAI-compatible chat endpoint whose replies come from a function of the messages, served on
loopback for tests whose LMs must be reached by LM string from other processes (Ray workers): point
litellm at it with ``OPENAI_API_BASE`` and name the model ``openai/<anything>``.

A gate holds every request until it is opened, so a test can stop work mid-cell."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request  # at module level: FastAPI reads the handler's annotations

from promptopt.task_apps.server import in_thread, serve


@dataclass
class StubServer:
    url: str  # the API base: .../v1
    gate: threading.Event = field(default_factory=threading.Event)
    waiting: int = 0  # requests held at the gate now
    served: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for_waiting(self, n: int, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while self.waiting < n:
            if time.time() > deadline:
                raise TimeoutError(f"{self.waiting} request(s) at the gate after {timeout:g} s, not {n}")
            time.sleep(0.05)


@contextlib.contextmanager
def openai_stub(
    reply: Callable[[list[dict[str, Any]]], str], *, gate_open: bool = True
) -> Iterator[StubServer]:
    app = FastAPI()
    state: dict[str, StubServer] = {}

    def answer(messages: list[dict[str, Any]]) -> dict[str, Any]:
        stub = state["stub"]
        with stub.lock:
            stub.waiting += 1
        stub.gate.wait()
        with stub.lock:
            stub.waiting -= 1
            stub.served += 1
        text = reply(messages)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "stub",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        return await in_thread(lambda: answer(body["messages"]))

    with serve(app) as running:
        stub = StubServer(f"{running.url}/v1")
        if gate_open:
            stub.gate.set()
        state["stub"] = stub
        try:
            yield stub
        finally:
            stub.gate.set()  # release anything still held, so the server can stop
