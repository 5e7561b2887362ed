import inspect
import json
import math
import threading
import warnings

import numpy as np
import pytest
from scipy import stats

import promptopt as po
from promptopt.testing import ScriptedLM, field_value, last_user_message


def dataset(n=12):
    return [po.Example(_id=f"e{i}", x=str(i), y=str(i * 2)).with_inputs("x") for i in range(n)]


def doubling_lm():
    """Right on even x, wrong on x % 3 == 1, unparseable when x % 5 == 4."""

    def reply(messages):
        x = int(field_value(last_user_message(messages), "x"))
        if x % 5 == 4:
            return ""  # empty reply: a parse failure
        return f"y: {x * 2 if x % 3 != 1 else x}"

    return ScriptedLM(reply)


def metric(example, pred, trace=None):
    return po.Score(float(pred.y == example.y), f"expected {example.y}")


def test_errors_are_scored_and_kept_not_raised():
    prog = po.Predict("x -> y")
    res = po.evaluate(prog, dataset(), metric, lm=doubling_lm(), display_progress=False)
    assert len(res.results) == 12
    failed = [r for r in res.results if r.error]
    assert {r.example.id for r in failed} == {"e4", "e9"}
    assert all(r.score == 0.0 and "ParseError" in r.error and r.trace[0].error for r in failed)
    expected = [float(int(i) % 3 != 1 and int(i) % 5 != 4) for i in range(12)]
    assert res.scores == expected
    assert res.score == pytest.approx(sum(expected) / 12)
    lo, hi = res.ci()
    assert lo <= res.score <= hi
    assert res.usage.calls == 12


def test_parallel_equals_serial():
    prog = po.Predict("x -> y")
    serial = po.evaluate(prog, dataset(), metric, lm=doubling_lm(), num_threads=1, display_progress=False)
    parallel = po.evaluate(prog, dataset(), metric, lm=doubling_lm(), num_threads=6, display_progress=False)
    strip = lambda r: {k: v for k, v in r.to_dict().items() if k != "seconds"}  # noqa: E731
    assert [strip(r) for r in serial.results] == [
        {**strip(r), "trace": [{**t, "latency": 0.0} for t in strip(r)["trace"]]} for r in parallel.results
    ] or [strip(r) for r in serial.results] == [strip(r) for r in parallel.results]
    assert serial.scores == parallel.scores


def test_program_and_metric_exceptions_do_not_stop_the_run():
    class Boom(po.Program):
        def forward(self, x):
            if x == "3":
                raise RuntimeError("kaboom")
            return {"y": str(int(x) * 2)}

    def picky(example, pred, trace=None):
        if example.x == "5":
            raise ZeroDivisionError("metric bug")
        return pred.y == example.y

    res = po.evaluate(Boom(), dataset(8), picky, display_progress=False, failure_score=-1.0)
    by_id = {r.example.id: r for r in res.results}
    assert "kaboom" in by_id["e3"].error and by_id["e3"].score == -1.0
    assert "metric raised" in by_id["e5"].error
    assert by_id["e0"].score == 1.0 and by_id["e0"].prediction.y == "0"


def test_exports(tmp_path):
    res = po.evaluate(po.Predict("x -> y"), dataset(6), metric, lm=doubling_lm(), display_progress=False)
    df = res.to_pandas()
    assert list(df["id"]) == [f"e{i}" for i in range(6)] and "pred.y" in df and "feedback" in df
    res.to_json(tmp_path / "r.json")
    back = po.EvaluationResult.from_json(tmp_path / "r.json")
    assert back.scores == res.scores and back.results[4].error == res.results[4].error
    assert json.loads((tmp_path / "r.json").read_text())["n"] == 6
    res.to_csv(tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_text().count("\n") >= 7
    assert "%" in res.summary()


def test_settings_reach_worker_threads():
    seen = set()

    class Who(po.Program):
        def forward(self, x):
            seen.add(threading.current_thread().name)
            return po.Predict("x -> y")(x=x)

    lm = ScriptedLM(lambda m: "y: 1")
    with po.context(lm=lm):
        res = po.evaluate(Who(), dataset(8), lambda e, p: 1.0, num_threads=4, display_progress=False)
    assert not res.errors and len(lm.calls) == 8


def test_ci_is_a_seeded_scipy_bootstrap_and_degenerate_results_need_no_resampling():
    res = po.evaluate(po.Predict("x -> y"), dataset(), metric, lm=doubling_lm(), display_progress=False)
    rng = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    ref = stats.bootstrap(
        (np.asarray(res.scores),),
        np.mean,
        n_resamples=9999,
        method="percentile",
        **{rng: np.random.default_rng(0)},
    ).confidence_interval
    assert res.ci() == (float(ref.low), float(ref.high)) == tuple(res.to_dict()["ci95"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        perfect = po.evaluate(
            po.Predict("x -> y"), dataset(3), lambda e, p: 1.0, lm=doubling_lm(), display_progress=False
        )
        assert perfect.ci() == (1.0, 1.0)
        one = po.evaluate(po.Predict("x -> y"), dataset(1), metric, lm=doubling_lm(), display_progress=False)
        assert one.ci() == (one.score, one.score)
        assert all(math.isnan(x) for x in po.EvaluationResult([]).ci())
