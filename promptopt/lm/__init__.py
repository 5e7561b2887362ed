"""Language models: litellm client, on-disk cache, accounting and the embedded local server."""

from promptopt.lm.base import Completion, LanguageModel
from promptopt.lm.cache import Cache
from promptopt.lm.client import LM, LMError
from promptopt.lm.usage import Usage, track_usage

__all__ = ["LM", "Cache", "Completion", "LMError", "LanguageModel", "Usage", "track_usage"]
