"""Test doubles: a scripted LM that answers without a model.

``ScriptedLM`` is for unit tests of optimizer and program logic; every
capability also has tests against the real local model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
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
