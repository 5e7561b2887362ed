"""The LangProBe harness on the real local model: a tiny iris matrix (baseline and GEPA)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from langprobe import get_task
from promptopt.bench import ExperimentSpec, LMs, build_report, run_matrix
from promptopt.bench.store import Store
from promptopt.evaluate import evaluate
from promptopt.optimizers.components import deserialize_components


@pytest.mark.real_lm
def test_tiny_iris_matrix_on_the_local_model(tmp_path, local_lm_factory):
    cache = tmp_path / "cache.sqlite"
    lms = LMs(
        task=local_lm_factory(cache, max_tokens=64),
        reflection=local_lm_factory(cache, temperature=0.7, max_tokens=300),
    )
    spec = ExperimentSpec(
        tasks=["iris"],
        programs=["predict"],
        optimizers=["baseline", "gepa"],
        seeds=[0],
        budget=20,
        sizes={"iris": (6, 6, 10)},
        split_seed=0,
        num_threads=2,
        out=str(tmp_path / "out"),
    ).validate()
    t0 = time.perf_counter()
    outcome = run_matrix(spec, lms=lms, progress=False)
    elapsed = time.perf_counter() - t0
    assert [r.status for r in outcome.ran] == ["ok", "ok"], [r.error for r in outcome.ran]
    cells = {c.config.optimizer: c for c in Store(spec.out).cells()}
    base, gepa_cell = cells["baseline"].finished(), cells["gepa"]
    gepa = gepa_cell.finished()
    assert base.baseline_test.ids == gepa.baseline_test.ids
    assert len(gepa.optimized_test.scores) == 10
    # A proposal starts only when the budget left pays for it: 6 for the seed, then 12 per proposal.
    assert 0 < gepa.spending.metric_calls <= 20
    assert gepa.spending.lm_calls > 0 and gepa.spending.tokens > 0
    # Every (candidate, example) run is in the run's records, once; the metric was called for each
    # run whose program returned a prediction (a reply that did not parse is scored without it).
    records = json.loads((Store(spec.out).run_dir(gepa_cell.key) / "state.json").read_text())["records"]
    assert gepa.spending.metric_calls == len(records)
    assert gepa.spending.metric_calls_counted == sum(r["error"] is None for r in records.values())
    # GEPA's seed score is the baseline's validation score, measured apart with the same LM.
    assert gepa.learning_curve[0] == (6, base.baseline_val)
    # The optimized program, rebuilt from the stored components, reproduces its validation score
    # from the same (cached) requests.
    task = get_task("iris")
    splits = task.splits(seed=0, sizes=(6, 6, 10))
    assert [e.id for e in splits.val] == list(gepa.splits["val"])
    best = task.program("predict").with_components(deserialize_components(dict(gepa.components)))
    again = evaluate(best, splits.val, task.metric, lm=lms.task, display_progress=False)
    assert again.score == gepa.optimized_val and again.usage.uncached_calls == 0
    check_lift(gepa.lift, gepa.baseline_test.scores, gepa.optimized_test.scores)
    files = build_report(spec.out)
    assert (tmp_path / "out" / "charts" / "summary.png").stat().st_size > 5000
    assert any(p.name == "curve_iris.png" for p in files.charts)
    assert "| predict | gepa |" in files.markdown.read_text()
    print(f"tiny iris matrix on the local model: {elapsed:.0f}s")


def check_lift(lift, baseline, optimized):
    """The lift is the mean of the paired test differences; its 95% bootstrap interval is as wide as
    one for a mean of that many differences should be."""
    diff = np.asarray(optimized) - np.asarray(baseline)
    assert lift.n == diff.size == 10
    assert lift.mean == pytest.approx(diff.mean())
    assert (lift.wins, lift.losses) == (int((diff > 0).sum()), int((diff < 0).sum()))
    lo, hi = lift.ci
    if np.all(diff == diff[0]):
        assert lo == hi == diff[0]
        return
    assert diff.min() <= lo < lift.mean < hi <= diff.max()
    # the normal-approximation width of a 95% interval of the mean; for 10 differences in {-1, 0, 1}
    # the percentile bootstrap's width is 0.8 to 1.1 times it
    normal = 2 * 1.96 * diff.std() / np.sqrt(diff.size)
    assert 0.7 * normal <= hi - lo <= 1.3 * normal, (lo, hi, normal)
