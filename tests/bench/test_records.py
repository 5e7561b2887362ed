"""The typed records of the bench store read and write the stored JSON exactly, migrate older cells
and name what a damaged one lacks."""

import json

import pytest

from langprobe.task import mirror_dir
from promptopt.bench import run_matrix
from promptopt.bench.records import BaselineRecord, CellConfig, CellRecord, RecordError
from promptopt.bench.stats import PairedLift, paired_bootstrap
from promptopt.bench.store import Store, UnreadableRecordError

needs_mirror = pytest.mark.skipif(mirror_dir() is None, reason="no local data mirror (shared/data)")


@pytest.fixture
def stored(tmp_path, iris):
    """The raw JSON of a finished GEPA cell and of its baseline, as the runner wrote them."""
    spec = iris.spec(tmp_path / "out", seeds=[0])
    run_matrix(spec, lms=iris.lms(), progress=False)
    store = Store(spec.out)
    cell = json.loads(store.cell_path("iris__predict__gepa__local__s0").read_text())
    baseline = json.loads(store.baseline_path("iris__predict__local__s0").read_text())
    return cell, baseline


@needs_mirror
def test_a_stored_cell_and_baseline_round_trip_exactly(stored):
    cell, baseline = stored
    record = CellRecord.from_dict(cell)
    assert json.loads(json.dumps(record.to_dict())) == cell
    assert json.loads(json.dumps(BaselineRecord.from_dict(baseline).to_dict())) == baseline
    numbers = record.finished()
    assert numbers.lift.mean == cell["lift"]["mean"] and list(numbers.lift.ci) == cell["lift"]["ci"]
    assert numbers.spending.metric_calls == cell["budget"]["metric_calls"]
    assert list(numbers.optimized_test.scores) == cell["optimized"]["test"]["scores"]
    assert record.config == CellConfig.from_dict(cell["config"]) and record.config.optimizer == "gepa"
    assert record.provenance is not None and record.provenance.to_dict() == cell["provenance"]


@needs_mirror
def test_a_cell_from_older_code_gets_its_lift_counts_from_its_scores(stored):
    cell, _ = stored
    for name in ("n_distinct", "wins", "losses", "ties", "sign_p"):
        del cell["lift"][name]
    del cell["config"]["lm_cache"]
    numbers = CellRecord.from_dict(cell).finished()
    diffs = [o - b for b, o in zip(numbers.baseline_test.scores, numbers.optimized_test.scores, strict=True)]
    assert numbers.lift.wins == sum(d > 0 for d in diffs) and numbers.lift.losses == sum(d < 0 for d in diffs)
    assert numbers.lift.n_distinct == len(diffs)
    assert CellRecord.from_dict(cell).config.lm_cache == "shared"  # what cells before the option did


@needs_mirror
@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda c: c["config"].pop("seed"), "missing config.seed"),
        (lambda c: c["budget"].pop("metric_calls"), "missing budget.metric_calls"),
        (lambda c: c.pop("lift"), "missing lift"),
        (
            lambda c: c["optimized"]["test"]["scores"].pop(),
            r"optimized.test has (\d+) example ids but (?!\1)\d+ scores",
        ),
        (lambda c: c.update(config=[1]), "its config is a JSON list, not an object"),
    ],
)
def test_a_damaged_cell_names_what_it_lacks(stored, tmp_path, damage, reason):
    cell, _ = stored
    damage(cell)
    with pytest.raises(RecordError, match=reason):
        CellRecord.from_dict(cell)
    path = tmp_path / "damaged" / "cells" / "x.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(cell))
    with pytest.raises(UnreadableRecordError, match=f"x.json is not a readable record \\({reason}"):
        Store(tmp_path / "damaged").load_cell("x")


def test_a_failed_cell_needs_no_numbers():
    record = CellRecord.from_dict(
        {
            "key": "k",
            "status": "failed",
            "config": {"task": "iris", "program": "predict", "optimizer": "gepa", "lm": "local", "seed": 1},
            "error": {"type": "RuntimeError", "message": "LM down"},
        }
    )
    assert not record.ok and record.numbers is None and record.error.describe() == "RuntimeError: LM down"
    assert record.config.split_seed == 1  # unrecorded: the cell's seed, as the spec's default
    with pytest.raises(ValueError, match="cell k has no numbers: its status is 'failed'"):
        record.finished()


def test_paired_lift_round_trips_and_pooled_lifts_say_their_seeds():
    lift = paired_bootstrap([0, 1, 0, 1], [1, 1, 1, 0], seed=3)
    assert PairedLift.from_dict(json.loads(json.dumps(lift.to_dict()))) == lift
    assert "seeds" not in lift.to_dict() and lift.ci[0] <= lift.ci[1]
