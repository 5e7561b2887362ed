"""Bad input gets a clear error: non-Prediction returns, unstable example ids, metric values outside
[0, 1], empty validation sets, and a CLI evaluation in which every example failed."""

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

import promptopt as po
from promptopt.cli import main as cli_main
from promptopt.core.metric import MetricValueError
from promptopt.optimizers import (
    GEPA,
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    LabeledFewShot,
    MIPROv2,
)
from promptopt.optimizers.result import OptimizationResult
from promptopt.optimizers.stoppers import ConsecutiveFailuresError
from promptopt.testing import ScriptedLM, field_value, last_user_message, toy_examples

data = toy_examples


def metric(ex, pred, trace=None):
    return float(pred.out == ex.out)


def upper_lm():
    return ScriptedLM(lambda m: f"out: {field_value(last_user_message(m), 'word').upper()}")


def reflector():
    return ScriptedLM(lambda m: "Rules:\n- Always write the output in uppercase letters.")


def gepa(the_metric=metric, **kw):
    opts = dict(
        max_metric_calls=300, reflection_lm=reflector(), proposer="rules", progress=False, num_threads=1
    )
    opts.update(kw)
    return GEPA(the_metric, **opts)


def strict_json(text):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


# --- a program must return a Prediction ----------------------------------------------------


class ReturnsText(po.Program):
    def __init__(self):
        self.gen = po.Predict("word -> out")

    def forward(self, word):
        return self.gen(word=word).out


class ReturnsList(ReturnsText):
    def forward(self, word):
        return [self.gen(word=word).out]


def test_a_non_prediction_return_is_an_error_of_that_example():
    res = po.evaluate(ReturnsText(), data(3), metric, lm=upper_lm(), display_progress=False)
    assert len(res.results) == 3 and len(res.errors) == 3
    for r in res.results:
        assert r.prediction is None and not r.scored and r.failure == "program"
        assert "ReturnsText.forward returned a str ('" in r.error
        assert "po.Prediction(out=...)" in r.error
    json.dumps(res.to_dict())  # the results stay serialisable
    assert "not scored" in res.summary()
    # a dict (or any mapping) is still a fine return value
    dict_prog = po.Predict("word -> out")
    assert po.evaluate(dict_prog, data(2), metric, lm=upper_lm(), display_progress=False).score == 1.0


@pytest.mark.parametrize("cls, kind", [(ReturnsText, "str"), (ReturnsList, "list")])
def test_gepa_stops_with_the_message_when_every_return_is_wrong(cls, kind):
    res = gepa().compile(cls(), data(8), data(12), lm=upper_lm())
    assert res.stop_reason.startswith("stopped: 10 consecutive program failures")
    assert f"{cls.__name__}.forward returned a {kind}" in res.stop_reason
    assert "po.Prediction(out=...)" in res.stop_reason
    assert res.budget.metric_calls == 0


def test_gepa_with_a_small_valset_stops_when_the_seed_cannot_be_scored_at_all():
    res = gepa().compile(ReturnsText(), data(8), data(4, offset=10), lm=upper_lm())
    assert "ReturnsText.forward returned a str" in res.stop_reason
    assert res.candidates[0].val_scores == {} and res.budget.metric_calls == 0


def test_mipro_no_longer_crashes_on_a_non_prediction_return():
    opt = MIPROv2(
        metric,
        num_candidates=2,
        num_trials=2,
        minibatch_size=2,
        max_bootstrapped_demos=1,
        max_labeled_demos=1,
        proposer_lm=ScriptedLM(lambda m: "Write the word in uppercase letters."),
        progress=False,
    )
    with pytest.raises(ConsecutiveFailuresError, match=r"ReturnsText\.forward returned a str"):
        opt.compile(ReturnsText(), data(12), lm=upper_lm())


def test_random_search_stops_with_the_message():
    res = BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=2, num_threads=1).compile(
        ReturnsText(), data(12), lm=upper_lm()
    )
    assert "consecutive program failures" in res.stop_reason
    assert "ReturnsText.forward returned a str" in res.stop_reason


