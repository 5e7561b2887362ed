"""Test doubles and checks for code built on promptopt: a scripted LM and a fake OpenAI-compatible
server that answer without a model, a toy task, injected faults, and the conformance suite every
optimizer passes (:mod:`promptopt.testing.conformance`). Every capability also has tests against the
real local model.
"""

from promptopt.testing.fake_server import FakeOpenAIServer
from promptopt.testing.faults import InterruptAfter, Killed, dies_at, resumes_to_the_uninterrupted_run
from promptopt.testing.scripted_lm import ScriptedLM, field_value, last_user_message
from promptopt.testing.toy_task import (
    TOY_PROPOSALS,
    TOY_WORDS,
    mixed_capitals,
    toy_examples,
    toy_metric,
    toy_program,
    toy_proposer,
    toy_reply,
    toy_request,
)

__all__ = [
    "TOY_PROPOSALS",
    "TOY_WORDS",
    "FakeOpenAIServer",
    "InterruptAfter",
    "Killed",
    "ScriptedLM",
    "dies_at",
    "field_value",
    "last_user_message",
    "mixed_capitals",
    "resumes_to_the_uninterrupted_run",
    "toy_examples",
    "toy_metric",
    "toy_program",
    "toy_proposer",
    "toy_reply",
    "toy_request",
]
