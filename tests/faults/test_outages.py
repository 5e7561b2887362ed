"""LM and metric outages: failures are recorded without a score, retried later, and stop a run early.

Every scenario runs a scripted LM (or a dead endpoint) whose failures are switched on and off by the
test, so each run is bounded by its budget and by the consecutive-failure stopper.
"""

import json
import socket
import threading

import pytest

import promptopt as po
from promptopt.lm.client import LMError
from promptopt.optimizers import GEPA, BootstrapFewShotWithRandomSearch
from promptopt.optimizers.components import serialize_components as ser
from promptopt.optimizers.evaluation import CandidateEvaluator
from promptopt.optimizers.gepa.reflection import Proposal
from promptopt.optimizers.result import Candidate, best_candidate, compare_on_common
from promptopt.optimizers.stoppers import (
    ConsecutiveFailuresError,
    FailureStreak,
    MaxConsecutiveFailures,
    Progress,
)
from promptopt.testing import ScriptedLM, field_value, last_user_message, toy_examples, toy_request
from promptopt.testing import toy_program as program

data = toy_examples
VAL_WORDS = {e.word for e in data(6, offset=10)}


def metric(ex, pred, trace=None):
    return po.Score(float(pred.out == ex.out), "Correct." if pred.out == ex.out else f"Expected {ex.out}.")


def rules_reflector():
    return ScriptedLM(lambda m: "Rules:\n- Always write the output in uppercase letters.")


class Outage:
    """When ``down`` returns True for a call, the LM raises ``ConnectionError`` instead of replying."""

    def __init__(self, down=lambda word, system, n: False):
        self.down = down
        self.calls = 0
        self.failed = 0
        self.lock = threading.Lock()

    def lm(self, good=frozenset()):
        """Uppercases the words in ``good``, or every word when the instruction says so."""

        def reply(messages):
            word, system, _ = toy_request(messages)
            with self.lock:
                n = self.calls
                self.calls += 1
            if self.down(word, system, n):
                with self.lock:
                    self.failed += 1
                raise ConnectionError("connection refused")
            return f"out: {word.upper() if ('uppercase' in system or word in good) else word}"

        return ScriptedLM(reply)


GOOD = {"nutty", "olive", "peach"}  # the last half of the validation words: the seed scores 0.5


def gepa(**kw):
    opts = dict(
        max_metric_calls=40,
        reflection_lm=rules_reflector(),
        proposer="rules",
        progress=False,
        evolve_demos=False,
        seed_demos=0,
        use_merge=False,
        num_threads=1,
        seed=3,
    )
    opts.update(kw)
    return GEPA(metric, **opts)


def compile_gepa(lm, run_dir=None, resume=False, **kw):
    return gepa(**kw).compile(program(), data(8), data(6, offset=10), lm=lm, run_dir=run_dir, resume=resume)


# --- probe 1: records of an outage are not scores ------------------------------------------


def test_seed_scored_during_an_outage_is_scored_again_on_resume(tmp_path):
    healthy = compile_gepa(Outage().lm(GOOD))
    assert healthy.seed_score == 0.5

    # the server goes away after three replies and stays away for the rest of the first run
    outage = Outage(down=lambda word, system, n: n >= 3)
    first = compile_gepa(outage.lm(GOOD), tmp_path / "run")
    assert first.stop_reason.startswith("stopped: 10 consecutive LM failures (ConnectionError: connection")
    assert first.budget.metric_calls == 3  # the three replies; failures are not metric calls
    assert len(first.candidates[0].val_scores) == 3  # only what was scored
    assert outage.failed <= 10
    saved = json.loads((tmp_path / "run" / "state.json").read_text())
    assert not saved["finished"]
    assert all(r["error"] is None for r in saved["records"].values())

    resumed = compile_gepa(Outage().lm(GOOD), tmp_path / "run", resume=True)
    assert resumed.candidates[0].val_scores == healthy.candidates[0].val_scores
    assert resumed.seed_score == healthy.seed_score == 0.5
    assert resumed.best_score == healthy.best_score == 1.0


def test_candidate_validated_during_an_outage_is_not_judged_on_it(tmp_path):
    healthy = compile_gepa(Outage().lm(GOOD))
    child = healthy.candidates[1]
    assert child.val_score == 1.0 and healthy.best_id == 1

    # the child's validation runs fail (its minibatch on training words went through)
    outage = Outage(down=lambda word, system, n: "uppercase" in system and word in VAL_WORDS)
    first = compile_gepa(outage.lm(GOOD), tmp_path / "run")
    assert "consecutive LM failures" in first.stop_reason
    assert all(not c.val_scores or c.val_score != 0.0 for c in first.candidates[1:])
    assert first.best_id == 0  # an unscored candidate never wins

    resumed = compile_gepa(Outage().lm(GOOD), tmp_path / "run", resume=True)
    assert resumed.candidates[1].val_scores == child.val_scores
    assert resumed.best_id == 1 and resumed.best_score == 1.0


