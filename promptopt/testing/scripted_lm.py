"""A scripted LM for unit tests of optimizer and program logic: it answers from a list or a
function of the messages, without a model, and reports its calls like a real LM."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from promptopt.lm.usage import report
from promptopt.lm_protocol import Completion


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


def last_user_message(messages: list[dict[str, str]]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def field_value(message: str, name: str) -> str:
    """The value of ``name: value`` in a rendered user message (first line of it)."""
    for block in message.split("\n\n"):
        if block.startswith(f"{name}: "):
            return block[len(name) + 2 :]
    raise KeyError(name)
