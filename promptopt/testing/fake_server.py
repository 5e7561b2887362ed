"""A local OpenAI-compatible chat endpoint for tests of clients that speak HTTP (LiteLLM,
``dspy.LM``), answering without a model."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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

    For fault tests ``reply`` may also return an HTTP status (an ``int``: an error reply with that
    status) or :attr:`HANG` (the request is read and nothing is answered until the server closes,
    or ``hang_s`` seconds have passed, whichever is first).

    Args:
        reply: the reply text as a function of the chat messages, or one fixed text.
        prompt_tokens, completion_tokens: the ``usage`` every reply reports.
        hang_s: the longest a :attr:`HANG` keeps its request open.
    """

    HANG: Any = object()

    def __init__(
        self,
        reply: Callable[[list[dict[str, Any]]], Any] | str,
        *,
        prompt_tokens: int = 10,
        completion_tokens: int = 1,
        hang_s: float = 15.0,
    ) -> None:
        self.reply = reply if callable(reply) else (lambda messages, text=reply: text)
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.hang_s = hang_s
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
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
            self._release.clear()
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
            self._server.daemon_threads = True
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._release.set()
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

    def _answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """The status and body of the answer; None for no answer (:attr:`HANG`)."""
        with self._lock:
            self.requests.append({"path": path, "body": body})
            n = len(self.requests)
        if not path.rstrip("/").endswith("/chat/completions"):
            return 404, {"error": {"message": f"no such path: {path}", "type": "invalid_request_error"}}
        text = self.reply(body.get("messages", []))
        if text is self.HANG:
            self._release.wait(self.hang_s)
            return None
        if isinstance(text, int):
            return text, {"error": {"message": "scripted failure", "type": "server_error"}}
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
                answer = server._answer(self.path, body)
                if answer is None:
                    self.close_connection = True
                    return
                status, reply = answer
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
