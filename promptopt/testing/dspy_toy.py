"""The toy task's LMs as DSPy's runtime expects them: replies in DSPy's field markers (which
promptopt's parser also reads, so one LM serves DSPy while optimizing and promptopt while
scoring), and a reflector that answers in whatever format it is asked (gepa's fenced block, DSPy's
JSON or field markers)."""

from __future__ import annotations

import json
import re

from promptopt.testing.scripted_lm import ScriptedLM


def _word_of(text: str) -> str:
    m = re.search(r"\[\[ ## word ## \]\]\s*\n(.*)", text) or re.search(r"^word: (.*)$", text, re.M)
    if m is None:
        raise ValueError(f"No word in the request: {text[:200]!r}")
    return m.group(1).strip()


def dspy_toy_lm(*, demo_works: bool = False) -> ScriptedLM:
    """Uppercases when its instruction says so (or, with ``demo_works``, when a demo shows an answer)."""

    def reply(messages: list[dict[str, str]]) -> str:
        word = _word_of(messages[-1]["content"])
        upper = "uppercase" in messages[0]["content"].lower()
        upper = upper or (demo_works and any(m["role"] == "assistant" for m in messages))
        return f"[[ ## out ## ]]\n{word.upper() if upper else word}\n\n[[ ## completed ## ]]"

    return ScriptedLM(reply)


def dspy_toy_reflector() -> ScriptedLM:
    """Proposes "Repeat the word in uppercase letters." in the format the request asks for."""

    def reply(messages: list[dict[str, str]]) -> str:
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        block = re.search(r"Your output fields are:\n(.*?)(?:\n[A-Z]|\Z)", system, re.S)
        names = re.findall(r"`(\w+)`", block.group(1)) if block else []
        value = {
            n: "Repeat the word in uppercase letters." if "instruction" in n else "A word task."
            for n in names
        }
        if not names:
            return "```\nRepeat the word in uppercase letters.\n```"
        if "JSON object" in system:
            return json.dumps(value)
        return "\n\n".join(f"[[ ## {n} ## ]]\n{v}" for n, v in value.items()) + "\n\n[[ ## completed ## ]]"

    return ScriptedLM(reply)
