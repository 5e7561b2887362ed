"""Bootstrap intervals, sign tests and the lift pooled over seeds (promptopt.bench.stats)."""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from promptopt.bench.aggregate import aggregate, cell_row
from promptopt.bench.records import CellRecord
from promptopt.bench.stats import pair_by_id, paired_bootstrap, pooled_paired, sign_counts, sign_test
from promptopt.evaluate import bootstrap_ci


def scipy_rng(seed: int) -> dict:
    name = "rng" if "rng" in inspect.signature(sps.bootstrap).parameters else "random_state"
    return {name: np.random.default_rng(seed)}


def width(ci) -> float:
    return ci[1] - ci[0]


def correlated_seeds(n: int = 40, seeds: int = 3):
    """Baseline and optimized 0/1 scores of ``seeds`` runs on the same ``n`` examples.

    Each run of the optimizer found the same program, so every example's difference is the same under
    every seed: the seeds repeat the evidence of one run instead of adding new examples.
    """
    rng = np.random.default_rng(7)
    base = (rng.random(n) < 0.5).astype(float)
    opt = base.copy()
    opt[np.flatnonzero(base == 0)[:8]] = 1.0  # 8 wins
    opt[np.flatnonzero(base == 1)[:3]] = 0.0  # 3 losses
    ids = [f"ex-{i}" for i in range(n)]
    return [ids] * seeds, [list(base)] * seeds, [list(opt)] * seeds


# --- the interval is scipy's -------------------------------------------------------------
def test_bootstrap_ci_matches_scipy_percentile_bootstrap():
    scores = [0.0, 1.0, 1.0, 0.5, 0.0, 1.0, 0.25, 1.0, 0.0, 0.75, 1.0, 0.0]
    ref = sps.bootstrap(
        (np.asarray(scores),),
        np.mean,
        n_resamples=9999,
        confidence_level=0.9,
        method="percentile",
        **scipy_rng(4),
    ).confidence_interval
    assert bootstrap_ci(scores, confidence=0.9, seed=4) == (float(ref.low), float(ref.high))
    assert bootstrap_ci(scores, seed=4) == bootstrap_ci(scores, seed=4)  # deterministic


