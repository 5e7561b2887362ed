"""Typed callback events: every event a run emits has exactly its type's keys, handlers are found
by name with misspellings refused up front, and a failing callback never stops a run."""

from __future__ import annotations

import logging

import pytest

from promptopt.optimizers import GEPA, BootstrapFewShotWithRandomSearch, Callback, MIPROv2
from promptopt.optimizers.callbacks import EVENTS, Dispatcher
from promptopt.testing import ScriptedLM, toy_examples, toy_metric, toy_program, toy_reply


def task_lm():
    return ScriptedLM(lambda messages: toy_reply(messages, lambda word, system, shown: "uppercase" in system))


def reflector():
    return ScriptedLM("Here are rules:\n- Always write the output in uppercase letters.")


class Record(Callback):
    def __init__(self):
        self.events = []

    def on_event(self, name, event):
        self.events.append((name, dict(event)))


def keys(event_type):
    return set(event_type.__required_keys__), set(event_type.__required_keys__ | event_type.__optional_keys__)


def check_types(events):
    assert events
    for name, event in events:
        required, allowed = keys(EVENTS[name])
        assert required <= set(event) <= allowed, (name, sorted(event), sorted(required), sorted(allowed))


def test_gepa_events_match_their_types():
    cb = Record()
    GEPA(
        toy_metric,
        max_metric_calls=40,
        reflection_lm=reflector(),
        proposer="rules",
        callbacks=[cb],
        progress=False,
    ).compile(toy_program(), toy_examples(6), toy_examples(4, offset=10), lm=task_lm())
    check_types(cb.events)
    names = [n for n, _ in cb.events]
    assert names[0] == "run_start" and names[-1] == "run_end"
    assert {"parent_selected", "minibatch_evaluated", "proposal", "val_evaluated", "iteration_end"} <= set(
        names
    )


def test_mipro_events_match_their_types():
    cb = Record()
    MIPROv2(
        toy_metric,
        auto=None,
        num_candidates=2,
        num_trials=3,
        minibatch_size=2,
        minibatch_full_eval_steps=2,
        proposer_lm=ScriptedLM("```\nWrite the word in uppercase letters.\n```"),
        callbacks=[cb],
        progress=False,
    ).compile(toy_program(), toy_examples(6), toy_examples(4, offset=10), lm=task_lm())
    check_types(cb.events)
    assert {"trial", "val_evaluated", "proposal", "run_end"} <= {n for n, _ in cb.events}


def test_random_search_events_match_their_types():
    cb = Record()
    BootstrapFewShotWithRandomSearch(toy_metric, num_candidate_programs=1, callbacks=[cb]).compile(
        toy_program(), toy_examples(4), toy_examples(3, offset=10), lm=task_lm()
    )
    check_types(cb.events)


def test_a_misspelt_handler_is_refused_when_the_class_is_defined():
    with pytest.raises(TypeError, match="on_trail handles no event; did you mean on_trial"):

        class Typo(Callback):
            def on_trail(self, event):
                pass


def test_a_duck_typed_callback_with_a_misspelt_handler_is_refused_by_the_run():
    class Typo:
        def on_run_ends(self, event):
            pass

    with pytest.raises(TypeError, match="did you mean on_run_end"):
        Dispatcher([Typo()])
    with pytest.raises(TypeError, match="on_run_ends"):
        GEPA(
            toy_metric, max_metric_calls=10, reflection_lm=reflector(), callbacks=[Typo()], progress=False
        ).compile(toy_program(), toy_examples(3), toy_examples(2, offset=10), lm=task_lm())


def test_handlers_are_called_by_event_and_a_failing_one_is_logged(caplog):
    seen = []

    class Broken(Callback):
        def on_val_evaluated(self, event):
            raise RuntimeError("boom")

    class Ends(Callback):
        def on_run_end(self, event):
            seen.append(event["result"].best_score)

    with caplog.at_level(logging.ERROR, logger="promptopt"):
        res = GEPA(
            toy_metric,
            max_metric_calls=20,
            reflection_lm=reflector(),
            proposer="rules",
            callbacks=[Broken(), Ends()],
            progress=False,
        ).compile(toy_program(), toy_examples(4), toy_examples(3, offset=10), lm=task_lm())
    assert seen == [res.best_score]
    assert "callback Broken failed on val_evaluated" in caplog.text
