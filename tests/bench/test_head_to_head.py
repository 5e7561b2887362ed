"""One optimizer against another: the difference of mean lifts, its interval, and the summary file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from promptopt.bench.aggregate import aggregate, by_optimizer
from promptopt.bench.cli import main as bench_main
from promptopt.bench.comparison_summary import comparison_summary
from promptopt.bench.head_to_head import head_to_head
from promptopt.bench.records import CellRecord
from promptopt.bench.report import build_report
from tests.bench.test_stats import cell


def task_cell(task, optimizer, seed, ids, base, opt):
    stored = cell(seed, ids, base, opt, optimizer=optimizer)
    stored["key"] = f"{task}__predict__{optimizer}__local__s{seed}"
    stored["config"]["task"] = task
    return stored


def two_tasks(rng, *, sizes=(60, 12), seeds=3):
    """gepa and bootstrap_fewshot on two tasks of different sizes: gepa's scores track the baseline's
    closely (correlated within an example across seeds), the other optimizer's less so."""
    stored = []
    for task, n in zip(("iris", "scone"), sizes, strict=True):
        ids = [f"{task}-{i}" for i in range(n)]
        easy = rng.random(n)  # how likely each example is answered right, the same under every seed
        base = (rng.random(n) < 0.3).astype(float)
        for seed in range(seeds):
            for optimizer, lean in (("gepa", 0.15), ("bootstrap_fewshot", 0.0)):
                opt = (rng.random(n) < np.clip(easy + lean, 0, 1)).astype(float)
                stored.append(task_cell(task, optimizer, seed, ids, list(base), list(opt)))
    return [CellRecord.from_dict(c) for c in stored]


def stratified_bootstrap(per_task, resamples=20000, seed=1):
    """The mean over tasks of each task's mean, resampling examples within each task (a check written
    apart from scipy)."""
    rng = np.random.default_rng(seed)
    stats = np.zeros(resamples)
    for diffs in per_task:
        draws = rng.integers(0, len(diffs), size=(resamples, len(diffs)))
        stats += np.asarray(diffs)[draws].mean(axis=1) / len(per_task)
    return np.percentile(stats, [2.5, 97.5])


def test_the_difference_is_the_difference_of_mean_lifts_with_a_task_stratified_interval():
    cells = two_tasks(np.random.default_rng(0))
    h = head_to_head({"": cells}, "gepa", "bootstrap_fewshot")
    summary = {s["optimizer"]: s["lift"] for s in by_optimizer(aggregate(cells))}
    assert h.difference == pytest.approx(summary["gepa"] - summary["bootstrap_fewshot"])
    assert h.tasks == ("iris", "scone") and h.n_distinct == 72  # 60 + 12 examples, not x3 seeds

    # Each example's difference is averaged over seeds, and examples are resampled within each task.
    per_task = []
    for task in ("iris", "scone"):
        by_id: dict[str, list[float]] = {}
        for c in cells:
            if c.config.task != task or c.config.optimizer not in ("gepa", "bootstrap_fewshot"):
                continue
            sign = 1 if c.config.optimizer == "gepa" else -1
            n = c.finished()
            for i, o in zip(n.optimized_test.ids, n.optimized_test.scores, strict=True):
                by_id.setdefault(i, []).append(sign * o)
        per_task.append([sum(v) / 3 for v in by_id.values()])
    low, high = stratified_bootstrap(per_task)
    assert h.ci[0] == pytest.approx(low, abs=0.01) and h.ci[1] == pytest.approx(high, abs=0.01)
    # The small task weighs as much as the large one: pooling the 72 examples would not.
    pooled = np.mean([x for t in per_task for x in t])
    assert h.difference == pytest.approx(np.mean([np.mean(t) for t in per_task]))
    assert abs(h.difference - pooled) > 1e-3
    wins = sum(x > 0 for t in per_task for x in t)
    losses = sum(x < 0 for t in per_task for x in t)
    assert (h.wins, h.losses) == (wins, losses)


def test_configurations_are_strata_and_unshared_strata_are_named():
    ids = [f"iris-{i}" for i in range(10)]
    base = [0.0] * 10
    one = [CellRecord.from_dict(task_cell("iris", "gepa", 0, ids, base, [1.0] * 10))]
    one.append(CellRecord.from_dict(task_cell("iris", "mipro", 0, ids, base, [0.0] * 10)))
    two = [CellRecord.from_dict(task_cell("iris", "gepa", 0, ids, base, [0.0] * 10))]
    two.append(CellRecord.from_dict(task_cell("iris", "mipro", 0, ids, base, [0.0] * 10)))
    two.append(CellRecord.from_dict(task_cell("scone", "gepa", 0, ids, base, [1.0] * 10)))
    h = head_to_head({"r0.5b": one, "r1.5b": two}, "gepa", "mipro")
    # iris: +1 on every example under one configuration, 0 under the other: two strata, each the
    # same in every resample, averaged; scone has no mipro cell to compare with.
    assert h.difference == pytest.approx(0.5) and h.n_distinct == 20 and h.ci == (0.5, 0.5)
    assert h.strata_left_out == ("scone/predict/local/r1.5b",)
    same = head_to_head({"": one[1:]}, "mipro", "mipro")
    assert same.difference == 0.0 and same.ci == (0.0, 0.0) and same.sign_p == 1.0
    assert head_to_head({"": one}, "gepa", "dspy_gepa") is None


