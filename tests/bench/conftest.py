"""Scripted iris runs shared by the bench tests: a task LM that answers from the petals once the
instruction carries RULE (and 'virginica' before), a reflector that proposes RULE, and a small spec."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from promptopt.bench import ExperimentSpec, LMs
from promptopt.testing import ScriptedLM, field_value, last_user_message

RULE = "RULE-PETAL"


def iris_reply(messages):
    """Answers from the petals once the instruction carries the rule; 'virginica' before."""
    if RULE not in messages[0]["content"]:
        return "species: virginica"
    user = last_user_message(messages)
    length, width = float(field_value(user, "petal_length")), float(field_value(user, "petal_width"))
    species = "setosa" if length < 2.5 else ("versicolor" if width < 1.75 else "virginica")
    return f"species: {species}"


class Interrupting:
    """A task LM that raises KeyboardInterrupt (like Ctrl-C) on its N-th call, once."""

    def __init__(self, at: int | None = None) -> None:
        self.at = at
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, messages):
        with self._lock:
            self.calls += 1
            fire = self.at is not None and self.calls == self.at
        if fire:
            raise KeyboardInterrupt
        return iris_reply(messages)


def make_lms(task_fn=iris_reply) -> LMs:
    reflector = ScriptedLM(lambda m: f"```\n{RULE}: decide the species from the petal length and width.\n```")
    return LMs(task=ScriptedLM(task_fn), reflection=reflector)


def make_spec(out, **kw) -> ExperimentSpec:
    opts = dict(
        tasks=["iris"],
        programs=["predict"],
        optimizers=["baseline", "gepa"],
        seeds=[0, 1],
        budget=30,
        sizes={"iris": (6, 6, 12)},
        num_threads=1,
        out=str(out),
    )
    opts.update(kw)
    return ExperimentSpec(**opts).validate()


@pytest.fixture
def iris() -> SimpleNamespace:
    return SimpleNamespace(
        RULE=RULE, reply=iris_reply, Interrupting=Interrupting, lms=make_lms, spec=make_spec
    )