def test_evaluator_keeps_failures_out_of_its_records_and_retries_them():
    outage = Outage(down=lambda word, system, n: word == "kiwis")
    ev = CandidateEvaluator(program(), metric, num_threads=1, lm=outage.lm({"kiwis", "lemon", "mango"}))
    comps = ser(program().components())
    recs = ev.run(comps, data(3, offset=10))  # kiwis, lemon, mango
    assert [r.scored for r in recs] == [False, True, True]
    assert recs[0].failure == "LM" and "ConnectionError" in recs[0].error
    assert ev.metric_calls == 2 and ev.unscored_calls == 1
    assert all(r["error"] is None for r in ev.records.values()) and len(ev.records) == 2
    assert ev.cached(comps, data(3, offset=10)) is None  # not every example has a score yet

    outage.down = lambda word, system, n: False
    before = outage.calls
    recs = ev.run(comps, data(3, offset=10))
    assert outage.calls == before + 1  # only the failed pair ran again
    assert [r.score for r in recs] == [1.0, 1.0, 1.0] and all(r.scored for r in recs)
    assert ev.metric_calls == 3


def test_what_counts_as_an_lm_failure_and_what_is_a_score():
    def reply(messages):
        word = field_value(last_user_message(messages), "word")
        if word == "apple":
            raise RuntimeError("server fell over")  # whatever the LM call raises
        if word == "berry":
            raise LMError("request failed: the request exceeds the available context size")
        if word == "cider":
            return ""  # nothing to parse
        return f"out: {word.upper()}"

    class Checked(po.Program):
        def __init__(self):
            self.gen = po.Predict("word -> out")

        def forward(self, word):
            if word == "dates":
                raise ValueError("the program's own check failed")
            return self.gen(word=word)

    res = po.evaluate(Checked(), data(5), metric, lm=ScriptedLM(reply), display_progress=False)
    by_word = {r.example.word: r for r in res.results}
    assert by_word["apple"].failure == "LM" and not by_word["apple"].scored
    # too long a prompt, an unreadable reply and the program's own error are the candidate's doing
    for word in ("berry", "cider", "dates"):
        assert by_word[word].scored and by_word[word].score == 0.0 and by_word[word].error
    assert by_word["elder"].scored and by_word["elder"].score == 1.0
    assert len(res.unscored) == 1 and "1 not scored" in res.summary()


# --- probe 1: runs where everything fails stop with the cause ----------------------------


def test_gepa_stops_when_every_lm_call_fails():
    outage = Outage(down=lambda word, system, n: True)
    res = gepa(max_metric_calls=400, num_threads=4).compile(
        program(), data(8), data(12, offset=0), lm=outage.lm()
    )
    assert res.stop_reason == "stopped: 10 consecutive LM failures (ConnectionError: connection refused)"
    assert res.budget.metric_calls == 0
    assert outage.calls <= 10 + 4  # at most the evaluations already in flight ran on
    assert len(res.candidates) == 1 and res.candidates[0].val_scores == {}
    assert "consecutive LM failures" in res.summary()


def test_gepa_stops_when_the_reflection_lm_is_down():
    def down(messages):
        raise ConnectionError("reflection server refused")

    res = gepa(reflection_lm=ScriptedLM(down), max_metric_calls=400).compile(
        program(), data(8), data(6, offset=10), lm=Outage().lm(GOOD)
    )
    assert res.stop_reason == (
        "stopped: 10 consecutive reflection-LM failures (ConnectionError: reflection server refused)"
    )
    assert res.budget.metric_calls <= 6 + 8  # the seed, and each training example once for its parent


def _dead_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gepa_stops_when_the_lm_server_refuses_connections(tmp_path):
    lm = po.LM(
        "openai/tiny",
        api_base=f"http://127.0.0.1:{_dead_port()}/v1",
        api_key="sk-test",
        num_retries=0,
        timeout=5,
        cache=False,
    )
    res = gepa(max_metric_calls=400, max_consecutive_failures=4).compile(
        program(), data(8), data(6, offset=10), lm=lm, run_dir=tmp_path / "run"
    )
    assert res.stop_reason.startswith(
        "stopped: 4 consecutive LM failures (LMError: openai/tiny: request failed"
    )
    assert res.budget.metric_calls == 0
    assert json.loads((tmp_path / "run" / "result.json").read_text())["stop_reason"] == res.stop_reason


def test_gepa_stops_when_every_metric_call_fails():
    calls = []

    def broken(ex, pred, trace=None):
        calls.append(ex.id)
        return pred["missing_field"]

    res = GEPA(
        broken,
        max_metric_calls=400,
        reflection_lm=rules_reflector(),
        proposer="rules",
        progress=False,
        num_threads=1,
    ).compile(program(), data(8), data(12), lm=Outage().lm())
    assert res.stop_reason.startswith("stopped: 10 consecutive metric failures (metric raised KeyError")
    assert "(metric broken, example w" in res.stop_reason
    assert len(calls) == 10 and res.budget.metric_calls == 0