# --- example ids are stable across processes ---------------------------------------------

ID_SCRIPT = textwrap.dedent(
    """
    import json, promptopt as po
    rows = [
        po.Example(q="a", tags={"red", "green", "blue", "cyan"}),
        po.Example(q="b", meta={"labels": frozenset({"x", "yy", "zzz"}), "n": [1, 2]}),
    ]
    print(json.dumps([r.id for r in rows]))
    """
)


def test_ids_of_set_valued_examples_are_the_same_in_every_process():
    ids = set()
    for hash_seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", ID_SCRIPT], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        ids.add(out.stdout.strip())
    assert len(ids) == 1, ids


def test_ids_of_plain_examples_do_not_change():
    assert po.Example(q="2+2?", a="4").id == "c4ae66258af25b2b"
    assert po.Example(q="x", n=3, l=[1, 2], d={"b": 1, "a": [1.5, None]}).id == "f60156e321de0adf"


def test_an_object_without_a_stable_text_form_asks_for_an_explicit_id():
    class Opaque:
        pass

    ex = po.Example(q="a", obj=Opaque()).with_inputs("q")
    with pytest.raises(ValueError, match=r"field 'obj'.*Opaque.*with_id\("):
        _ = ex.id
    assert ex.with_id("row-7").id == "row-7"
    assert ex.with_id("row-7").inputs() == {"q": "a"}

    class Point:
        def __init__(self, x):
            self.x = x

        def __repr__(self):
            return f"Point({self.x})"

    assert po.Example(p=Point(1)).id == po.Example(p=Point(1)).id != po.Example(p=Point(2)).id


def test_gepa_refuses_data_without_stable_ids_with_the_fix():
    class Opaque:
        pass

    train = [po.Example(word=w, out=w.upper(), extra=Opaque()).with_inputs("word") for w in ("a", "b")]
    with pytest.raises(ValueError, match=r"with_id"):
        gepa().compile(po.Predict("word -> out"), train, lm=upper_lm())


# --- metric values --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [5.0, -1, math.inf, -math.inf, math.nan, po.Score(1.5, "too much")])
def test_a_metric_value_outside_0_1_is_an_error_naming_metric_example_and_value(value):
    def scorer(ex, pred, trace=None):
        return value

    res = po.evaluate(po.Predict("word -> out"), data(2), scorer, lm=upper_lm(), display_progress=False)
    for r in res.results:
        assert not r.scored and r.failure == "metric"
        shown = value.value if isinstance(value, po.Score) else value
        assert f"metric scorer returned {shown!r} for example {r.example.id}" in r.error
        # the opt-in is named where it would help: never for NaN or infinity
        assert ("allow_unbounded_metric=True" in r.error) is math.isfinite(shown)
    with pytest.raises(MetricValueError, match="for example w0"):
        po.core.metric.checked_score(scorer, data(1)[0], po.Prediction(out="A"), None)


@pytest.mark.parametrize("value, ok", [(5.0, True), (-1, True), (math.inf, False), (math.nan, False)])
def test_unbounded_metrics_are_an_explicit_opt_in(value, ok):
    res = po.evaluate(
        po.Predict("word -> out"),
        data(2),
        lambda ex, pred: value,
        lm=upper_lm(),
        display_progress=False,
        allow_unbounded_metric=True,
    )
    assert all(r.scored for r in res.results) is ok
    if ok:
        summary = res.summary()
        assert res.score == value and f"{value:.3f}" in summary and f"{100 * value:.1f}%" not in summary


def test_booleans_and_scores_in_range_are_accepted():
    def returning(value):
        return lambda ex, pred: value

    for value in (True, False, 0, 1, 0.25, po.Score(0.5, "half")):
        res = po.evaluate(
            po.Predict("word -> out"), data(1), returning(value), lm=upper_lm(), display_progress=False
        )
        assert res.results[0].scored and res.results[0].error is None


