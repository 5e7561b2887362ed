"""promptopt for DSPy programs.

* :mod:`promptopt.dspy.teleprompters` — promptopt's GEPA and MIPROv2 as DSPy teleprompters
  (``from promptopt.dspy import GEPA, MIPROv2``): hand them any ``dspy.Module``, get one back.
* :mod:`promptopt.dspy.conversion` — promptopt programs, examples and components to and from DSPy;
  :mod:`promptopt.dspy.programs` — any DSPy module as a promptopt program.
* :mod:`promptopt.dspy.lms`, :mod:`promptopt.dspy.metrics`, :mod:`promptopt.dspy.usage` — LMs,
  metrics and LM accounting across the bridge.
"""

from promptopt.dspy.teleprompters import GEPA, MIPROv2

__all__ = ["GEPA", "MIPROv2"]
