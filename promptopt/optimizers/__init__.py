"""Optimizers on the Program/Metric interface, with a shared budget unit and result shape."""

from promptopt.optimizers.baselines import BootstrapFewShot, BootstrapFewShotWithRandomSearch, LabeledFewShot
from promptopt.optimizers.callbacks import Callback
from promptopt.optimizers.gepa import GEPA
from promptopt.optimizers.mipro import MIPROv2
from promptopt.optimizers.result import Candidate, OptimizationResult

__all__ = [
    "GEPA",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "Callback",
    "Candidate",
    "LabeledFewShot",
    "MIPROv2",
    "OptimizationResult",
]
