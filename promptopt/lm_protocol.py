"""The contract between predictors and language models.

Anything callable as ``lm(messages, **options) -> Completion`` can serve a
predictor: :class:`promptopt.LM` (litellm, cache, local server) is one, a
scripted test double is another. A bottom-layer module: programs (``promptopt.core``)
and the LM clients (``promptopt.lm``) both depend on it and not on each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass
class Completion:
    """One LM reply with its accounting."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency: float = 0.0
    cached: bool = False
    finish_reason: str | None = None
    model: str = ""

    @property
    def truncated(self) -> bool:
        """True when the reply stopped at the token limit rather than by itself."""
        return self.finish_reason == "length"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Completion:
        return cls(**data)


class LMError(RuntimeError):
    """An LM request could not be served: it failed after its retries, or the response cache is unusable."""


class LanguageModel(Protocol):
    def __call__(self, messages: list[dict[str, str]], **options: Any) -> Completion: ...
