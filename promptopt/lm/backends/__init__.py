"""Where an LM's requests go, behind one resolver: :func:`resolve_backend` picks the backend a
model string names (``local`` / ``local/<name>``: the embedded llama.cpp server; ``hf/<path>``: a
transformers model in this process; anything else: an API model through litellm)."""

from promptopt.lm.backends.base import Backend
from promptopt.lm.backends.litellm_api import LiteLLMBackend
from promptopt.lm.backends.llama_server import LlamaServerBackend
from promptopt.lm.backends.resolve import resolve_backend
from promptopt.lm.backends.transformers import TransformersBackend

__all__ = ["Backend", "LiteLLMBackend", "LlamaServerBackend", "TransformersBackend", "resolve_backend"]
