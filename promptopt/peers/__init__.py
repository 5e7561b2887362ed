"""Peer optimizers run from promptopt's seed program: dspy.GEPA, dspy.MIPROv2,
dspy.BootstrapFewShot and the gepa library's ``optimize``.

Each keeps the optimizer contract (:mod:`promptopt.optimizers.base`): it is built with the metric,
a budget in metric calls and its LMs, and ``compile(program, trainset, valset, lm=task_lm,
run_dir=..., resume=...)`` runs the peer with its own runtime and returns an
:class:`~promptopt.optimizers.result.OptimizationResult` whose ``best_program`` is *our* program
with the peer's instructions and demos imported back, so a harness scores every optimizer's
output on the test split with the same promptopt runtime.

How each peer's spending is counted: ``Budget.metric_calls`` counts the scoring calls the peer
actually made (a counting metric wrapper; dspy.GEPA's extra per-predictor feedback requests are
reported apart in ``config``), and LM calls are counted on the DSPy LMs (callbacks) or, for the
gepa library, by ``promptopt.track_usage``. DSPy's response cache is off, so every DSPy LM call
reaches the model. The peer's own cumulative count is ``config['peer_reported_metric_calls']``.
"""

from promptopt.peers.dspy_bootstrap import DspyBootstrapFewShot
from promptopt.peers.dspy_gepa import DspyGEPA
from promptopt.peers.dspy_mipro import DspyMIPROv2
from promptopt.peers.gepa_library import GepaLibrary, ProgramAdapter
from promptopt.peers.mipro_plan import MiproPlan, mipro_settings

__all__ = [
    "DspyBootstrapFewShot",
    "DspyGEPA",
    "DspyMIPROv2",
    "GepaLibrary",
    "MiproPlan",
    "ProgramAdapter",
    "mipro_settings",
]
