"""promptopt: prompt optimization on one Program/Metric interface.

The public surface is small on purpose::

    import promptopt as po
    po.configure(lm=po.LM("local"))
    qa = po.ChainOfThought("question -> answer")
    result = po.evaluate(qa, dataset, po.exact_match("answer"))
"""

from promptopt.core.adapter import ChatAdapter, ParseError
from promptopt.core.example import Example, Prediction
from promptopt.core.metric import Score, exact_match
from promptopt.core.program import (
    ChainOfThought,
    ConfigurationError,
    Predict,
    Program,
    TextComponent,
    load_program,
)
from promptopt.core.settings import configure, context
from promptopt.core.signature import Field, Signature
from promptopt.core.trace import Trace, TraceEntry, collect_trace
from promptopt.evaluate import EvaluationResult, evaluate
from promptopt.example_run import ExampleResult
from promptopt.lm import LM, Cache, Completion, LMError, Usage, track_usage
from promptopt.version import __version__

__all__ = [
    "LM",
    "Cache",
    "ChainOfThought",
    "ChatAdapter",
    "Completion",
    "ConfigurationError",
    "EvaluationResult",
    "Example",
    "ExampleResult",
    "Field",
    "LMError",
    "ParseError",
    "Predict",
    "Prediction",
    "Program",
    "Score",
    "Signature",
    "TextComponent",
    "Trace",
    "TraceEntry",
    "Usage",
    "__version__",
    "collect_trace",
    "configure",
    "context",
    "evaluate",
    "exact_match",
    "load_program",
    "track_usage",
]