def store(folder, cells):
    (folder / "cells").mkdir(parents=True)
    for c in cells:
        (folder / "cells" / f"{c.key}.json").write_text(json.dumps(c.to_dict()))
    return folder


def test_summary_json_names_each_optimizer_and_the_head_to_head_rows(tmp_path, capsys):
    cells = two_tasks(np.random.default_rng(3))
    a = store(tmp_path / "r0.5b", cells)
    b = store(tmp_path / "r1.5b", cells[: len(cells) // 2])
    out = tmp_path / "results" / "summary.json"
    assert bench_main(["summary", str(a), str(b), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert set(summary["optimizers"]) == {"gepa", "bootstrap_fewshot"}
    gepa = summary["optimizers"]["gepa"]
    assert {"mean_lift", "wall_s", "metric_calls"} <= set(gepa) and gepa["wall_s"] == 2.0
    assert gepa["s_per_metric_call"] == 0.2  # 2 s for 10 metric calls per cell
    only_a = comparison_summary([a])
    lifts = {s["optimizer"]: s["lift"] for s in by_optimizer(aggregate(cells))}
    assert only_a["optimizers"]["gepa"]["mean_lift"] == pytest.approx(100 * lifts["gepa"], abs=0.01)
    row = summary["head_to_head"]["bootstrap_fewshot"]
    assert row["ci"][0] <= row["difference"] <= row["ci"][1]
    assert set(summary["configurations"]) == {"r0.5b", "r1.5b"}
    assert summary["provenance"]["cells_without_provenance"] == len(cells) + len(cells) // 2
    assert summary["made_by"].startswith("python -m promptopt.bench summary")
    assert "gepa - bootstrap_fewshot:" in capsys.readouterr().out

    assert bench_main(["summary", str(a), str(tmp_path / "x" / "r0.5b")]) == 2
    assert "Two run folders are named 'r0.5b'" in capsys.readouterr().err
    (tmp_path / "empty" / "cells").mkdir(parents=True)
    assert bench_main(["summary", str(tmp_path / "empty")]) == 2
    assert "holds no finished cells" in capsys.readouterr().err


def test_the_report_has_the_head_to_head_table(tmp_path):
    folder = store(tmp_path / "run", two_tasks(np.random.default_rng(5)))
    text = build_report(folder).markdown.read_text()
    assert "### Head to head: gepa against each optimizer" in text
    h = head_to_head({"": two_tasks(np.random.default_rng(5))}, "gepa", "bootstrap_fewshot")
    assert f"| bootstrap_fewshot | {100 * h.difference:+.1f} [" in text


def test_the_summary_chart_plots_the_summary_numbers(tmp_path, capsys):
    from promptopt.bench.summary_chart import summary_series

    cells = two_tasks(np.random.default_rng(7))
    a = store(tmp_path / "r0.5b", cells)
    b = store(tmp_path / "r1.5b", [c for c in cells if c.config.optimizer == "gepa"])
    out, png = tmp_path / "summary.json", tmp_path / "charts" / "summary.png"
    assert bench_main(["summary", str(a), str(b), "--json", str(out), "--chart", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    summary = json.loads(out.read_text())
    assert summary["made_by"].endswith(f"--chart {png}")
    series = summary_series(summary)  # from the JSON file alone: the chart can be redrawn from it
    assert series.optimizers == [o for o in summary["optimizers"] if o != "baseline"]
    per_config = summary["configurations"]
    for name in ("r0.5b", "r1.5b"):
        expected = [per_config[name]["optimizers"].get(o, {}).get("mean_lift") for o in series.optimizers]
        assert series.lift_by_configuration[name] == expected
    assert None in series.lift_by_configuration["r1.5b"]  # an optimizer that did not run there
    row = summary["head_to_head"]["bootstrap_fewshot"]
    assert series.others == ["bootstrap_fewshot"]
    assert series.differences == [row["difference"]] and series.intervals == [tuple(row["ci"])]
    with pytest.raises(ValueError, match="no 'head_to_head' entry"):
        summary_series({"optimizers": {}, "focus": "gepa"})
