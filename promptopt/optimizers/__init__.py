"""Optimizers on the Program/Metric interface, with a shared budget unit and result shape."""

from promptopt.optimizers.callbacks import Callback
from promptopt.optimizers.gepa import GEPA
from promptopt.optimizers.result import Candidate, OptimizationResult

__all__ = ["GEPA", "Callback", "Candidate", "OptimizationResult"]
