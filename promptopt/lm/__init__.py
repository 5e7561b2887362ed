"""Language models: litellm client, on-disk cache, accounting and the embedded local server."""

from promptopt.lm.cache import Cache
from promptopt.lm.client import LM, LMError
from promptopt.lm.usage import Usage, track_usage
from promptopt.lm_protocol import Completion, LanguageModel

__all__ = ["LM", "Cache", "Completion", "LMError", "LanguageModel", "Usage", "track_usage"]
