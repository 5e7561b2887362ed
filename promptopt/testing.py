"""Test doubles: a scripted LM and a fake OpenAI-compatible server that answer without a model.

``ScriptedLM`` is for unit tests of optimizer and program logic; ``FakeOpenAIServer`` is for
tests of clients that speak HTTP (LiteLLM, ``dspy.LM``). Every capability also has tests
against the real local model.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from promptopt.core.example import Example
from promptopt.lm.base import Completion
from promptopt.lm.usage import report


class ScriptedLM:
    """An LM whose replies come from a function of the messages, or a fixed list.

    ``ScriptedLM(lambda messages: "answer: 4")`` or ``ScriptedLM(["a", "b"])``
    (replies in order, cycling). Calls are recorded in ``calls``; each call is
    reported to usage trackers like a real uncached call with counted tokens.
    """

    def __init__(
        self,
        replies: Callable[[list[dict[str, str]]], str] | Sequence[str],
        *,
        finish_reason: str = "stop",
    ) -> None:
        self._fn = replies if callable(replies) else None
        self._list = list(replies) if not callable(replies) else []
        self.finish_reason = finish_reason
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, messages: list[dict[str, str]] | str, **options: Any) -> Completion:
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        with self._lock:
            n = len(self.calls)
            self.calls.append({"messages": messages, "options": options})
        text = self._fn(messages) if self._fn else self._list[n % len(self._list)]
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        completion = Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(text.split()),
            finish_reason=self.finish_reason,
            model="scripted",
        )
        report(completion)
        return completion

    def __deepcopy__(self, memo: dict[int, Any]) -> ScriptedLM:
        return self


class Killed(BaseException):
    """Stands in for SIGKILL in resume tests: no ``except Exception`` catches it, nothing after it runs."""


def dies_at(metric: Callable[..., Any], call: int) -> Callable[..., Any]:
    """``metric``, killing the run (:class:`Killed`) on its ``call``-th call, counted from 1."""
    calls = 0
    lock = threading.Lock()

    def dying(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        with lock:
            calls += 1
            if calls == call:
                raise Killed()
        return metric(*args, **kwargs)

    return dying


def last_user_message(messages: list[dict[str, str]]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def field_value(message: str, name: str) -> str:
    """The value of ``name: value`` in a rendered user message (first line of it)."""
    for block in message.split("\n\n"):
        if block.startswith(f"{name}: "):
            return block[len(name) + 2 :]
    raise KeyError(name)


TOY_WORDS = (
    "apple", "berry", "cider", "dates", "elder", "figgy", "grape", "honey", "icing", "jelly",
    "kiwis", "lemon", "mango", "nutty", "olive", "peach", "quinc", "raspy", "salty", "tangy",
)  # fmt: skip


def toy_examples(n: int, offset: int = 0) -> list[Example]:
    """Examples of a toy task for optimizer tests: ``word -> out``, ``out`` being the word in capitals.

    Ids are ``w<index>``, so two calls with disjoint ranges give disjoint train/validation sets.
    """
    if offset + n > len(TOY_WORDS):
        raise ValueError(f"Only {len(TOY_WORDS)} toy examples exist; asked for {offset}..{offset + n}.")
    return [
        Example(_id=f"w{offset + i}", word=w, out=w.upper()).with_inputs("word")
        for i, w in enumerate(TOY_WORDS[offset : offset + n])
    ]


class FakeOpenAIServer:
    """A local OpenAI-compatible chat endpoint for tests, answering without a model.

    It listens on ``127.0.0.1`` (a free port) and answers every ``POST`` to a path ending in
    ``/chat/completions`` with one choice whose content is ``reply(messages)``, ``messages`` being
    the request's ``messages``, and fixed token counts in ``usage``; other paths get a 404.
    Requests are served on threads, so ``reply`` may be called concurrently. Every ``POST``
    (404s included) is recorded in ``requests`` as ``{"path": ..., "body": ...}``.
    Use it as a context manager::

        with FakeOpenAIServer(lambda messages: "[[ ## answer ## ]]\\n42") as server:
            lm = promptopt.LM("openai/tiny", api_base=server.base_url, api_key="sk-test")

    Args:
        reply: the reply text as a function of the chat messages, or one fixed text.
        prompt_tokens, completion_tokens: the ``usage`` every reply reports.
    """

    def __init__(
        self,
        reply: Callable[[list[dict[str, Any]]], str] | str,
        *,
        prompt_tokens: int = 10,
        completion_tokens: int = 1,
    ) -> None:
        self.reply = reply if callable(reply) else (lambda messages, text=reply: text)
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The ``api_base`` to give a client: ``http://127.0.0.1:PORT/v1``."""
        if self._server is None:
            raise RuntimeError("The server is not running; call start() or use it in a with block.")
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    def start(self) -> FakeOpenAIServer:
        if self._server is None:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
            self._server.daemon_threads = True
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join()
            self._server = self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append({"path": path, "body": body})
            n = len(self.requests)
        if not path.rstrip("/").endswith("/chat/completions"):
            return 404, {"error": {"message": f"no such path: {path}", "type": "invalid_request_error"}}
        text = self.reply(body.get("messages", []))
        return 200, {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", ""),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                status, reply = server._answer(self.path, body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