def test_random_search_stops_on_an_outage_and_resumes(tmp_path):
    train, val = data(8), data(6, offset=10)

    def opt(**kw):
        return BootstrapFewShotWithRandomSearch(
            metric, num_candidate_programs=3, max_bootstrapped_demos=1, max_labeled_demos=1, **kw
        )

    healthy = opt().compile(program(), train, val, lm=Outage().lm(GOOD))
    outage = Outage(down=lambda word, system, n: n >= 8)
    # one thread: a success finishing after a failure would end the streak and blur the count
    cut = opt(max_metric_calls=400, num_threads=1).compile(
        program(), train, val, lm=outage.lm(GOOD), run_dir=tmp_path / "r"
    )
    assert cut.stop_reason.startswith("stopped: 10 consecutive LM failures (ConnectionError")
    assert cut.budget.metric_calls == 8 and cut.budget.unscored_calls == 10
    assert outage.calls == 8 + 10
    resumed = opt().compile(program(), train, val, lm=Outage().lm(GOOD), run_dir=tmp_path / "r", resume=True)
    assert [c.val_scores for c in resumed.candidates] == [c.val_scores for c in healthy.candidates]
    assert resumed.best_id == healthy.best_id and resumed.stop_reason == "all candidates scored"


# --- comparisons only on examples both candidates were scored on -------------------------


def test_candidates_are_compared_on_common_examples_only():
    a = Candidate(0, {}, val_scores={"e1": 1.0, "e2": 1.0, "e3": 0.0})  # e0 lost to an outage
    b = Candidate(1, {}, val_scores={"e0": 1.0, "e1": 1.0, "e2": 1.0, "e3": 0.0})
    assert compare_on_common(a, b) == (0.0, 3)
    assert best_candidate([a, b]).id == 0  # a tie where both were scored: the earlier one
    c = Candidate(2, {}, val_scores={"e3": 1.0})
    assert compare_on_common(c, a) == (1.0, 1)
    assert best_candidate([a, b, c]).id == 2
    empty = Candidate(3, {}, val_scores={})
    assert compare_on_common(empty, a) == (0.0, 0)
    assert best_candidate([empty]).id == 3 and best_candidate([empty, a]).id == 0


def test_minibatch_acceptance_ignores_the_examples_a_parent_lost_to_an_outage():
    """The parent fails on one minibatch example; the child, no better on the others, must not win
    on it (scored 0.0 for the parent, it used to)."""
    proposed = []

    def reworded(request, lm):
        proposed.append(request.instruction)
        return Proposal(request.instruction + " Please.", "reworded")

    # replies are right for 'apple' only; the seed's instruction cannot reach the LM for 'apple'
    outage = Outage(down=lambda word, system, n: word == "apple" and "please" not in system)
    res = GEPA(
        metric,
        max_metric_calls=30,
        reflection_lm=rules_reflector(),
        proposer=reworded,
        progress=False,
        evolve_demos=False,
        seed_demos=0,
        use_merge=False,
        tie_extensions=0,
        minibatch_size=3,
        num_threads=1,
        seed=0,
    ).compile(program(), data(3), data(2, offset=10), lm=outage.lm({"apple"}))
    assert proposed  # a child was proposed and judged on the minibatch
    assert [c.origin for c in res.candidates] == ["seed"]


# --- the stopper itself --------------------------------------------------------------------


def test_failure_streak_uses_the_stopper_and_resets_on_a_score():
    stop = MaxConsecutiveFailures(3)
    assert stop(Progress(consecutive_failures=2, failure_kind="LM", last_failure="x")) is None
    got = stop(Progress(consecutive_failures=3, failure_kind="metric", last_failure="ValueError: v"))
    assert got == "stopped: 3 consecutive metric failures (ValueError: v)"
    streak = FailureStreak(3)
    streak.failed("LM", "ConnectionError: a")
    streak.failed("LM", "ConnectionError: b")
    streak.scored()
    streak.failed("LM", "ConnectionError: c")
    streak.failed("LM", "ConnectionError: d")
    with pytest.raises(ConsecutiveFailuresError, match=r"3 consecutive LM failures \(ConnectionError: e\)"):
        streak.failed("LM", "ConnectionError: e")
    assert FailureStreak(None).limit is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"iteration": 3, "cand', "not valid JSON"),
        (b"\x00\xff\xfe binary", "not UTF-8 text"),
        (b"[1, 2]", "a JSON list, not a run state"),
        (b'{"iteration": 3}', "not a GEPA run state"),
    ],
)
def test_a_damaged_gepa_state_is_named_with_the_way_out(tmp_path, content, reason):
    from promptopt.optimizers.rundir import DamagedStateError

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "state.json").write_bytes(content)
    gepa = GEPA(metric, max_metric_calls=10, reflection_lm=ScriptedLM(lambda m: "```\nx\n```"))
    with pytest.raises(DamagedStateError, match=rf"state\.json is {reason}.*resume=False"):
        gepa.compile(
            program(),
            toy_examples(4),
            toy_examples(3, 4),
            lm=ScriptedLM(lambda m: "out: x"),
            run_dir=tmp_path / "run",
            resume=True,
        )
