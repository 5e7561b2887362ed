"""The LangProBe harness on the real local model: a tiny iris matrix (baseline and GEPA)."""

from __future__ import annotations

import time

import pytest

from promptopt.bench import ExperimentSpec, LMs, build_report, run_matrix
from promptopt.bench.store import Store


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
    assert [r["status"] for r in outcome.ran] == ["ok", "ok"], [r.get("error") for r in outcome.ran]
    cells = {c["config"]["optimizer"]: c for c in Store(spec.out).cells()}
    base, gepa = cells["baseline"], cells["gepa"]
    assert base["baseline"]["test"]["ids"] == gepa["baseline"]["test"]["ids"]
    assert len(gepa["optimized"]["test"]["scores"]) == 10
    # The budget is checked between iterations: the last may finish past it (minibatch, child, validation).
    assert 0 < gepa["budget"]["metric_calls"] <= 20 + 3 + 3 + 6
    assert gepa["budget"]["lm_calls"] > 0 and gepa["budget"]["tokens"] > 0
    assert gepa["learning_curve"] and gepa["learning_curve"][0][0] == 6
    assert gepa["validation"]["optimized"] >= gepa["validation"]["baseline"]
    lo, hi = gepa["lift"]["ci"]
    assert lo <= gepa["lift"]["mean"] <= hi
    assert isinstance(gepa["components"]["self.instruction"], str)
    files = build_report(spec.out)
    assert (tmp_path / "out" / "charts" / "summary.png").stat().st_size > 5000
    assert any(p.name == "curve_iris.png" for p in files.charts)
    assert "| predict | gepa |" in files.markdown.read_text()
    print(f"tiny iris matrix on the local model: {elapsed:.0f}s")
