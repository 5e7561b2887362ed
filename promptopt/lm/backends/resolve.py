"""The one place a model string becomes a backend."""

from __future__ import annotations

from typing import Any

from promptopt.lm.backends.base import Backend
from promptopt.lm.backends.litellm_api import LiteLLMBackend
from promptopt.lm.backends.llama_server import LlamaServerBackend
from promptopt.lm.backends.transformers import TransformersBackend


def resolve_backend(model: str, extra: dict[str, Any] | None = None) -> Backend:
    """``local`` / ``local/<name>``: the llama.cpp server; ``hf/<path>``: transformers in this
    process; anything else: litellm with ``extra`` (``api_base``, ``api_key``, ...)."""
    extra = dict(extra or {})
    if model == "local" or model.startswith("local/"):
        return LlamaServerBackend(model.split("/", 1)[1] if "/" in model else None, extra)
    if model.startswith("hf/"):
        if extra:
            raise TypeError(
                f"{model} runs in this process and takes no connection options ({sorted(extra)})."
            )
        return TransformersBackend(model[3:])
    return LiteLLMBackend(model, extra)
