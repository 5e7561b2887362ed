"""``reuse_from``: a cell another experiment's folder holds as the same experiment is copied, not run;
a cell's identity leaves out what its optimizer does not read (the budget, the helper LMs)."""

from __future__ import annotations

import json

import pytest

from langprobe.task import mirror_dir
from promptopt.bench import SpecError, build_report, run_matrix
from promptopt.bench import runner as runner_mod
from promptopt.bench.code_scope import SCOPES, SourceScopes
from promptopt.bench.matrix import plan
from promptopt.bench.store import Store

needs_mirror = pytest.mark.skipif(mirror_dir() is None, reason="no local data mirror (shared/data)")

OPTIMIZERS = ["baseline", "bootstrap_fewshot", "gepa"]


def test_what_an_optimizer_does_not_read_is_not_in_its_cells_config(iris, tmp_path):
    small = iris.spec(tmp_path / "a", optimizers=OPTIMIZERS, budget=30, reflection_lm="local")
    large = iris.spec(tmp_path / "b", optimizers=OPTIMIZERS, budget=40, reflection_lm="local/large")
    for cell_a, cell_b in zip(small.cells(), large.cells(), strict=True):
        a, b = small.cell_config(cell_a), large.cell_config(cell_b)
        if cell_a.optimizer == "gepa":
            assert (a.budget, a.reflection_lm, b.budget, b.reflection_lm) == (30, "local", 40, "local/large")
        else:
            assert a == b and (a.budget, a.reflection_lm, a.proposer_lm) == (0, None, None)
    bfs = next(c for c in small.cells() if c.optimizer == "bootstrap_fewshot")
    assert set(iris.lms().identities(bfs, small)) == {"task"}


def test_reuse_from_is_checked(iris, tmp_path):
    with pytest.raises(SpecError, match="reuse_from must be a list of folder paths"):
        iris.spec(tmp_path / "a", reuse_from=[""])
    with pytest.raises(SpecError, match="reuse_from names the spec's own out folder"):
        iris.spec(tmp_path / "a", reuse_from=[str(tmp_path / "a")])
    # An optimizer that reflects must be told which LM: a fallback of its own would be missing
    # from its cells' identity.
    with pytest.raises(SpecError, match="reflection_lm must name an LM"):
        iris.spec(tmp_path / "a", reflection_lm=None)
    iris.spec(tmp_path / "a", optimizers=["baseline", "bootstrap_fewshot"], reflection_lm=None)


@needs_mirror
def test_cells_that_are_the_same_experiment_are_copied_and_the_others_run(iris, tmp_path, monkeypatch):
    first = iris.spec(tmp_path / "a", optimizers=OPTIMIZERS, seeds=[0], budget=30)
    assert all(r.ok for r in run_matrix(first, lms=iris.lms(), progress=False).ran)

    # A larger budget and another reflection LM: only GEPA's cell is another experiment.
    second = iris.spec(
        tmp_path / "b",
        optimizers=OPTIMIZERS,
        seeds=[0],
        budget=40,
        reflection_lm="local/large",
        reuse_from=[str(tmp_path / "a")],
    )
    todo = plan(second, Store(second.out), iris.lms())
    copied = {"iris__predict__baseline__local__s0", "iris__predict__bootstrap_fewshot__local__s0"}
    assert todo.copies == {key: str(tmp_path / "a") for key in copied}
    assert f"2 copied as the same experiment (2 from {tmp_path / 'a'})" in todo.summary()
    assert "1 new" in todo.summary()

    outcome = run_matrix(second, lms=iris.lms(), progress=False)
    assert [r.key for r in outcome.ran] == ["iris__predict__gepa__local__s0"]
    assert sorted(outcome.skipped) == sorted(copied)
    for key in copied:
        original = json.loads(Store(first.out).cell_path(key).read_text())
        copy = json.loads(Store(second.out).cell_path(key).read_text())
        assert copy.pop("copied_from") == "../a"  # relative to the folder holding the copy
        assert copy == original
    # GEPA's cell ran against the seed's scores copied with them, not computed again.
    base = "baselines/iris__predict__local__s0.json"
    assert (tmp_path / "b" / base).read_text() == (tmp_path / "a" / base).read_text()
    gepa = Store(second.out).load_cell("iris__predict__gepa__local__s0")
    assert gepa.finished().spending.metric_calls <= 40

    # Run again: the copies are the folder's own cells now, reused as they are.
    again = plan(second, Store(second.out), iris.lms())
    assert again.todo == [] and again.copies == {} and len(again.reused) == 3

    # Other code: nothing elsewhere is the same experiment any more, so nothing is copied.
    other_code = SourceScopes(dict.fromkeys(SCOPES, "0" * 64))
    monkeypatch.setattr(runner_mod, "code_identity", lambda: other_code)
    third = iris.spec(tmp_path / "c", optimizers=OPTIMIZERS, seeds=[0], reuse_from=[str(tmp_path / "a")])
    assert plan(third, Store(third.out), iris.lms()).copies == {}

    # The second folder's report says which of its cells were copied, and from where.
    md = build_report(second.out).markdown.read_text()
    line = next(x for x in md.splitlines() if "cells were copied from" in x)
    assert line.startswith("- 2 cells were copied from `../a` (relative to this folder)")
    assert all(f"`{key}`" in line for key in copied) and "gepa__" not in line
