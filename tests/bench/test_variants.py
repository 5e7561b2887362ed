"""Optimizer variants in one matrix: ``gepa@adaptive`` is GEPA with ``optimizer_options["gepa@adaptive"]``,
a cell of its own beside plain ``gepa``."""

from __future__ import annotations

import pytest

from langprobe.task import mirror_dir
from promptopt.bench import SpecError, build_report, run_matrix
from promptopt.bench.store import Store

needs_mirror = pytest.mark.skipif(mirror_dir() is None, reason="no local data mirror (shared/data)")


def test_variant_names_are_checked(iris, tmp_path):
    for bad, message in [
        ("nosuch@x", "Unknown optimizer 'nosuch@x'"),
        ("baseline@x", "the seed program \\(baseline\\) has no variants"),
        ("gepa@", "the label after '@' must be"),
        ("gepa@a/b", "the label after '@' must be"),
    ]:
        with pytest.raises(SpecError, match=message):
            iris.spec(tmp_path, optimizers=["baseline", bad])
    with pytest.raises(SpecError, match="optimizer_options: Unknown optimizer 'gepa2@x'"):
        iris.spec(tmp_path, optimizer_options={"gepa2@x": {}})


@needs_mirror
def test_a_variant_runs_with_its_own_options_beside_the_plain_optimizer(iris, tmp_path):
    spec = iris.spec(
        tmp_path / "out",
        optimizers=["baseline", "gepa", "gepa@adaptive"],
        seeds=[0],
        budget=40,
        optimizer_options={"gepa@adaptive": {"validation": "adaptive"}},
    )
    outcome = run_matrix(spec, lms=iris.lms(), progress=False)
    assert [r.status for r in outcome.ran] == ["ok"] * 3
    cells = {c.config.optimizer: c for c in Store(spec.out).cells()}
    assert cells["gepa@adaptive"].key == "iris__predict__gepa@adaptive__local__s0"
    assert cells["gepa@adaptive"].config.optimizer_options == {"validation": "adaptive"}
    assert cells["gepa"].config.optimizer_options == {}
    assert cells["gepa@adaptive"].identity["config"] != cells["gepa"].identity["config"]
    assert cells["gepa@adaptive"].finished().spending.metric_calls <= 40
    md = build_report(spec.out).markdown.read_text()
    rows = [line.split("|")[2].strip() for line in md.splitlines() if line.startswith("| predict |")]
    assert rows == ["baseline", "gepa", "gepa@adaptive"]  # a variant right after its optimizer
    # Settings are compared on validation: the report shows each one's validation scores.
    summary = md.split("## Summary (mean over tasks)")[1].split("\n#")[0].splitlines()
    summary = {line.split("|")[1].strip(): line for line in summary if line.startswith("| gepa")}
    for name in ("gepa", "gepa@adaptive"):
        n = cells[name].finished()
        assert f"| {100 * n.baseline_val:.1f} → {100 * n.optimized_val:.1f} |" in summary[name]
