"""The holdout judge of experiments/gepa_dev/holdout.py: its split never meets the comparison's."""

from __future__ import annotations

import pytest

from langprobe.registry import get_task
from langprobe.task import mirror_dir

pytestmark = pytest.mark.skipif(mirror_dir() is None, reason="no local data mirror (shared/data)")


@pytest.fixture(scope="module")
def holdout(dev_script):
    return dev_script("holdout.py")


@pytest.mark.parametrize("name, expected", [("iris", 20), ("heartdisease", 100), ("scone", 100)])
def test_holdout_avoids_every_comparison_split_and_is_fixed(holdout, name, expected):
    task = get_task(name)
    examples = holdout.holdout_examples(task, (15, 15, 100), 0, 100)
    splits = task.splits(seed=0, sizes=(15, 15, 100))
    used = {e.id for part in (splits.train, splits.val, splits.test) for e in part}
    ids = [e.id for e in examples]
    assert len(ids) == len(set(ids)) == expected
    assert not used & set(ids)
    assert [e.id for e in holdout.holdout_examples(task, (15, 15, 100), 0, 100)] == ids
    # a smaller holdout is the start of the larger one, so sizes can be compared
    assert [e.id for e in holdout.holdout_examples(task, (15, 15, 100), 0, 10)] == ids[:10]
    assert holdout.examples_sha256(examples) != holdout.examples_sha256(examples[:-1])


def test_paired_difference_counts_cells_both_groups_have(holdout):
    a = {("iris", "predict", "local", 0): 0.6, ("iris", "predict", "local", 1): 0.5, ("x", "p", "l", 2): 1.0}
    b = {("iris", "predict", "local", 0): 0.5, ("iris", "predict", "local", 1): 0.5}
    result = holdout.paired(a, b)
    assert result["cells"] == 2 and result["mean_difference"] == pytest.approx(0.05)
    assert (result["higher"], result["lower"]) == (1, 0)
    lo, hi = result["difference_ci95"]
    assert lo <= result["mean_difference"] <= hi
    assert holdout.paired(a, {("other", "p", "l", 0): 0.1}) is None