def test_paired_bootstrap_matches_scipy_paired_bootstrap():
    rng = np.random.default_rng(5)
    base = (rng.random(30) < 0.4).astype(float)
    opt = (rng.random(30) < 0.6).astype(float)
    ref = sps.bootstrap(
        (base, opt),
        lambda b, o, axis=-1: np.mean(o - b, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=9999,
        method="percentile",
        **scipy_rng(0),
    ).confidence_interval
    lift = paired_bootstrap(base, opt, seed=0)
    assert lift.ci == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert lift.mean == pytest.approx(float(np.mean(opt - base)))
    assert lift.n == lift.n_distinct == 30


# --- wins, losses, ties and the sign test -------------------------------------------------
def test_sign_test_on_nine_wins_one_loss_is_binomtest():
    base = [0.0] * 9 + [1.0] + [1.0] * 5
    opt = [1.0] * 9 + [0.0] + [1.0] * 5
    lift = paired_bootstrap(base, opt)
    assert (lift.wins, lift.losses, lift.ties) == (9, 1, 5)
    assert lift.sign_p == sps.binomtest(9, 10, 0.5).pvalue == pytest.approx(0.021484375)
    assert sign_test(9, 1) == lift.sign_p
    assert sign_test(0, 0) == 1.0
    assert sign_test(3, 3) == 1.0
    assert sign_counts([0.5, -0.25, 0.0, 1e-15, -1e-15]) == (1, 1, 3)
    with pytest.raises(ValueError):
        sign_test(-1, 2)


# --- pooled over seeds: one cluster per distinct example ---------------------------------
def test_pooled_lift_resamples_distinct_examples_not_seed_copies():
    ids, base, opt = correlated_seeds()
    pooled = pooled_paired(ids, base, opt)
    assert pooled.n == 120 and pooled.n_distinct == 40 and pooled.seeds == 3
    assert pooled.mean == pytest.approx(5 / 40)
    assert (pooled.wins, pooled.losses, pooled.ties) == (8, 3, 29)
    assert pooled.sign_p == pytest.approx(sps.binomtest(8, 11).pvalue)
    # The seeds repeat one run, so the pooled statistics are that run's.
    one = paired_bootstrap(base[0], opt[0])
    assert pooled.ci == one.ci and pooled.mean == pytest.approx(one.mean)

    # The old pooling concatenated the seeds' pairs, as if 120 examples had been scored ...
    concatenated = paired_bootstrap([s for b in base for s in b], [s for o in opt for s in o])
    assert concatenated.n == 120 and concatenated.mean == pytest.approx(pooled.mean)
    # ... which is the same as giving each seed's examples their own ids.
    own = pooled_paired([[f"s{k}/{i}" for i in seed_ids] for k, seed_ids in enumerate(ids)], base, opt)
    assert own.n_distinct == 120
    # Both are narrower: about 1/sqrt(3) of the interval over the 40 examples actually scored.
    assert width(pooled.ci) >= width(own.ci) and width(pooled.ci) >= width(concatenated.ci)
    assert width(concatenated.ci) < 0.7 * width(pooled.ci)
    assert pooled.ci[0] < 0 < concatenated.ci[0]  # and only the narrow one excludes 0


def test_pooled_lift_averages_an_example_over_the_seeds_that_scored_it():
    # Seed 0 scored a, b, c; seed 1 scored b, c, d (another split): 4 distinct examples.
    pooled = pooled_paired(
        [["a", "b", "c"], ["b", "c", "d"]],
        [[0, 0, 1], [0, 1, 1]],
        [[1, 1, 0], [0, 1, 1]],
    )
    # Differences: a +1, b (+1 + 0) / 2, c (-1 + 0) / 2, d 0.
    assert pooled.n == 6 and pooled.n_distinct == 4 and pooled.seeds == 2
    assert pooled.mean == pytest.approx((1 + 0.5 - 0.5 + 0) / 4)
    assert (pooled.wins, pooled.losses, pooled.ties) == (2, 1, 1)
    assert pooled.ci == bootstrap_ci([1.0, 0.5, -0.5, 0.0])
    with pytest.raises(ValueError, match="Run 1"):
        pooled_paired([["a"], ["b", "c"]], [[0], [0]], [[1], [1]])
    with pytest.raises(ValueError, match="One list of ids and scores per run"):
        pooled_paired([["a"]], [[0], [1]], [[1]])


# --- degenerate inputs --------------------------------------------------------------------
def test_degenerate_inputs_give_clear_results_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ties = paired_bootstrap([1, 0, 1], [1, 0, 1])
        assert ties.ci == (0.0, 0.0) and ties.mean == 0.0
        assert (ties.wins, ties.losses, ties.ties, ties.sign_p) == (0, 0, 3, 1.0)
        constant = paired_bootstrap([0, 0, 0], [1, 1, 1])
        assert constant.ci == (1.0, 1.0) and constant.sign_p == pytest.approx(0.25)
        single = paired_bootstrap([0.0], [1.0])
        assert single.ci == (1.0, 1.0) and single.n == 1 and single.wins == 1
        assert single.sign_p == 1.0
        empty = paired_bootstrap([], [])
        assert math.isnan(empty.mean) and all(math.isnan(x) for x in empty.ci)
        assert (empty.n, empty.n_distinct, empty.wins, empty.sign_p) == (0, 0, 0, 1.0)
        assert bootstrap_ci([0.5]) == (0.5, 0.5) and bootstrap_ci([1, 1, 1]) == (1.0, 1.0)
        assert all(math.isnan(x) for x in bootstrap_ci([]))
        ids, base, _ = correlated_seeds()
        all_ties = pooled_paired(ids, base, base)
        assert all_ties.ci == (0.0, 0.0) and all_ties.ties == 40 and all_ties.sign_p == 1.0
        nothing = pooled_paired([], [], [])
        assert nothing.n == 0 and math.isnan(nothing.mean) and nothing.sign_p == 1.0
        one = pooled_paired([["a"], ["a"]], [[0], [0]], [[1], [0]])
        assert one.n_distinct == 1 and one.ci == (0.5, 0.5)
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap([1, 0], [1])


# --- pairing stored cells by example id ----------------------------------------------------
def cell(seed, ids, base, opt, *, opt_ids=None, optimizer="gepa"):
    """A finished cell in the stored JSON layout (read with ``CellRecord.from_dict``)."""
    key = f"iris__predict__{optimizer}__local__s{seed}"
    placeholder = {"n": len(ids), "mean": 0, "ci": [0, 0], "n_distinct": len(ids), "confidence": 0.95}
    placeholder.update(wins=0, losses=0, ties=len(ids), sign_p=1.0)
    return {
        "key": key,
        "status": "ok",
        "seconds": 1.0,
        "config": {"task": "iris", "program": "predict", "optimizer": optimizer, "lm": "local", "seed": seed},
        "splits": {"test": list(ids)},
        "baseline": {"test": {"score": float(np.mean(base)), "ids": ids, "scores": base}},
        "optimized": {"test": {"score": float(np.mean(opt)), "ids": opt_ids or ids, "scores": opt}},
        "lift": paired_bootstrap(base, opt, seed=seed).to_dict() if opt_ids is None else placeholder,
        "validation": {"baseline": 0.5, "optimized": 0.6},
        "budget": {"metric_calls": 10, "lm_calls": 12, "tokens": 100, "seconds": 2.0},
        "optimizer": {"name": optimizer, "stop_reason": "budget"},
    }


def test_pair_by_id_follows_ids_not_positions():
    ids, base, opt = pair_by_id(["a", "b", "c"], [0, 1, 0], ["c", "a", "b"], [1, 1, 0])
    assert ids == ["a", "b", "c"] and base == [0.0, 1.0, 0.0] and opt == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="cell k: baseline and optimized were scored on different"):
        pair_by_id(["a", "b"], [0, 1], ["a", "z"], [1, 1], label="cell k")
    with pytest.raises(ValueError, match="repeat"):
        pair_by_id(["a", "a"], [0, 1], ["a", "a"], [1, 1])
    with pytest.raises(ValueError, match="2 baseline test ids but 1"):
        pair_by_id(["a", "b"], [0], ["a", "b"], [1, 1])


