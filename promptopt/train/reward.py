"""The task metric as an RL reward: parse a completion like the predictor would, then score it.

A reply that does not parse earns ``parse_failure_reward`` (by default the metric's failure score,
0), so the policy learns the output format along with the answers.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from promptopt.core.adapter import ChatAdapter
from promptopt.core.example import Example, Prediction
from promptopt.core.metric import call_metric
from promptopt.core.signature import Signature


def resolve_metric(spec: str) -> Callable[..., Any]:
    """A metric from a spec: ``task:<langprobe task>``, ``exact:<field>`` or ``module:attribute``."""
    kind, _, rest = spec.partition(":")
    if kind == "task" and rest:
        from promptopt.tasks import get_task

        return get_task(rest).metric
    if kind == "exact" and rest:
        from promptopt.core.metric import exact_match

        return exact_match(rest)
    if rest:
        module = importlib.import_module(kind)
        obj: Any = module
        for part in rest.split("."):
            obj = getattr(obj, part)
        return obj
    raise ValueError(f"Unknown metric spec {spec!r}: use task:NAME, exact:FIELD or module:attribute.")


class MetricReward:
    """``reward(prompts, completions, example, predictor, **_) -> list[float]``, TRL's reward shape."""

    def __init__(
        self,
        metric: Callable[..., Any],
        signatures: Mapping[str, Mapping[str, Any] | Signature],
        *,
        parse_failure_reward: float = 0.0,
    ) -> None:
        self.metric = metric
        self.signatures = {
            name: sig if isinstance(sig, Signature) else Signature.from_dict(sig)
            for name, sig in signatures.items()
        }
        self.parse_failure_reward = parse_failure_reward
        self.adapter = ChatAdapter()
        self.__name__ = f"reward_{getattr(metric, '__name__', 'metric')}"

    def score(self, completion: str, example: Example, predictor: str) -> float:
        try:
            outputs = self.adapter.parse(self.signatures[predictor], completion)
        except Exception:
            return self.parse_failure_reward
        try:
            return float(call_metric(self.metric, example, Prediction(**outputs), None).value)
        except Exception:
            return self.parse_failure_reward

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        example: Sequence[Mapping[str, Any] | str],
        predictor: Sequence[str],
        **_: Any,
    ) -> list[float]:
        return [
            self.score(_text(c), _example(ex), p)
            for c, ex, p in zip(completions, example, predictor, strict=True)
        ]


def _example(data: Mapping[str, Any] | str) -> Example:
    """Datasets keep the example as a JSON string (a struct column would need one schema per task)."""
    return Example.from_dict(json.loads(data) if isinstance(data, str) else dict(data))


def _text(completion: Any) -> str:
    """TRL passes a string for plain prompts and a list of messages for conversational ones."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[0], Mapping):
        return "".join(str(m.get("content", "")) for m in completion)
    return str(completion)
