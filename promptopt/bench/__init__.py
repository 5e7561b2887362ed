"""Benchmarks on the Program/Metric interface: the LangProBe matrix runner, its store and reports.

``python -m promptopt.bench langprobe --preset quick`` runs a matrix; ``python -m promptopt.bench
report`` rebuilds its tables and charts. From Python::

    from promptopt.bench import ExperimentSpec, run_matrix, build_report

    spec = ExperimentSpec(tasks=["iris"], optimizers=["baseline", "gepa"], budget=60,
                          sizes={"iris": (10, 10, 30)}, out="results/langprobe-iris")
    run_matrix(spec)
    build_report(spec.out)
"""

from promptopt.bench.lms import LMs
from promptopt.bench.matrix import run_matrix
from promptopt.bench.report import build_report
from promptopt.bench.runner import run_cell
from promptopt.bench.spec import PRESETS, Cell, ExperimentSpec, SpecError, cell_key

__all__ = [
    "PRESETS",
    "Cell",
    "ExperimentSpec",
    "LMs",
    "SpecError",
    "build_report",
    "cell_key",
    "run_cell",
    "run_matrix",
]
