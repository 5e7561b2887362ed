"""The LangProBe harness on real iris data with scripted LMs: spec validation, cell keys, the store
(atomic cells, resume after an interrupt, shared baselines, failed cells), the paired bootstrap CI,
the executors, the reports and the command line."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest

from langprobe import TASKS
from langprobe.task import mirror_dir
from promptopt.bench import ExperimentSpec, SpecError, build_report, cell_key, run_matrix
from promptopt.bench import runner as runner_mod
from promptopt.bench.cli import main as bench_main
from promptopt.bench.executors import ExecutorError, LocalExecutor, make_executor
from promptopt.bench.optimizers import OPTIMIZERS, OptimizerEntry
from promptopt.bench.records import CellRecord
from promptopt.bench.spec import preset
from promptopt.bench.stats import paired_bootstrap
from promptopt.bench.store import Store
from promptopt.evaluate import bootstrap_ci

needs_mirror = pytest.mark.skipif(mirror_dir() is None, reason="no local data mirror (shared/data)")


def stable(record):
    """What a cell's result is, without timings and host details."""
    numbers = record.finished()
    base, opt = numbers.baseline_test, numbers.optimized_test
    return {
        "config": record.config,
        "splits": numbers.splits,
        "lift": numbers.lift,
        "validation": {"baseline": numbers.baseline_val, "optimized": numbers.optimized_val},
        "learning_curve": numbers.learning_curve,
        "components": numbers.components,
        "optimized": {"val_score": numbers.optimized_val, "test": (opt.score, opt.ids, opt.scores)},
        "baseline": {"val_score": numbers.baseline_val, "test": (base.score, base.ids, base.scores)},
        "metric_calls": numbers.spending.metric_calls,
    }


# --- spec ---------------------------------------------------------------------------------
def test_spec_rejects_unknown_names_with_the_allowed_values(tmp_path):
    with pytest.raises(SpecError, match=r"Unknown task 'irs'; allowed: iris, .*scone"):
        ExperimentSpec(tasks=["irs"]).validate()
    with pytest.raises(SpecError, match=r"Unknown optimizer 'gepa2'; allowed: baseline, .*gepa_lib"):
        ExperimentSpec(tasks=["iris"], optimizers=["gepa2"]).validate()
    with pytest.raises(SpecError, match=r"Unknown program 'tree'.*cot, predict"):
        ExperimentSpec(tasks=["iris"], programs=["tree"]).validate()
    with pytest.raises(SpecError, match="budget must be a positive integer"):
        ExperimentSpec(tasks=["iris"], budget=0).validate()
    with pytest.raises(SpecError, match=r"sizes\['iris'\] must be three positive integers"):
        ExperimentSpec(tasks=["iris"], sizes={"iris": (5, 0, 3)}).validate()
    with pytest.raises(SpecError, match="duplicates"):
        ExperimentSpec(tasks=["iris"], seeds=[0, 0]).validate()

    bad = tmp_path / "bad.toml"
    bad.write_text('tasks = ["iris"]\nbudgett = 10\n')
    with pytest.raises(SpecError, match=r"Unknown key 'budgett' in .*bad.toml; allowed keys: .*budget"):
        ExperimentSpec.from_toml(bad)
    bad.write_text('tasks = ["iris"]\nbudget = "lots"\n')
    with pytest.raises(SpecError, match=r"budget in .* must be an integer, not 'lots'"):
        ExperimentSpec.from_toml(bad)
    bad.write_text('tasks = ["iris"\n')
    with pytest.raises(SpecError, match="not valid TOML"):
        ExperimentSpec.from_toml(bad)
    with pytest.raises(SpecError, match="Unknown preset 'fast'; presets: quick, full"):
        preset("fast")


