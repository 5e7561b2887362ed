"""MIPROv2 under LM outages: examples the LM could not answer are not scores, a long outage stops the
run with its cause and leaves it resumable, and a resumed (or briefly disturbed) run ends as a run
that never had an outage."""

import threading

import optuna
import pytest

from promptopt.optimizers import Callback, MIPROv2
from promptopt.optimizers.components import serialize_components
from promptopt.optimizers.stoppers import ConsecutiveFailuresError
from promptopt.testing import ScriptedLM, toy_examples, toy_metric, toy_proposer, toy_reply
from promptopt.testing import toy_program as program

TRAIN = toy_examples(6)
VAL = toy_examples(8, offset=10)


@pytest.fixture
def where(memory_path):
    """In memory where the machine has it: a run commits to its SQLite study hundreds of times."""
    return memory_path


class Metric:
    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, ex, pred, trace=None):
        with self.lock:
            self.calls += 1
        return toy_metric(ex, pred, trace)


class Outage:
    """The task LM; call ``n`` (counted from 0) raises ``ConnectionError`` when ``down(n)``."""

    def __init__(self, down=lambda n: False):
        self.down = down
        self.calls = 0
        self.failed = 0
        self.lock = threading.Lock()

    def lm(self):
        def reply(messages):
            with self.lock:
                n = self.calls
                self.calls += 1
            if self.down(n):
                with self.lock:
                    self.failed += 1
                raise ConnectionError("connection refused")
            return toy_reply(messages)

        return ScriptedLM(reply)


def proposer():
    return toy_proposer()


class Marks(Callback):
    """The task-LM call count when the search starts: when the seed's full evaluation is recorded,
    right after the preparation."""

    def __init__(self, outage, metric):
        self.outage, self.metric = outage, metric
        self.search_starts_at = self.metric_calls_before = None
        self.after_trials = []  # task-LM calls when each trial ended

    def on_event(self, name, event):
        if name == "val_evaluated" and event["candidate_id"] == 0 and self.search_starts_at is None:
            self.search_starts_at, self.metric_calls_before = self.outage.calls, self.metric.calls
        elif name == "trial":
            self.after_trials.append(self.outage.calls)


def compile_run(run_dir, outage, *, resume=False, **kw):
    metric = Metric()
    marks = Marks(outage, metric)
    opts = dict(
        num_candidates=4,
        num_trials=12,
        minibatch_size=3,
        minibatch_full_eval_steps=4,
        max_bootstrapped_demos=1,
        max_labeled_demos=1,
        num_threads=1,  # the outage windows are counted in calls: keep their order fixed
        progress=False,
        seed=5,
    )
    opts.update(kw)
    opt = MIPROv2(metric, proposer_lm=proposer(), callbacks=[marks], **opts)
    res = opt.compile(program(), TRAIN, VAL, lm=outage.lm(), run_dir=run_dir, resume=resume)
    return res, metric, marks


def study_of(run_dir):
    return optuna.load_study(study_name="mipro", storage=f"sqlite:///{run_dir / 'optuna.db'}")


def recorded(run_dir):
    """Trial number -> (params, value, scores) of the complete trials; combination -> full scores."""
    study = study_of(run_dir)
    trials = {
        t.number: (t.params, t.value, t.user_attrs["scores"])
        for t in study.trials
        if t.state.name == "COMPLETE"
    }
    fulls = {k: v["val_scores"] for k, v in study.user_attrs.items() if k.startswith("full:")}
    return trials, fulls


def decisions(res, run_dir):
    """What a run decided: candidates, their scores, the trials, metric calls and the program."""
    trials, fulls = recorded(run_dir)
    return {
        "candidates": [(c.components, c.val_scores, c.origin, c.discovered_at) for c in res.candidates],
        "best_id": res.best_id,
        "trials": trials,
        "fulls": fulls,
        "metric_calls": res.budget.metric_calls,
        "program": serialize_components(res.best_program.components()),
    }


@pytest.fixture
def healthy(where):
    outage = Outage()
    res, _, marks = compile_run(where / "healthy", outage)
    assert len(res.candidates) >= 3 and res.stop_reason == "all 12 trials run"
    return decisions(res, where / "healthy"), marks.search_starts_at, outage.calls, marks.after_trials


def no_stand_ins(run_dir, expected):
    """Every score in the study is the score the healthy run recorded for that trial or program."""
    trials, fulls = recorded(run_dir)
    for number, (params, value, scores) in trials.items():
        assert expected["trials"][number] == (params, value, scores)
    for key, scores in fulls.items():
        assert scores.items() <= expected["fulls"][key].items()


