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
from promptopt.core.program import Predict
from promptopt.lm.usage import report
from promptopt.lm_protocol import Completion
from promptopt.optimizers.callbacks import Callback, TrialEvent


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


class InterruptAfter(Callback):
    """A callback that raises ``KeyboardInterrupt`` (as Ctrl-C would) when the ``n``-th trial ends."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def on_trial(self, event: TrialEvent) -> None:
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt


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


def toy_program() -> Predict:
    """The program optimizer tests start from on the toy task: ``word -> out``, "Repeat the word."."""
    return Predict("word -> out", "Repeat the word.")


def toy_metric(example: Example, pred: Any, trace: Any = None) -> float:
    """1.0 when the prediction's ``out`` is the example's, else 0.0."""
    return float(pred.out == example.out)


def toy_request(messages: list[dict[str, str]]) -> tuple[str, str, bool]:
    """What a toy-task LM sees in a request: the word, the system prompt (lowercase) and whether a
    demo is shown (an assistant message)."""
    word = field_value(last_user_message(messages), "word")
    system = messages[0]["content"].lower()
    shown = any(m["role"] == "assistant" for m in messages)
    return word, system, shown


def mixed_capitals(word: str, system: str, shown: bool) -> bool:
    """Whether a toy-task LM answers in capitals, in a way that depends on the instruction, the demos
    shown and the word, so that instructions, demo sets and minibatches all matter to a score."""
    if "uppercase" in system:
        return word[0] not in "kmq"
    if "capitals" in system:
        return len(word) % 2 == 1 or shown
    return (shown and word[0] < "p") or word[0] in "aeiou"


def toy_reply(
    messages: list[dict[str, str]], capitals: Callable[[str, str, bool], bool] = mixed_capitals
) -> str:
    """A toy-task LM's reply: ``out: WORD`` when ``capitals(word, system, shown)``, else the word as is."""
    word, system, shown = toy_request(messages)
    return f"out: {word.upper() if capitals(word, system, shown) else word}"


TOY_PROPOSALS = (
    "proposed_instruction: Write the word in uppercase letters.",
    "proposed_instruction: Answer with the word in capitals.",
    "Repeat the word exactly.",
    "proposed_instruction: Return the word unchanged.",
)  # with and without the field name; two ask for capitals


def toy_proposer(
    proposals: Sequence[str] = TOY_PROPOSALS,
    *,
    merged_notes: str = "Words paired with their capitalised forms.",
    before: Callable[[], None] | None = None,
) -> ScriptedLM:
    """A proposer LM for MIPROv2 on the toy task: fixed texts for the dataset summary's notes and
    their merge (``merged_notes``), and ``proposals`` in turn (cycling) for the instruction proposals.
    ``before`` is called first on every call (to count calls, or to raise in one)."""
    state = {"n": 0}

    def reply(messages: list[dict[str, str]]) -> str:
        if before is not None:
            before()
        prompt = messages[0]["content"]
        if prompt.startswith("Here are notes"):
            return merged_notes
        if prompt.startswith("Here are"):
            return "Each example is a word and the same word in capital letters."
        state["n"] += 1
        return proposals[(state["n"] - 1) % len(proposals)]

    return ScriptedLM(reply)


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