def test_spec_from_toml_flags_and_presets(tmp_path, capsys):
    path = tmp_path / "exp.toml"
    path.write_text(
        'tasks = ["iris", "scone"]\nprograms = ["all"]\noptimizers = ["baseline", "gepa"]\nlm = "local"\n'
        "seeds = [0, 1]\nbudget = 40\n[sizes]\niris = [5, 5, 10]\ndefault = [8, 8, 16]\n"
    )
    s = ExperimentSpec.from_toml(path)
    assert s.name == "exp" and s.lms == ["local"] and s.budget == 40
    assert s.sizes_for("iris") == (5, 5, 10) and s.sizes_for("scone") == (8, 8, 16)
    assert s.programs_for("iris") == ["predict", "cot"]
    assert len(s.cells()) == 2 * 2 * 2 * 2  # tasks x programs x seeds x optimizers
    assert ExperimentSpec(tasks=["iris"]).programs_for("iris") == ["predict"]  # default: the first

    quick = ExperimentSpec.from_dict(preset("quick"))
    assert {"baseline", "gepa"} <= set(quick.optimizers) and quick.budget <= 60
    full = ExperimentSpec.from_dict(preset("full"))
    assert set(full.optimizers) == set(OPTIMIZERS) and len(full.tasks) == len(TASKS)

    # Flags override the file; errors exit 2 naming the bad value.
    out = tmp_path / "out"
    rc = bench_main(["langprobe", "--config", str(path), "--budget", "7", "--out", str(out), "--dry-run"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert "iris__cot__gepa__local__s1: to run" in lines and lines[-1].startswith(
        "0 reused (same config, data, LMs and code), 16 new"
    )
    assert bench_main(["langprobe", "--tasks", "iris", "--optimizers", "nope", "--dry-run"]) == 2
    assert "Unknown optimizer 'nope'" in capsys.readouterr().err
    assert bench_main(["langprobe", "--tasks", "iris", "--sizes", "1,x,3", "--dry-run"]) == 2


def test_cell_keys_are_stable_and_file_safe():
    assert cell_key("iris", "predict", "gepa", "local", 0) == "iris__predict__gepa__local__s0"
    assert (
        cell_key("scone", "cot", "dspy_mipro", "openai/gpt-4o-mini", 3)
        == "scone__cot__dspy_mipro__openai-gpt-4o-mini__s3"
    )
    assert cell_key("iris", "predict", None, "local/large", 1) == "iris__predict__local-large__s1"
    s = ExperimentSpec(tasks=["iris"], optimizers=["baseline", "gepa"], lms=["local/large"])
    cells = s.cells()
    assert [c.key for c in cells] == [
        "iris__predict__baseline__local-large__s0",
        "iris__predict__gepa__local-large__s0",
    ]
    assert {c.baseline_key for c in cells} == {"iris__predict__local-large__s0"}


# --- paired bootstrap ---------------------------------------------------------------------
def test_paired_bootstrap_ci_is_tighter_than_unpaired_and_deterministic():
    rng = np.random.default_rng(1)
    base = (rng.random(60) < 0.5).astype(float)
    opt = base.copy()
    opt[np.flatnonzero(base == 0)[:6]] = 1.0  # fixes 6 examples, breaks none
    lift = paired_bootstrap(base, opt)
    assert lift.mean == pytest.approx(0.1) and lift.n == 60
    assert lift.wins == 6 and lift.losses == 0
    lo, hi = lift.ci
    assert 0.0 <= lo < 0.1 < hi <= 0.2  # every difference is >= 0, so the interval is too
    # Resampling the two score lists independently would put 0 well inside the interval.
    ulo, uhi = bootstrap_ci(opt, seed=2)
    blo, bhi = bootstrap_ci(base, seed=3)
    assert ulo - bhi < 0 < uhi - blo
    assert paired_bootstrap(base, opt) == lift  # seeded
    assert paired_bootstrap([1, 0], [1, 0]).ci == (0.0, 0.0)
    mixed = paired_bootstrap([0, 1, 0, 1], [1, 0, 1, 1])
    assert mixed.mean == pytest.approx(0.25) and mixed.ci[0] < 0 < mixed.ci[1]
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap([1, 0], [1])


# --- running a matrix ----------------------------------------------------------------------
@needs_mirror
def test_matrix_cells_report_and_resume_after_an_interrupt(tmp_path, iris):
    # Uninterrupted reference run.
    ref = iris.spec(tmp_path / "ref")
    outcome = run_matrix(ref, lms=iris.lms(), progress=False)
    assert [r.status for r in outcome.ran] == ["ok"] * 4 and not outcome.skipped
    store = Store(ref.out)
    cells = {c.key: c for c in store.cells()}
    assert sorted(cells) == sorted(c.key for c in ref.cells())
    gepa_cell = cells["iris__predict__gepa__local__s0"]
    gepa, base = gepa_cell.finished(), cells["iris__predict__baseline__local__s0"].finished()
    # The baseline test evaluation is shared: both cells carry the same per-example scores.
    assert gepa.baseline_test == base.baseline_test
    assert gepa.splits["test"] == list(gepa.baseline_test.ids) and len(gepa.splits["test"]) == 12
    assert len(gepa.splits["train"]) == 6 and len(gepa.splits["val"]) == 6
    assert base.optimized_test.scores == base.baseline_test.scores
    assert base.lift.mean == 0.0 and base.spending.metric_calls == 0
    # GEPA learns the rule: the seed program says virginica, the optimized one reads the petals.
    assert iris.RULE in gepa.components["self.instruction"]
    assert gepa.optimized_test.score == 1.0 > gepa.baseline_test.score
    expected = np.mean(gepa.optimized_test.scores) - np.mean(gepa.baseline_test.scores)
    assert gepa.lift.mean == pytest.approx(expected) and gepa.lift.ci[0] <= expected
    assert gepa.optimized_val == 1.0 > gepa.baseline_val
    assert 0 < gepa.spending.metric_calls <= 30  # GEPA plans inside its budget
    assert gepa.spending.metric_calls == gepa.spending.metric_calls_counted
    phases = gepa.spending.metric_calls_by_phase
    assert sum(phases.values()) == gepa.spending.metric_calls and phases["validation"] >= 6
    assert phases["bootstrap"] > 0 and base.spending.metric_calls_by_phase == {}
    assert gepa.spending.lm_calls > gepa.spending.metric_calls and gepa.spending.tokens > 0
    assert gepa.learning_curve[0] == (6, gepa.baseline_val)
    assert gepa.learning_curve[-1][1] == 1.0
    assert (store.run_dir(gepa_cell.key) / "state.json").exists()
    assert gepa_cell.error is None and gepa.optimizer.stop_reason

    # The report: tables, CSV and charts rebuilt from the stored cells.
    files = build_report(ref.out)
    md = files.markdown.read_text()
    assert "## iris" in md and "| predict | gepa | `local` | 2 | 24 |" in md
    gepa_cells = sorted(
        (c for c in store.cells() if c.config.optimizer == "gepa"), key=lambda c: c.config.seed
    )
    assert "| " + " / ".join(f"{100 * c.finished().lift.mean:+.1f}" for c in gepa_cells) + " |" in md
    where = md.split("### Where the metric calls went (mean per cell)")[1].split("\n\n")[1]
    assert where.splitlines()[0].startswith("| optimizer |") and "validation" in where.splitlines()[0]
    assert [row.split("|")[1].strip() for row in where.splitlines()[2:]] == ["gepa"]  # baseline spends none
    assert gepa.spending.seconds_by_phase["proposal"] > 0 and base.spending.seconds_by_phase == {}
    when = md.split("### Where the wall time went (mean seconds per cell)")[1].split("\n\n")[2]
    head = when.splitlines()[0]
    assert "proposal" in head and "validation" in head and head.rstrip(" |").endswith("seconds")
    assert [row.split("|")[1].strip() for row in when.splitlines()[2:]] == ["gepa"]
    csv_rows = files.csv.read_text().splitlines()
    assert len(csv_rows) == 1 + 4 and csv_rows[0].startswith("key,task,program,optimizer")
    names = sorted(p.name for p in files.charts)
    assert names == ["curve_iris.png", "summary.png", "task_iris.png"]
    for p in files.charts:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


@needs_mirror
def test_interrupted_matrix_resumes_without_rerunning_finished_cells(tmp_path, iris):
    ref = iris.spec(tmp_path / "ref")
    counter = iris.Interrupting()
    run_matrix(ref, lms=iris.lms(counter), progress=False)
    reference = {c.key: stable(c) for c in Store(ref.out).cells()}

    s = iris.spec(tmp_path / "run")
    lm = iris.Interrupting(at=counter.calls - 3)  # inside the last cell: seed 1's GEPA
    seen = []
    with pytest.raises(KeyboardInterrupt):
        run_matrix(s, lms=iris.lms(lm), progress=False, on_cell=lambda r: seen.append(r.key))
    store = Store(s.out)
    finished = {c.key: c for c in store.cells()}
    assert sorted(finished) == sorted(seen) and len(seen) == 3  # the interrupted cell is not stored
    unfinished = "iris__predict__gepa__local__s1"
    assert unfinished not in finished and (store.run_dir(unfinished) / "state.json").exists()
    stamps = {k: store.cell_path(k).stat().st_mtime_ns for k in finished}

    again = run_matrix(s, lms=iris.lms(iris.Interrupting()), progress=False)
    assert [r.key for r in again.ran] == [unfinished] and sorted(again.skipped) == sorted(finished)
    assert {k: store.cell_path(k).stat().st_mtime_ns for k in finished} == stamps  # not rewritten
    events = (store.run_dir(unfinished) / "events.jsonl").read_text().splitlines()
    starts = [json.loads(e) for e in events if '"run_start"' in e]
    assert [e["resumed"] for e in starts] == [False, True]  # the optimizer continued its run dir
    assert {c.key: stable(c) for c in store.cells()} == reference

    # A third run has nothing left to do; a changed budget is another experiment: its cells run again
    # (the seed-only baselines do not depend on the budget and are reused).
    assert run_matrix(s, lms=iris.lms(), progress=False).ran == []
    changed = run_matrix(iris.spec(tmp_path / "run", budget=31), lms=iris.lms(), progress=False)
    assert sorted(changed.rerun_reasons) == [*sorted(k for k in finished if "__gepa__" in k), unfinished]
    assert set(changed.rerun_reasons.values()) == {"changed config (budget)"}
    assert sorted(changed.skipped) == sorted(k for k in finished if "__baseline__" in k)
    assert all(store.load_cell(k).config.budget == 31 for k in changed.rerun_reasons)


@needs_mirror
def test_failed_cells_are_recorded_and_the_matrix_goes_on(tmp_path, monkeypatch, iris):
    monkeypatch.setitem(
        OPTIMIZERS,
        "missing",
        OptimizerEntry(
            "missing", "a module that is not installed", "peer", lambda ctx: None, ("no_such_pkg",)
        ),
    )
    real = runner_mod.run_optimizer

    def flaky(name, ctx):
        if name == "gepa":
            raise RuntimeError("reflection server exploded")
        return real(name, ctx)

    monkeypatch.setattr(runner_mod, "run_optimizer", flaky)
    s = iris.spec(tmp_path / "out", optimizers=["gepa", "missing", "baseline"], seeds=[0])
    outcome = run_matrix(s, lms=iris.lms(), progress=False)
    status = {r.key.split("__")[2]: r for r in outcome.ran}
    assert [r.key.split("__")[2] for r in outcome.ran] == ["gepa", "missing", "baseline"]
    assert status["gepa"].status == "failed"
    assert status["gepa"].error.type == "RuntimeError"
    assert status["gepa"].error.message == "reflection server exploded"
    assert "flaky" in status["gepa"].error.traceback
    assert status["missing"].error.message.startswith("not available: No module named 'no_such_pkg'")
    assert status["baseline"].status == "ok"
    stored = Store(s.out).load_cell(status["gepa"].key)
    assert stored.status == "failed" and stored.config.optimizer == "gepa"
    md = build_report(s.out).markdown.read_text()
    assert "## Failed cells" in md and "reflection server exploded" in md

    # Failed cells are retried on the next run; finished ones are not.
    monkeypatch.setattr(runner_mod, "run_optimizer", real)
    again = run_matrix(s, lms=iris.lms(), progress=False)
    assert sorted(r.key.split("__")[2] for r in again.ran) == ["gepa", "missing"]
    assert Store(s.out).load_cell(status["gepa"].key).status == "ok"


def test_cells_are_written_atomically(tmp_path, monkeypatch):
    store = Store(tmp_path)
    config = {"task": "iris", "program": "predict", "optimizer": "gepa", "lm": "local", "seed": 0}
    first = CellRecord.from_dict({"key": "k", "status": "failed", "config": config, "seconds": 1})
    store.save_cell(first)
    import promptopt.core.program as program_mod

    real_dump = json.dump

    def dies(data, fh, **kw):
        fh.write('{"status": "o')
        raise KeyboardInterrupt

    monkeypatch.setattr(program_mod.json, "dump", dies)
    with pytest.raises(KeyboardInterrupt):
        store.save_cell(dataclasses.replace(first, seconds=2))
    monkeypatch.setattr(program_mod.json, "dump", real_dump)
    assert store.load_cell("k") == first  # the old file, whole
    assert [p.name for p in (tmp_path / "cells").iterdir()] == ["k.json"]  # no temp file left


# --- executors and command line ------------------------------------------------------------
def test_executors_fail_clearly(monkeypatch, tmp_path, iris):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ExecutorError, match="pip install ray"):
        make_executor("ray")
    with pytest.raises(ExecutorError, match="Unknown executor 'slurm'"):
        make_executor("slurm")
    with pytest.raises(ExecutorError, match="workers=1"):
        list(LocalExecutor(2).run(iris.spec(tmp_path), iris.spec(tmp_path).cells(), lms=iris.lms()))
    assert bench_main(["langprobe", "--tasks", "iris", "--executor", "ray", "--dry-run"]) == 2


@needs_mirror
def test_report_command_and_promptopt_bench_entry(tmp_path, capsys, iris):
    from promptopt.cli import main as promptopt_main

    assert bench_main(["report", "--out", str(tmp_path / "empty")]) == 2
    s = iris.spec(tmp_path / "out", seeds=[0])
    run_matrix(s, lms=iris.lms(), progress=False)
    (tmp_path / "out" / "report.md").unlink(missing_ok=True)
    assert promptopt_main(["bench", "report", "--out", s.out]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "out" / "report.md").exists() and (
        tmp_path / "out" / "charts" / "summary.png"
    ).exists()


def test_the_experiment_files_in_the_repository_are_valid():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[2] / "experiments").glob("*.toml"))
    assert files
    for path in files:
        s = ExperimentSpec.from_toml(path)
        assert s.cells(), path


@needs_mirror
def test_optimizer_options_reach_the_optimizer_and_are_checked(tmp_path, iris):
    s = iris.spec(
        tmp_path / "out", optimizers=["gepa"], seeds=[0], optimizer_options={"gepa": {"minibatch_size": 2}}
    )
    (record,) = run_matrix(s, lms=iris.lms(), progress=False).ran
    assert record.status == "ok" and record.finished().optimizer.config["minibatch_size"] == 2
    assert record.config.optimizer_options == {"gepa": {"minibatch_size": 2}}["gepa"]
    bad = iris.spec(
        tmp_path / "bad", optimizers=["gepa"], seeds=[0], optimizer_options={"gepa": {"minibatch": 2}}
    )
    (record,) = run_matrix(bad, lms=iris.lms(), progress=False).ran
    assert record.status == "failed"
    assert "gepa takes no option 'minibatch' (optimizer_options); did you mean 'minibatch_size'?" in (
        record.error.message
    )
    assert "minibatch_size" in record.error.message
    with pytest.raises(SpecError, match="optimizer_options: Unknown optimizer 'gepa3'"):
        iris.spec(tmp_path, optimizer_options={"gepa3": {}})
