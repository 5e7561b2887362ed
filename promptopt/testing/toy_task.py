"""A toy task for optimizer tests (``word -> out``, the word in capitals) with the LMs that answer
it: a task LM whose answers depend on the instruction, the demos shown and the word, and a
proposer LM for MIPROv2."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from promptopt.core.example import Example
from promptopt.core.program import Predict
from promptopt.testing.scripted_lm import ScriptedLM, field_value, last_user_message

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