def test_gepa_stops_on_infinite_metric_values_and_result_json_stays_standard(tmp_path):
    def infinite(ex, pred, trace=None):
        return math.inf

    res = gepa(infinite).compile(
        po.Predict("word -> out"), data(8), data(12), lm=upper_lm(), run_dir=tmp_path
    )
    assert res.stop_reason.startswith("stopped: 10 consecutive metric failures (metric infinite returned inf")
    text = (tmp_path / "result.json").read_text()
    strict_json(text)
    loaded = OptimizationResult.load(tmp_path / "result.json")
    assert loaded.stop_reason == res.stop_reason
    assert "n/a" in res.summary()


def test_gepa_accepts_an_unbounded_metric_when_asked():
    def hundred(ex, pred, trace=None):
        return 100.0 * (pred.out == ex.out)

    res = gepa(hundred, max_metric_calls=20, allow_unbounded_metric=True, perfect_score=100.0).compile(
        po.Predict("word -> out"), data(4), data(3, offset=10), lm=upper_lm()
    )
    assert res.seed_score == 100.0
    assert res.config["allow_unbounded_metric"] is True


def test_evaluation_json_is_standard_even_without_results(tmp_path):
    res = po.evaluate(po.Predict("word -> out"), [], metric, lm=upper_lm(), display_progress=False)
    strict_json(res.to_json(tmp_path / "empty.json").read_text())


# --- empty validation sets ------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: gepa(),
        lambda: BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=1),
        lambda: MIPROv2(metric, num_candidates=2, num_trials=2, proposer_lm=reflector(), progress=False),
    ],
    ids=["gepa", "random_search", "mipro"],
)
def test_an_empty_valset_is_an_error_where_none_means_the_trainset(make):
    with pytest.raises(
        ValueError, match=r"empty valset: pass a validation set, or valset=None to use the trainset"
    ):
        make().compile(po.Predict("word -> out"), data(4), [], lm=upper_lm())


@pytest.mark.parametrize(
    "make",
    [lambda: LabeledFewShot(2, metric=metric, score=True), lambda: BootstrapFewShot(metric, score=True)],
    ids=["labeled", "bootstrap"],
)
def test_an_empty_valset_is_an_error_where_none_means_no_scoring(make):
    with pytest.raises(
        ValueError, match=r"empty valset: pass a validation set, or valset=None to score nothing"
    ):
        make().compile(po.Predict("word -> out"), data(4), [], lm=upper_lm())


# --- the CLI --------------------------------------------------------------------------------

PROGRAM_FILE = """
import promptopt as po
from promptopt.testing import ScriptedLM, field_value, last_user_message


def reply(messages):
    if MODE == "down":
        raise ConnectionError("connection refused")
    return "out: " + field_value(last_user_message(messages), "word").upper()


class Prog(po.Program):
    def __init__(self):
        self.gen = po.Predict("word -> out", lm=ScriptedLM(reply))

    def forward(self, word):
        out = self.gen(word=word)
        return out.out if MODE == "text" else out


program = Prog()
"""


@pytest.mark.parametrize(
    "mode, code, says",
    [
        ("ok", 0, None),
        ("down", 1, "ConnectionError: connection refused"),
        ("text", 1, "Prog.forward returned a str"),
    ],
)
def test_cli_evaluate_fails_when_every_example_failed(tmp_path, capsys, mode, code, says):
    prog = tmp_path / "prog.py"
    prog.write_text(f"MODE = {mode!r}\n" + PROGRAM_FILE)
    rows = tmp_path / "data.jsonl"
    rows.write_text("".join(json.dumps({"word": w, "out": w.upper()}) + "\n" for w in ("apple", "pear")))
    args = ["evaluate", "--program-file", str(prog), "--data", str(rows), "--inputs", "word"]
    assert cli_main([*args, "--metric", "exact:out", "-q", "--threads", "1"]) == code
    out = capsys.readouterr()
    if says:
        assert "every example failed (2 of 2)" in out.err and says in out.err
    else:
        assert "every example failed" not in out.err + out.out