def test_aggregate_pools_seeds_by_example_and_names_a_mismatched_cell():
    ids, base, opt = correlated_seeds()
    stored = [cell(s, ids[s], base[s], opt[s]) for s in range(3)]
    # The optimized side of seed 2 is stored in another order: pairing is by id.
    order = list(range(40))[::-1]
    stored[2]["optimized"]["test"]["ids"] = [ids[2][i] for i in order]
    stored[2]["optimized"]["test"]["scores"] = [opt[2][i] for i in order]
    cells = [CellRecord.from_dict(c) for c in stored]
    (row,) = aggregate(cells)
    pooled = pooled_paired(ids, base, opt)
    assert row["seeds"] == 3 and row["n_test"] == 120 and row["n_distinct"] == 40
    assert row["lift"] == pytest.approx(pooled.mean) and row["lift_ci"] == list(pooled.ci)
    assert row["sign_p"] == pooled.sign_p and (row["wins"], row["losses"], row["ties"]) == (8, 3, 29)
    csv = cell_row(cells[2])
    assert (csv["n_distinct"], csv["wins"], csv["losses"], csv["ties"]) == (40, 8, 3, 29)
    assert csv["sign_p"] == pytest.approx(sps.binomtest(8, 11).pvalue)

    bad = CellRecord.from_dict(cell(3, ["a", "b"], [0.0, 1.0], [1.0, 1.0], opt_ids=["a", "c"]))
    with pytest.raises(ValueError, match="iris__predict__gepa__local__s3"):
        aggregate([*cells, bad])