@pytest.mark.parametrize("offset", [4, 13, 30])
def test_a_long_outage_stops_the_run_and_resume_matches_a_run_without_one(where, healthy, offset):
    expected, start, total, _ = healthy
    assert start + offset < total
    outage = Outage(down=lambda n: n >= start + offset)
    first, _, _ = compile_run(where / "run", outage)
    assert first.stop_reason.startswith("stopped: 10 consecutive LM failures (ConnectionError: connection")
    assert outage.failed == 10
    no_stand_ins(where / "run", expected)
    assert study_of(where / "run").user_attrs.get("end") is None  # not finished

    resumed, _, _ = compile_run(where / "run", Outage(), resume=True)
    assert resumed.stop_reason == "all 12 trials run"
    assert decisions(resumed, where / "run") == expected


def test_a_full_evaluation_cut_short_keeps_its_scores_and_is_completed_on_resume(where, healthy):
    expected, _, _, after_trials = healthy
    step_starts = after_trials[3]  # the fourth trial is followed by a step's full evaluation
    outage = Outage(down=lambda n: n >= step_starts + 3)
    first, _, _ = compile_run(where / "run", outage)
    assert first.stop_reason.startswith("stopped: 10 consecutive LM failures")
    _, fulls = recorded(where / "run")
    partial = [k for k, scores in fulls.items() if len(scores) < len(VAL)]
    assert len(partial) == 1 and 3 <= len(fulls[partial[0]]) < len(VAL)  # the rest from its trials
    assert first.candidates[-1].val_scores == fulls[partial[0]]  # listed, but not chosen while partial
    assert first.best_id != len(first.candidates) - 1
    no_stand_ins(where / "run", expected)

    resumed, _, _ = compile_run(where / "run", Outage(), resume=True)
    assert decisions(resumed, where / "run") == expected


def test_an_lm_that_never_answers_stops_the_run_at_once(where):
    outage = Outage(down=lambda n: True)
    with pytest.raises(
        ConsecutiveFailuresError, match=r"stopped: 10 consecutive LM failures \(ConnectionError"
    ):
        compile_run(where / "dead", outage)
    assert outage.calls == 10


def test_an_lm_that_dies_during_the_search_stops_it_with_few_metric_calls(where, healthy):
    _, start, _, _ = healthy
    outage = Outage(down=lambda n: n >= start)
    res, metric, marks = compile_run(where / "run", outage)
    assert res.stop_reason.startswith("stopped: 10 consecutive LM failures")
    assert metric.calls == marks.metric_calls_before and outage.failed == 10
    assert res.best_id == 0 and len(res.candidates) == 1  # the seed, scored before the outage


@pytest.mark.parametrize("every", [3, 7])
def test_short_outages_do_not_change_the_run(where, healthy, every):
    """Fewer than ten failures in a row: the unscored examples are run again, nothing stops."""
    expected, start, _, _ = healthy
    outage = Outage(down=lambda n: n >= start and n % every == 0)
    res, _, _ = compile_run(where / "run", outage)
    assert outage.failed > 5
    assert res.stop_reason == "all 12 trials run"
    assert decisions(res, where / "run") == expected


def test_a_window_of_nine_failures_does_not_change_the_run(where, healthy):
    expected, start, _, _ = healthy
    outage = Outage(down=lambda n: start + 20 <= n < start + 29)
    res, _, _ = compile_run(where / "run", outage)
    assert outage.failed == 9
    assert decisions(res, where / "run") == expected


def test_failure_options_are_passed_through_and_saved(where):
    outage = Outage(down=lambda n: True)
    with pytest.raises(ConsecutiveFailuresError, match="stopped: 3 consecutive LM failures"):
        compile_run(where / "dead", outage, max_consecutive_failures=3)
    assert outage.calls == 3
    opt = MIPROv2(Metric(), max_consecutive_failures=None, allow_unbounded_metric=True)
    assert opt.config()["max_consecutive_failures"] is None
    assert opt.config()["allow_unbounded_metric"] is True
    with pytest.raises(ValueError, match="max_consecutive_failures"):
        MIPROv2(Metric(), max_consecutive_failures=0)


def test_unbounded_metric_values_are_scores_when_allowed(where):
    res = MIPROv2(
        lambda ex, pred, trace=None: 5.0 * (pred.out == ex.out),
        allow_unbounded_metric=True,
        proposer_lm=proposer(),
        num_candidates=2,
        num_trials=2,
        minibatch_size=3,
        max_bootstrapped_demos=0,
        max_labeled_demos=0,
        num_threads=1,
        progress=False,
    ).compile(program(), TRAIN, VAL, lm=Outage().lm(), run_dir=where / "run")
    assert res.stop_reason == "all 2 trials run"
    assert max(s for c in res.candidates for s in c.val_scores.values()) == 5.0
